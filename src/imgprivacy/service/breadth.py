"""Each model's *breadth* for the Guard's breadth gate, measured at admission and kept in step.

The breadth of a model is the share of the service's probe **digits** it claims at the Guard's
alpha (distance at most ``mu + alpha*sigma``): the quantity the MNIST reproduction calls breadth
(the share of all public test digits a model claims at the Guard's alpha,
``imgprivacy.reproduce.docl_experiments.breadths``), measured on the service's secret draw of
MNIST test digits. It is not the stored ``probe_claim``, which is the largest share of any one
probe source at ``probe_alpha`` (an admission cap, not a breadth).

- Admission measures it (:func:`breadth_of`) and stores it with the alpha it was measured at
  (``guard_models.breadth``, ``breadth_alpha``).
- At start, :func:`backfill_breadths` measures it for every stored model that has none (stored
  before the column existed) or has one at another alpha (the operator changed ``alpha``), and
  bumps the bank revision so that every worker and replica reads the new values.
- :class:`BreadthFeed` wraps the bank's sync object (in-process bank or Ray shards): after every
  sync that saw a new revision it reads the stored breadths at the Guard's alpha and hands them to
  the Guard (:meth:`~imgprivacy.docl.Guard.set_breadth`). A model without one (no probe set)
  has an *unknown* breadth: per the Guard it never vouches, and as a claimant it counts as the
  narrowest.
"""

from __future__ import annotations

import logging
import math
import threading

import torch
from sqlalchemy import or_, select, update

from imgprivacy.docl import Guard, OneClassAutoencoder, autoencoder_from_bytes
from imgprivacy.errors import ImgPrivacyError
from imgprivacy.service.probe import ProbeSet, probe_claims
from imgprivacy.service.storage import Storage
from imgprivacy.service.tables import BankState, GuardModel, User

logger = logging.getLogger(__name__)

REFERENCE_SOURCE = "digits"  # the probe source breadth is measured on


def breadth_of(
    model: OneClassAutoencoder,
    probes: ProbeSet | None,
    *,
    alpha: float,
    distances: torch.Tensor | None = None,
) -> float | None:
    """Share of the probe digits ``model`` claims at ``alpha``; None without probe digits.

    ``distances`` are the model's distances to ``probes.features`` when already computed.
    """
    if not can_measure(probes):
        return None
    return probe_claims(model, probes, alpha=alpha, distances=distances)[REFERENCE_SOURCE]


def measured_breadth(
    model: OneClassAutoencoder,
    probes: ProbeSet | None,
    *,
    alpha: float,
    distances: torch.Tensor | None = None,
) -> dict[str, float | None]:
    """``breadth`` and ``breadth_alpha`` of a stored row (both None without probe digits)."""
    breadth = breadth_of(model, probes, alpha=alpha, distances=distances)
    return {"breadth": breadth, "breadth_alpha": None if breadth is None else float(alpha)}


def can_measure(probes: ProbeSet | None) -> bool:
    """True when ``probes`` holds reference digits to measure breadth on."""
    return (
        probes is not None
        and REFERENCE_SOURCE in probes.sources
        and bool(probes.of(REFERENCE_SOURCE).any())
    )


def stored_breadths(storage: Storage, *, alpha: float) -> dict[str, float]:
    """{owner/name: breadth} of the stored models whose breadth was measured at ``alpha``."""
    query = (
        select(User.name, GuardModel.name, GuardModel.breadth, GuardModel.breadth_alpha)
        .join(User)
        .where(GuardModel.breadth.is_not(None))
    )
    with storage.session() as session:
        rows = session.execute(query).all()
    return {
        f"{owner}/{name}": float(breadth)
        for owner, name, breadth, measured_at in rows
        if measured_at is not None and math.isclose(measured_at, alpha)
    }


def backfill_breadths(storage: Storage, probes: ProbeSet | None, *, alpha: float) -> int:
    """Measure the breadth of every stored model lacking one at ``alpha``; returns how many.

    Nothing happens without probe digits. One transaction per model (a model replaced meanwhile
    keeps the breadth its upload measured); when any was written, the bank revision is bumped so
    that every process reads them at its next sync. Workers starting together may each measure
    the same model: the values are equal, the last write wins.
    """
    if not can_measure(probes):
        return 0
    stale = or_(GuardModel.breadth.is_(None), GuardModel.breadth_alpha != alpha)
    with storage.session() as session:
        todo = session.execute(
            select(GuardModel.id, GuardModel.revision).where(stale).order_by(GuardModel.id)
        ).all()
    written = 0
    for model_id, revision in todo:
        with storage.session() as session:
            blob = session.scalar(
                select(GuardModel.blob).where(
                    GuardModel.id == model_id, GuardModel.revision == revision
                )
            )
        if blob is None:  # replaced or deleted meanwhile: its upload measured it
            continue
        try:
            model = autoencoder_from_bytes(blob, source=f"stored model {model_id}")
        except ImgPrivacyError as exc:
            logger.error("cannot measure the breadth of stored model %d: %s", model_id, exc)
            continue
        with storage.session() as session:
            result = session.execute(
                update(GuardModel)
                .where(GuardModel.id == model_id, GuardModel.revision == revision)
                .values(**measured_breadth(model, probes, alpha=alpha))
            )
            written += result.rowcount
    if written:
        with storage.session() as session:
            session.execute(
                update(BankState).where(BankState.id == 1).values(revision=BankState.revision + 1)
            )
        logger.info("measured the breadth of %d stored models at alpha %g", written, alpha)
    return written


class BreadthFeed:
    """The bank's sync object, plus the Guard's breadths kept equal to the stored ones.

    ``sync()`` syncs the bank (``inner.sync()``), then, when the storage revision moved since the
    last read, reads every stored breadth at the Guard's alpha and replaces the Guard's (a Ray
    bank's shards read theirs from the database themselves). Every other attribute is the inner
    object's.
    """

    def __init__(
        self,
        inner,
        *,
        storage: Storage,
        guard: Guard,
    ):
        self.inner = inner
        self.storage = storage
        self.guard = guard
        self.breadth_revision = -1  # storage revision of the breadths the Guard holds
        self._lock = threading.Lock()

    def sync(self) -> bool:
        changed = self.inner.sync()
        with self._lock:
            revision = self.storage.revision()
            if revision == self.breadth_revision:
                return changed
            breadth = stored_breadths(self.storage, alpha=self.guard.alpha)
            self.guard.set_breadth(breadth)
            self.breadth_revision = revision
        return True

    def __getattr__(self, name: str):
        return getattr(self.inner, name)
