"""Keep a process's :class:`FilterBank` equal to the models in storage.

How a worker or replica learns of changes: every write bumps ``bank_state.revision`` in the same
transaction (:mod:`.storage`). :meth:`BankSync.sync` reads that one number; when it differs from
the last one applied, it reads every model's (key, revision) — metadata only — and loads just the
blobs whose revision changed, drops the keys that disappeared, and applies them to the bank in
one step. The process that made a write syncs before answering it, so its own next check sees
it; the others poll every ``sync_interval_seconds`` (one indexed single-row query). Checks in
flight keep the bank snapshot they started with.
"""

from __future__ import annotations

import logging
import threading

from imgprivacy.docl import FilterBank, autoencoder_from_bytes
from imgprivacy.errors import ImgPrivacyError
from imgprivacy.service.storage import Storage

logger = logging.getLogger(__name__)


class BankSync:
    def __init__(self, storage: Storage, bank: FilterBank):
        self.storage = storage
        self.bank = bank
        self.revision = -1  # last storage revision applied
        self._known: dict[str, int] = {}  # model key -> revision loaded into the bank
        self._lock = threading.Lock()

    def sync(self) -> bool:
        """Apply the changes made since the last call; True when something changed."""
        with self._lock:
            if self.storage.revision() == self.revision:
                return False
            revision, current = self.storage.model_revisions()
            changed = [k for k, r in current.items() if self._known.get(k) != r]
            removed = [k for k in self._known if k not in current]
            loaded = self.storage.blobs(changed)
            items, ids, admitted = [], [], []
            for key, (model_revision, blob) in loaded.items():
                try:
                    model = autoencoder_from_bytes(blob, source=key)
                except ImgPrivacyError as exc:  # stored before a settings change, say
                    logger.error("skipping stored model %s: %s", key, exc)
                    continue
                items.append((key.split("/", 1)[0], model))
                ids.append(key)
                admitted.append(model_revision)  # the Guard's seniority: when it was stored
                self._known[key] = model_revision
            removed += [k for k in changed if k not in loaded]  # deleted since we listed them
            if items:
                try:
                    self.bank.add_many(items, model_ids=ids, replace=True, admitted=admitted)
                except ImgPrivacyError as exc:
                    logger.error("could not add %d models to the bank: %s", len(items), exc)
                    for key in ids:
                        self._known.pop(key, None)
            present = set(self.bank.model_ids)
            for key in removed:
                self._known.pop(key, None)
                if key in present:
                    self.bank.remove(key)
            self.revision = revision
            self.bank.snapshot()  # stack the weights now, not in the next check
            logger.info(
                "bank synced to revision %d: %d models (%d loaded, %d removed)",
                revision,
                len(self.bank),
                len(items),
                len(removed),
            )
            return True
