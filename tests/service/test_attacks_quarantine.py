"""Quarantine review under races: two approvals of one model, or an approval racing the owner's
deletion, end in one answer each (200 once, then 404), never an internal error."""

from __future__ import annotations

import threading
from functools import partial

import pytest
import torch
from sqlalchemy import event

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
from imgprivacy.errors import RecordNotFoundError
from imgprivacy.service.quarantine import QuarantineStore
from imgprivacy.service.storage import Storage
from imgprivacy.service.tables import NewModel
from tests.service.conftest import FEATURES


def _upload() -> NewModel:
    x = torch.rand(16, 784, generator=torch.Generator().manual_seed(0))
    config = AutoencoderConfig(hidden_dim=4, layer_widths=(), epochs=1, feature_extractor=FEATURES)
    blob = autoencoder_to_bytes(OneClassAutoencoder(config).fit(x))
    return NewModel(
        blob=blob, sha256="0" * 64, hidden_dim=4, error_mean=1.0, error_std=1.0, probe_claim=0.9
    )


@pytest.fixture
def quarantined(tmp_path):
    """(storage, store) with alice's model "m" waiting in quarantine."""
    storage = Storage(f"sqlite:///{tmp_path / 'q.db'}")
    storage.create_schema()
    alice = storage.add_user("alice", "a" * 64)
    store = QuarantineStore(storage)
    store.hold(
        alice,
        "m",
        _upload(),
        reason="model claims public probe images",
        problems=["x"],
        max_models=4,
    )
    yield storage, store
    storage.dispose()


def _paused_at_first_write(storage, action, meanwhile):
    """Run ``action`` in a thread that stops before its first write until ``meanwhile`` ran."""
    reached, go, worker = threading.Event(), threading.Event(), {}

    def pause(conn, cursor, statement, *args):
        writes = statement.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))
        if writes and threading.current_thread() is worker.get("thread") and not reached.is_set():
            reached.set()
            go.wait(30)

    outcome = {}

    def run():
        try:
            outcome["info"] = action()
        except Exception as exc:  # the outcome is what the test asserts
            outcome["error"] = exc

    event.listen(storage.engine, "before_cursor_execute", pause)
    try:
        worker["thread"] = threading.Thread(target=run)
        worker["thread"].start()
        assert reached.wait(30)
        meanwhile()
        go.set()
        worker["thread"].join(30)
    finally:
        event.remove(storage.engine, "before_cursor_execute", pause)
    return outcome


def _approve(store):
    return store.approve("alice", "m", max_models=4, max_total_models=None)


def test_approving_twice_at_once_approves_once(quarantined):
    storage, store = quarantined
    first = {}

    def approve_first():
        first["info"] = store.approve("alice", "m", max_models=4, max_total_models=None)

    outcome = _paused_at_first_write(storage, partial(_approve, store), approve_first)
    assert first["info"].name == "m"
    assert isinstance(outcome.get("error"), RecordNotFoundError), outcome
    assert outcome["error"].reason == "model not found"
    assert [m.name for m in storage.list_models()] == ["m"]
    assert store.list() == []


def test_approval_racing_the_owners_deletion_is_not_found(quarantined):
    storage, store = quarantined
    outcome = _paused_at_first_write(
        storage, partial(_approve, store), lambda: storage.delete_user("alice")
    )
    assert isinstance(outcome.get("error"), RecordNotFoundError), outcome
    assert "alice/m" in str(outcome["error"])
    assert storage.list_models() == [] and store.list() == []


def test_two_refused_uploads_of_one_name_at_once_keep_one_entry(quarantined):
    storage, store = quarantined
    alice = storage.user_by_token_hash("a" * 64)

    def hold(reason):
        return store.hold(alice, "n", _upload(), reason=reason, problems=[], max_models=4)

    outcome = _paused_at_first_write(storage, partial(hold, "first"), partial(hold, "second"))
    assert "error" not in outcome, outcome
    entries = [(q.name, q.reason) for q in store.list() if q.name == "n"]
    assert entries == [("n", "first")]  # the later write replaced the earlier one
