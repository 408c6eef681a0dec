"""Each model's breadth (the Guard's breadth gate): measured at admission as the share of the
probe digits claimed at the Guard's alpha, stored, backfilled at start for models stored without
one (or at another alpha), and kept in the Guard's hands as models come and go, in this process
and in a replica following the same database."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import create_engine, text

from imgprivacy.docl import autoencoder_from_bytes
from imgprivacy.service.breadth import breadth_of, stored_breadths
from imgprivacy.service.probe import build_probe_set, probe_claims
from imgprivacy.service.settings import ServiceSettings
from tests.service.conftest import ADMIN, FEATURES, in_process_service, unique

PROBES = {"probe_count": 200, "probe_seed": 0}  # as the test servers
ALPHA = ServiceSettings.model_fields["alpha"].default  # the service's default Guard alpha
GATE = ServiceSettings.model_fields["breadth_ratio"].default


def stored_rows(url: str) -> dict[str, tuple[float | None, float | None]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT u.name, m.name, m.breadth, m.breadth_alpha FROM guard_models m "
                    "JOIN users u ON u.id = m.user_id"
                )
            ).all()
    finally:
        engine.dispose()
    return {f"{o}/{n}": (b, a) for o, n, b, a in rows}


def set_breadth(url: str, breadth: float | None, alpha: float | None, *, owner: str | None = None):
    """Overwrite the stored breadth of every model (of ``owner``'s only, when given)."""
    where = " WHERE user_id = (SELECT id FROM users WHERE name = :n)" if owner else ""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE guard_models SET breadth = :b, breadth_alpha = :a{where}"),
            {"b": breadth, "a": alpha, "n": owner},
        )
    engine.dispose()


def upload(service, auth, name, blob, status=201):
    response = service.request("PUT", f"/v1/models/{name}", content=blob, headers=auth)
    assert response.status_code == status, response.text
    return response


def test_breadth_is_the_share_of_probe_digits_claimed_at_alpha(honest_models, server_probes):
    model = honest_models[3]
    digits = server_probes.of("digits")
    bound = model.error_mean_ + 2.1 * model.error_std_
    expected = float((model.distances(server_probes.features[digits]) <= bound).double().mean())
    assert breadth_of(model, server_probes, alpha=2.1) == pytest.approx(expected, abs=1e-12)
    assert 0 < probe_claims(model, server_probes, alpha=1.0)["digits"] < expected  # alpha counts
    assert breadth_of(model, None, alpha=2.1) is None
    empty = build_probe_set(feature_extractor=FEATURES, count=0)
    assert breadth_of(model, empty, alpha=2.1) is None


def test_the_guard_follows_stored_breadths_here_and_in_a_replica(
    tmp_path, honest_bytes, honest_models, server_probes
):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with (
        in_process_service(tmp_path, database_url=url, **PROBES) as here,
        in_process_service(tmp_path, database_url=url, **PROBES) as replica,
    ):
        guard, other = here.app.state.service.guard, replica.app.state.service.guard
        assert guard.alpha == ALPHA and guard.breadth_ratio == GATE  # the service's defaults
        name = unique("owner")
        auth = {"Authorization": f"Bearer {here.register(name).json()['token']}"}
        upload(here, auth, "digit", honest_bytes[0])
        key = f"{name}/digit"
        expected = breadth_of(honest_models[0], server_probes, alpha=ALPHA)
        assert stored_rows(url)[key] == (pytest.approx(expected), ALPHA)
        assert guard.breadth_of([key]).tolist() == pytest.approx([expected])
        replica.app.state.service.sync.sync()  # what its poller does
        assert other.breadth_of([key]).tolist() == pytest.approx([expected])

        upload(here, auth, "digit", honest_bytes[1], status=200)  # replaced: a new breadth
        replaced = breadth_of(honest_models[1], server_probes, alpha=ALPHA)
        assert not math.isclose(replaced, expected)
        replica.app.state.service.sync.sync()
        for g in (guard, other):
            assert g.breadth_of([key]).tolist() == pytest.approx([replaced])

        assert here.request("DELETE", "/v1/models/digit", headers=auth).status_code == 204
        replica.app.state.service.sync.sync()
        for g in (guard, other):
            assert math.isnan(g.breadth_of([key]).item())  # gone: unknown again


def test_models_stored_without_a_breadth_get_one_at_start(tmp_path, honest_bytes, server_probes):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with in_process_service(tmp_path, database_url=url, **PROBES) as first:
        names = [unique("old"), unique("other")]
        for name, digit in zip(names, (0, 3)):
            auth = {"Authorization": f"Bearer {first.register(name).json()['token']}"}
            upload(first, auth, "digit", honest_bytes[digit])
        revision = first.app.state.service.storage.revision()
    # As a database from before breadths (NULL), and one measured at another alpha.
    set_breadth(url, None, None)
    set_breadth(url, 0.9, 1.0, owner=names[1])
    keys = [f"{n}/digit" for n in names]
    assert [stored_rows(url)[k] for k in keys] == [(None, None), (0.9, 1.0)]
    with in_process_service(tmp_path, database_url=url, **PROBES) as again:
        state = again.app.state.service
        models = {
            k: autoencoder_from_bytes(blob, source=k)
            for k, (_, blob) in state.storage.blobs(keys).items()
        }
        expected = [breadth_of(models[k], server_probes, alpha=ALPHA) for k in keys]
        assert [stored_rows(url)[k] for k in keys] == [(pytest.approx(e), ALPHA) for e in expected]
        assert state.storage.revision() == revision + 1  # every replica rereads them
        assert state.guard.breadth_of(keys).tolist() == pytest.approx(expected)
        assert stored_breadths(state.storage, alpha=1.0) == {}


def test_without_probes_breadth_is_unknown(tmp_path, honest_bytes):
    with in_process_service(tmp_path) as service:  # probe_count 0
        state = service.app.state.service
        name = unique("noprobe")
        auth = {"Authorization": f"Bearer {service.register(name).json()['token']}"}
        upload(service, auth, "digit", honest_bytes[7])
        key = f"{name}/digit"
        assert stored_rows(state.settings.database_url)[key] == (None, None)
        assert math.isnan(state.guard.breadth_of([key]).item())  # never vouches


def test_the_admin_model_list_shows_each_models_stored_breadth(
    tmp_path, honest_bytes, honest_models, server_probes
):
    admin = {"Authorization": f"Bearer {ADMIN}"}
    url = f"sqlite:///{tmp_path / 'listed.db'}"
    with in_process_service(tmp_path, database_url=url, **PROBES) as service:
        names = [unique("wide"), unique("unknown")]
        for name, digit in zip(names, (0, 3)):
            auth = {"Authorization": f"Bearer {service.register(name).json()['token']}"}
            upload(service, auth, "digit", honest_bytes[digit])
        set_breadth(url, None, None, owner=names[1])  # as stored before breadths, not backfilled
        rows = service.request("GET", "/v1/admin/models", headers=admin).json()
        listed = {r["owner"]: (r["breadth"], r["breadth_alpha"]) for r in rows}
        expected = breadth_of(honest_models[0], server_probes, alpha=ALPHA)
        assert listed[names[0]] == (pytest.approx(expected), ALPHA)
        assert listed[names[1]] == (None, None)
        schema = service.request("GET", "/openapi.json").json()["components"]["schemas"]
        assert {"breadth", "breadth_alpha"} <= set(schema["ModelRow"]["properties"])
