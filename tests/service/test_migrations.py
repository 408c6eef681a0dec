"""Schema migrations (Alembic): a new database, one created before migrations existed, one at the
baseline (with and without the secrets table made outside the migrations), a round trip down and
up, a database from a newer release, workers migrating together; SQLite and PostgreSQL
(``backend``)."""

from __future__ import annotations

import datetime as dt
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from alembic import command
from sqlalchemy import create_engine, insert, inspect, text
from sqlalchemy.exc import SAWarning
from sqlalchemy.orm import Session

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
from imgprivacy.errors import SchemaError
from imgprivacy.service.auth import hash_token, new_token
from imgprivacy.service.migrations import (
    alembic_config,
    head_revision,
    migration_engine,
    upgrade_schema,
)
from imgprivacy.service.probe import build_probe_set, deployment_probe_seed
from imgprivacy.service.storage import Storage
from imgprivacy.service.tables import BankState, Base, GuardModel, ServiceSecret, User
from tests.service.conftest import ADMIN, fresh_database, in_process_service


def schema(url: str) -> dict:
    """Everything about the service's tables a migration could get wrong, as plain values."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection, warnings.catch_warnings():
            # SQLite's reflection skips the lower(name) indexes; its DDL below has them.
            warnings.simplefilter("ignore", SAWarning)
            inspector = inspect(connection)
            tables = sorted(set(inspector.get_table_names()) - {"alembic_version"})
            out = {
                name: {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                        for c in inspector.get_columns(name)
                    ],
                    "primary key": inspector.get_pk_constraint(name)["constrained_columns"],
                    "foreign keys": sorted(
                        (
                            tuple(f["constrained_columns"]),
                            f["referred_table"],
                            tuple(f["referred_columns"]),
                            f["options"].get("ondelete"),
                        )
                        for f in inspector.get_foreign_keys(name)
                    ),
                    "indexes": sorted(
                        (
                            i["name"],
                            bool(i["unique"]),
                            str(i["column_names"]),
                            str(i.get("expressions", "")),
                        )
                        for i in inspector.get_indexes(name)
                    ),
                    "unique": sorted(
                        tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)
                    ),
                }
                for name in tables
            }
            if connection.dialect.name == "sqlite":  # and the exact DDL
                rows = connection.execute(text("SELECT tbl_name, name, sql FROM sqlite_master"))
                for table, name, sql in rows:
                    if table in out:  # whitespace aside: SQLite's ADD COLUMN writes none
                        ddl = None if sql is None else " ".join(sql.split())
                        out[table].setdefault("ddl", {})[name] = ddl
            return out
    finally:
        engine.dispose()


def revisions(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(text("SELECT version_num FROM alembic_version")))
    finally:
        engine.dispose()


def created_by_the_tables(url: str, *, leave_out: frozenset[str] = frozenset()) -> str:
    """``url`` after ``create_all`` of the service's tables (but ``leave_out``) and its first row."""
    engine = create_engine(url)
    tables = [t for t in Base.metadata.sorted_tables if t.name not in leave_out]
    Base.metadata.create_all(engine, tables=tables)
    with Session(engine) as session, session.begin():
        session.add(BankState(id=1, revision=0))
    engine.dispose()
    return url


# Tables that revisions after the baseline added, which no database before migrations had.
LATER_TABLES = frozenset({"service_secrets", "quarantined_models"})


def created_before_migrations(url: str) -> str:
    """``url`` after what the service did on start before it had migrations."""
    return created_by_the_tables(url, leave_out=LATER_TABLES)


def at_revision(url: str, target: str) -> str:
    """``url`` upgraded by the migrations up to ``target`` only."""
    engine = migration_engine(url)
    with engine.connect() as connection, connection.begin():
        command.upgrade(alembic_config(connection), target)
    engine.dispose()
    return url


def stored_secrets(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT name, value FROM service_secrets")).all()
    finally:
        engine.dispose()


def test_a_new_database_gets_the_schema_of_the_tables(backend, tmp_path):
    url = fresh_database(backend, tmp_path)
    assert upgrade_schema(url) == ()  # it was at no revision
    assert revisions(url) == [head_revision()]
    expected = schema(created_by_the_tables(fresh_database(backend, tmp_path)))
    assert schema(url) == expected
    assert set(expected) == {
        "users",
        "pending_users",
        "guard_models",
        "bank_state",
        "service_secrets",
        "quarantined_models",
    }
    storage = Storage(url)
    assert storage.revision() == 0  # the baseline wrote the revision row
    storage.create_schema()  # the next start: nothing to do
    assert revisions(url) == [head_revision()] and storage.revision() == 0
    storage.dispose()


def test_a_database_from_before_migrations_is_adopted_and_keeps_serving(backend, tmp_path):
    url = created_before_migrations(fresh_database(backend, tmp_path))
    token = new_token()
    x = torch.rand(32, 784, generator=torch.Generator().manual_seed(0))
    config = AutoencoderConfig(
        hidden_dim=4, layer_widths=(), epochs=1, batch_size=16, feature_extractor="pixels"
    )
    model = OneClassAutoencoder(config).fit(x)
    blob = autoencoder_to_bytes(model)
    created = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)
    engine = create_engine(url)
    with Session(engine) as session, session.begin():
        owner = User(name="alice", token_hash=hash_token(token), created_at=created)
        session.add(owner)
        session.flush()
        session.add(
            GuardModel(
                user_id=owner.id,
                name="face",
                blob=blob,
                sha256="0" * 64,
                size_bytes=len(blob),
                hidden_dim=4,
                error_mean=model.error_mean_,
                error_std=model.error_std_,
                probe_claim=0.0,
                revision=1,
                created_at=created,
                updated_at=created,
            )
        )
        session.get(BankState, 1).revision = 1
    engine.dispose()
    before = schema(url)

    assert upgrade_schema(url) == ()
    assert revisions(url) == [head_revision()]
    after = schema(url)
    # Adopting changed nothing (the baseline is that schema); later revisions added their tables.
    assert {name: after[name] for name in before} == before
    assert after == schema(created_by_the_tables(fresh_database(backend, tmp_path)))
    assert upgrade_schema(url) == (head_revision(),)  # and the next start just checks it

    # The service on the adopted database: the old token works, the model claims its images.
    nearest = x[model.distances(x).argmin()].tolist()
    with in_process_service(tmp_path, database_url=url) as service:
        assert service.request("GET", "/readyz").json()["models"] == 1
        alice = {"Authorization": f"Bearer {token}"}
        me = service.request("GET", "/v1/me", headers=alice).json()
        assert me == {"name": "alice", "models": 1}
        listed = service.request("GET", "/v1/models", headers=alice).json()
        assert [(m["name"], m["size_bytes"]) for m in listed] == [("face", len(blob))]
        admin = {"Authorization": f"Bearer {ADMIN}"}
        users = service.request("GET", "/v1/admin/users", headers=admin).json()
        assert users == [{"name": "alice", "created_at": "2024-05-01T12:00:00Z", "models": 1}]
        other = service.token("bob")
        check = {"features": nearest}
        decisions = [
            service.request("POST", "/v1/check", json=check, headers=who).json()["decision"]
            for who in (other, alice)
        ]
        assert decisions == ["block", "share"]  # inside alice's interval: only alice may share
        assert service.request("DELETE", "/v1/admin/users/alice", headers=admin).status_code == 204
        assert service.request("GET", "/readyz").json()["models"] == 0  # deletion cascades


def test_an_older_database_gets_what_its_version_lacked(backend, tmp_path):
    url = created_before_migrations(fresh_database(backend, tmp_path))
    engine = create_engine(url)
    with engine.begin() as connection:  # the first release: no approvals, no name keys
        connection.execute(text("DROP TABLE pending_users"))
        connection.execute(text("DROP INDEX uq_users_name_lower"))
    engine.dispose()
    upgrade_schema(url)
    assert schema(url) == schema(created_by_the_tables(fresh_database(backend, tmp_path)))
    assert revisions(url) == [head_revision()]


def test_downgrade_to_nothing_and_upgrade_again(backend, tmp_path):
    url = fresh_database(backend, tmp_path)
    upgrade_schema(url)
    first = schema(url)
    engine = migration_engine(url)
    with engine.connect() as connection, connection.begin():
        command.downgrade(alembic_config(connection), "base")
    engine.dispose()
    assert schema(url) == {}  # every table of the service is gone
    assert revisions(url) == []
    assert upgrade_schema(url) == ()
    assert schema(url) == first and revisions(url) == [head_revision()]


def test_a_database_from_a_newer_release_is_refused_unchanged(backend, tmp_path):
    url = fresh_database(backend, tmp_path)
    upgrade_schema(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    before = schema(url)
    with pytest.raises(SchemaError, match=r"revision 9999, which imgprivacy .* does not know"):
        upgrade_schema(url)
    with (
        pytest.raises(SchemaError, match="Upgrade imgprivacy on every worker"),
        in_process_service(tmp_path, database_url=url),
    ):
        pass  # the service refuses to start
    assert revisions(url) == ["9999"] and schema(url) == before


def test_tables_of_something_else_are_not_adopted(tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)"))
    engine.dispose()
    before = schema(url)
    with pytest.raises(SchemaError, match="table 'users' lacks name, token_hash, created_at"):
        upgrade_schema(url)
    assert schema(url) == before  # nothing created, not even alembic_version
    assert "alembic_version" not in inspect(create_engine(url)).get_table_names()


def test_workers_migrating_together_do_it_once(backend, tmp_path):
    url = fresh_database(backend, tmp_path)
    with ThreadPoolExecutor(4) as pool:
        before = list(pool.map(upgrade_schema, [url] * 4))
    head = (head_revision(),)
    assert sorted(before) == [(), head, head, head]  # one did the work, the others waited
    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT id, revision FROM bank_state")).all() == [(1, 0)]
    engine.dispose()


def test_a_database_at_the_baseline_gets_service_secrets_kept_across_restarts(backend, tmp_path):
    url = at_revision(fresh_database(backend, tmp_path), "0001")
    assert revisions(url) == ["0001"] and "service_secrets" not in schema(url)
    seeds = []
    for _start in range(2):  # the service starts, stops, and starts again on the same database
        with in_process_service(tmp_path, database_url=url) as service:
            seeds.append(service.app.state.service.probes.random_inputs)
            assert revisions(url) == [head_revision()]
            [(name, value)] = stored_secrets(url)
    assert name == "probe_seed"
    assert schema(url) == schema(created_by_the_tables(fresh_database(backend, tmp_path)))
    drawn = build_probe_set(feature_extractor="pixels", count=0, seed=int(value))
    assert torch.equal(seeds[0], drawn.random_inputs)  # the probes come from the stored secret
    assert torch.equal(seeds[1], seeds[0])  # and the restart drew the same ones


def test_a_secret_stored_before_its_revision_is_kept(backend, tmp_path):
    # Versions at the baseline created service_secrets on start, outside the migrations.
    url = at_revision(fresh_database(backend, tmp_path), "0001")
    engine = create_engine(url)
    ServiceSecret.__table__.create(engine)
    with engine.begin() as connection:
        connection.execute(insert(ServiceSecret).values(name="probe_seed", value="12345"))
    engine.dispose()
    assert upgrade_schema(url) == ("0001",)
    assert revisions(url) == [head_revision()]
    assert stored_secrets(url) == [("probe_seed", "12345")]
    assert schema(url) == schema(created_by_the_tables(fresh_database(backend, tmp_path)))
    storage = Storage(url)
    assert deployment_probe_seed(storage.engine, configured=None) == 12345
    storage.dispose()


def test_a_service_secrets_table_of_something_else_is_refused_unchanged(tmp_path):
    url = at_revision(f"sqlite:///{tmp_path / 'other.db'}", "0001")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE service_secrets (name TEXT PRIMARY KEY, key TEXT)"))
    engine.dispose()
    before = schema(url)
    with pytest.raises(
        SchemaError, match="'service_secrets' that is not the service's .*lacks value"
    ):
        upgrade_schema(url)
    assert revisions(url) == ["0001"] and schema(url) == before


def test_a_database_at_0002_gets_the_quarantine_and_keeps_its_data(backend, tmp_path):
    url = at_revision(fresh_database(backend, tmp_path), "0002")
    assert revisions(url) == ["0002"] and "quarantined_models" not in schema(url)
    engine = create_engine(url)
    with Session(engine) as session, session.begin():
        session.add(User(name="alice", token_hash=hash_token(new_token())))
        session.add(ServiceSecret(name="probe_seed", value="7"))
    engine.dispose()
    assert upgrade_schema(url) == ("0002",)
    assert revisions(url) == [head_revision()]
    assert schema(url) == schema(created_by_the_tables(fresh_database(backend, tmp_path)))
    assert stored_secrets(url) == [("probe_seed", "7")]
    with in_process_service(tmp_path, database_url=url, quarantine_refused=True) as service:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        users = service.request("GET", "/v1/admin/users", headers=admin).json()
        assert [u["name"] for u in users] == ["alice"]
        assert service.request("GET", "/v1/admin/quarantine", headers=admin).json() == []
    # And back: 0003's downgrade drops only its table.
    engine = migration_engine(url)
    with engine.connect() as connection, connection.begin():
        command.downgrade(alembic_config(connection), "0002")
    engine.dispose()
    assert revisions(url) == ["0002"]
    assert set(schema(url)) == {
        "users",
        "pending_users",
        "guard_models",
        "bank_state",
        "service_secrets",
    }


def test_a_database_at_0003_gets_breadths_and_keeps_its_models(backend, tmp_path):
    url = at_revision(fresh_database(backend, tmp_path), "0003")
    assert revisions(url) == ["0003"]
    assert "breadth" not in {c[0] for c in schema(url)["guard_models"]["columns"]}
    engine = create_engine(url)
    blob = autoencoder_to_bytes(
        OneClassAutoencoder(
            AutoencoderConfig(input_dim=784, hidden_dim=8, layer_widths=(), epochs=1)
        ).fit(torch.rand(16, 784))
    )
    with engine.begin() as connection:
        user_id = connection.execute(
            insert(User.__table__).values(
                name="alice", token_hash="h" * 64, created_at=dt.datetime(2026, 1, 1)
            )
        ).inserted_primary_key[0]
        connection.execute(
            text(
                "INSERT INTO guard_models (user_id, name, blob, sha256, size_bytes, hidden_dim, "
                "error_mean, error_std, probe_claim, revision, created_at, updated_at) VALUES "
                "(:u, 'digit', :b, :s, :n, 8, 1.0, 0.5, 0.1, 1, :t, :t)"
            ),
            {"u": user_id, "b": blob, "s": "0" * 64, "n": len(blob), "t": dt.datetime(2026, 1, 1)},
        )
    engine.dispose()
    assert upgrade_schema(url) == ("0003",)
    assert revisions(url) == [head_revision()]
    assert schema(url) == schema(created_by_the_tables(fresh_database(backend, tmp_path)))
    engine = create_engine(url)
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT name, blob, breadth, breadth_alpha FROM guard_models")
        ).one()
    engine.dispose()
    assert row == ("digit", blob, None, None)  # unknown until a service with probes measures it
    # And back: 0004's downgrade drops only its columns.
    engine = migration_engine(url)
    with engine.connect() as connection, connection.begin():
        command.downgrade(alembic_config(connection), "0003")
    engine.dispose()
    assert revisions(url) == ["0003"]
    columns = {
        c[0] for t in ("guard_models", "quarantined_models") for c in schema(url)[t]["columns"]
    }
    assert not columns & {"breadth", "breadth_alpha"}
