"""Schema management: programmatic Alembic, models in step with the migrations."""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from node.storage import SpsaBatchRecord, StorageError, open_store
from node.storage.migrate import MIGRATIONS_DIR, alembic_config, head_revision
from node.storage.models import Base

TABLES = {
    "peers",
    "spsa_log",
    "spsa_batches",
    "checkpoints",
    "reputation",
    "privacy_ledger",
    "events",
    "node_state",
}


def test_open_creates_every_table_at_head(fresh_db_url: str, data_dir: Path) -> None:
    with open_store(fresh_db_url, data_dir=data_dir) as store:
        tables = set(inspect(store.engine).get_table_names())
        assert tables >= TABLES | {"alembic_version"}
        assert store.schema_revision() == head_revision()


def test_models_match_migrations(fresh_db_url: str, data_dir: Path) -> None:
    # Autogenerate finds nothing to do when the revisions create exactly the ORM schema.
    with open_store(fresh_db_url, data_dir=data_dir) as store, store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_reopen_is_idempotent_and_keeps_data(fresh_db_url: str, data_dir: Path) -> None:
    with open_store(fresh_db_url, data_dir=data_dir) as s:
        s.set_state("round", 7)
    with open_store(fresh_db_url, data_dir=data_dir) as s:
        assert s.get_state("round") == 7
        assert s.schema_revision() == head_revision()


def test_downgrade_to_base_and_upgrade_again(fresh_db_url: str, data_dir: Path) -> None:
    with open_store(fresh_db_url, data_dir=data_dir) as s:
        with s.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert not (set(inspect(s.engine).get_table_names()) & TABLES)
    with open_store(fresh_db_url, data_dir=data_dir) as s:
        assert set(inspect(s.engine).get_table_names()) >= TABLES


def test_migrate_schema_false_leaves_an_empty_database(fresh_db_url: str, data_dir: Path) -> None:
    with open_store(fresh_db_url, data_dir=data_dir, migrate_schema=False) as s:
        assert s.schema_revision() is None
        assert not (set(inspect(s.engine).get_table_names()) & TABLES)


def test_migrations_ship_inside_the_package() -> None:
    # The revisions are found from the installed package, not from a repo-level alembic.ini.
    assert MIGRATIONS_DIR.parent.name == "storage"
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (MIGRATIONS_DIR / "versions" / "__init__.py").is_file()
    assert head_revision() == "0004_drop_updates_messages"


def test_in_memory_sqlite_is_migrated_on_its_single_connection() -> None:
    with open_store("sqlite://") as s:
        assert set(inspect(s.engine).get_table_names()) >= TABLES
        s.set_state("k", [1, 2])
        assert s.get_state("k") == [1, 2]


def test_bad_urls_and_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid database URL"):
        open_store("not a url at all", data_dir=tmp_path)
    with pytest.raises(ValueError, match="needs a database URL or a data_dir"):
        open_store()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    with open_store(data_dir=tmp_path) as s:
        assert (tmp_path / "fednode.db").is_file()
        assert s.data_dir == tmp_path.resolve()
        with s.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_ci_without_postgres_url_fails_not_skips(
    pg_url_resolver: Callable[[Mapping[str, str]], str],
) -> None:
    with pytest.raises(pytest.fail.Exception, match="CI=true but FEDNODE_TEST_PG_URL"):
        pg_url_resolver({"CI": "true"})
    with pytest.raises(pytest.skip.Exception):
        pg_url_resolver({})
    assert pg_url_resolver({"FEDNODE_TEST_PG_URL": "postgresql://x/y", "CI": "true"}).endswith("/y")
    # The real environment: in CI the URL must be present.
    if os.environ.get("CI", "").lower() == "true":
        assert os.environ.get("FEDNODE_TEST_PG_URL")


def test_sqlite_reads_do_not_wait_for_a_writer_but_writes_do(tmp_path: Path) -> None:
    # Another process holds the write lock; reads use a deferred BEGIN (WAL snapshot) and
    # proceed, writes use BEGIN IMMEDIATE and wait for the busy timeout, then fail cleanly.
    with open_store(data_dir=tmp_path, busy_timeout_s=0.3) as s:
        s.set_state("round", 1)
        blocker = sqlite3.connect(tmp_path / "fednode.db", isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            blocker.execute("INSERT INTO node_state (key, value) VALUES ('other', '1')")
            t0 = time.monotonic()
            assert s.get_state("round") == 1
            assert time.monotonic() - t0 < 0.25
            with pytest.raises(OperationalError, match="locked"):
                s.set_state("round", 2)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        s.set_state("round", 2)
        assert s.get_state("round") == 2
        assert s.get_state("other") is None


def test_alembic_config_from_url_runs_without_a_store(tmp_path: Path) -> None:
    # The same packaged environment works for operators driving Alembic by URL.
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    command.upgrade(alembic_config(url=url), "head")
    with open_store(url, migrate_schema=False) as s:
        assert s.schema_revision() == head_revision()
        assert set(inspect(s.engine).get_table_names()) >= TABLES


def test_database_from_a_newer_release_is_a_clear_error(fresh_db_url: str, data_dir: Path) -> None:
    with open_store(fresh_db_url, data_dir=data_dir) as s, s.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(StorageError, match="newer release"):
        open_store(fresh_db_url, data_dir=data_dir)


def _row(i: int, scope: str = "node") -> Any:
    from node.storage import LedgerRelease

    return LedgerRelease(
        epsilon_after=0.1 * (i + 1),
        delta=1e-5,
        noise_multiplier=2.0,
        sample_rate=1.0 if scope == "node" else 0.01,
        steps=1,
        release_kind="update" if scope == "node" else "dp_sgd",
        release_digest=f"{i:064x}",
        scope=scope,
    )


def test_ledger_written_before_scopes_upgrades_and_still_verifies(
    fresh_db_url: str, data_dir: Path
) -> None:
    with open_store(fresh_db_url, data_dir=data_dir) as s:
        for i in range(3):
            s.ledger_append(_row(i))
        # Back to the schema without scopes: the rows stay, the column goes ...
        with s.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001_initial")
        columns = {c["name"] for c in inspect(s.engine).get_columns("privacy_ledger")}
        assert "scope" not in columns
        with s.engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM privacy_ledger")).scalar() == 3
    # ... and the upgrade makes them node rows whose chain verifies (their hashes never
    # covered a scope), after which record rows chain on.
    with open_store(fresh_db_url, data_dir=data_dir) as s:
        assert s.schema_revision() == head_revision()
        assert s.ledger_verify() == 3
        assert {r.scope for r in s.ledger_rows()} == {"node"}
        s.ledger_append(_row(3, "record"))
        assert s.ledger_verify() == 4


def test_downgrade_refuses_to_drop_record_level_rows(fresh_db_url: str, data_dir: Path) -> None:
    with open_store(fresh_db_url, data_dir=data_dir) as s:
        s.ledger_append(_row(0, "record"))
        with s.engine.begin() as conn, pytest.raises(RuntimeError, match="record-level"):
            command.downgrade(alembic_config(conn), "0001_initial")
    with open_store(fresh_db_url, data_dir=data_dir) as s:
        assert [r.scope for r in s.ledger_rows()] == ["record"]


_NODE_STATE = sa.table("node_state", sa.column("key", sa.String), sa.column("value", sa.JSON))


def _raw_state(conn: sa.Connection) -> dict[str, Any]:
    return {k: v for k, v in conn.execute(sa.select(_NODE_STATE.c.key, _NODE_STATE.c.value))}


def test_signed_batches_move_from_node_state_to_their_table_and_back(
    fresh_db_url: str, data_dir: Path
) -> None:
    # A database written at the revision before batches had a table, with rows in it.
    origins = [hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]
    good = {
        (r, o): hashlib.sha256(f"{r}/{o}".encode()).digest() * 3
        for r in [*range(400), 1_234_567_890]
        for o in origins[: 1 + r % 3]
    }
    legacy = {f"spsa.batch.{r:09d}.{o}": base64.b64encode(w).decode() for (r, o), w in good.items()}
    damaged = {  # rows the daemon always skipped: they stay in node_state, as they were
        f"spsa.batch.7.{origins[0]}": "AAE=",
        f"spsa.batch.000000508.{origins[0]}": "not base64!",
        f"spsa.batch.000000009.{origins[0][:10]}": "AAE=",
        f"spsa.batch.000000510.{origins[0]}": {"not": "text"},
    }
    plain = {"training.round": 401, "banned": [origins[2]], "spsa.other": "x"}
    with open_store(fresh_db_url, data_dir=data_dir, migrate_schema=False) as s:
        with s.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0002_ledger_scope")
            rows = {**legacy, **damaged, **plain}
            conn.execute(_NODE_STATE.insert(), [{"key": k, "value": v} for k, v in rows.items()])
            conn.execute(
                text(
                    "INSERT INTO messages (sender, kind, network_id, seq, received_at, "
                    "payload_sha256, size) VALUES (:h, 'update', :h, 1, 0.0, :h, 1)"
                ),
                {"h": origins[0]},
            )
        with s.engine.connect() as conn:
            before = _raw_state(conn)
    assert len(legacy) > 500  # the move crosses its insert/delete chunks

    with open_store(fresh_db_url, data_dir=data_dir) as s:
        assert s.schema_revision() == head_revision()
        stored = {(b.round, b.origin): b.wire for b in s.spsa_batches()}
        assert stored == good
        with s.engine.connect() as conn:
            assert _raw_state(conn) == {**damaged, **plain}
        # The node-state API shows what is left there (the batches are in their table).
        assert s.all_state() == {**damaged, **plain}
        assert not {"messages", "updates"} & set(inspect(s.engine).get_table_names())
        # New batches land in the table, also one for the key of a damaged leftover row ...
        fixed = f"spsa.batch.000000508.{origins[0]}"
        s.append_spsa([], batches=[SpsaBatchRecord(508, origins[0], b"\x00\x01")])
        assert s.spsa_batch_count() == len(good) + 1
        with s.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002_ledger_scope")
        with s.engine.connect() as conn:
            after = _raw_state(conn)
        # ... and the downgrade puts every table row back, the good one over the damaged.
        assert after == {**before, fixed: "AAE="}
        assert {"messages", "updates"} <= set(inspect(s.engine).get_table_names())
        assert "spsa_batches" not in set(inspect(s.engine).get_table_names())
