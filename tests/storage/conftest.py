"""Backends for the storage tests: SQLite always, PostgreSQL when FEDNODE_TEST_PG_URL is set.

One suite, every backend: the ``backend`` fixture is the suite's only parameter and every
database fixture follows it (Flower's ``linkstate_test.py`` runs one suite against every
``LinkState`` the same way). ``store``/``db_url`` are an empty database at the newest
schema: a copy of a migrated SQLite template in ``tmp_path``, or a PostgreSQL schema
(selected through ``search_path``) whose tables are emptied after every test.
``new_db_url()`` makes further brand-new databases (a second node, migration tests): a
new SQLite file or PostgreSQL schema, dropped afterwards. Locally, without
``FEDNODE_TEST_PG_URL`` the PostgreSQL parameter is skipped; under ``CI=true`` a missing URL
is a failure, so CI cannot go green without having exercised PostgreSQL.
Start a server with ``eval "$(.ci/postgres.sh)"``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from node.storage import DB_FILENAME, Store, open_store, sqlite_url_for
from node.storage.models import Base

PG_ENV = "FEDNODE_TEST_PG_URL"


def resolve_pg_url(env: Mapping[str, str]) -> str:
    """The PostgreSQL test URL from ``env``; skip locally, fail under CI, when it is unset."""
    url = env.get(PG_ENV, "").strip()
    if url:
        return url
    if env.get("CI", "").lower() == "true":
        pytest.fail(
            f"CI=true but {PG_ENV} is not set: the storage tests must run against PostgreSQL "
            'in CI (run `eval "$(.ci/postgres.sh)"` before pytest)',
            pytrace=False,
        )
    pytest.skip(f"{PG_ENV} not set (PostgreSQL storage tests run in CI; see .ci/postgres.sh)")


@pytest.fixture
def pg_url_resolver() -> Callable[[Mapping[str, str]], str]:
    """Expose ``resolve_pg_url`` to the test of the CI rule itself."""
    return resolve_pg_url


def _create_schema(base: str) -> tuple[str, str]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(make_url(base).set(drivername="postgresql+psycopg"))
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        admin.dispose()
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, url.render_as_string(hide_password=False)


def _drop_schema(base: str, schema: str) -> None:
    admin = create_engine(make_url(base).set(drivername="postgresql+psycopg"))
    try:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def _pg_migrated_url() -> Iterator[str]:
    """A PostgreSQL schema migrated once per session; tests empty it after use."""
    base = resolve_pg_url(os.environ)
    schema, url = _create_schema(base)
    open_store(url).close()
    try:
        yield url
    finally:
        _drop_schema(base, schema)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database file; tests start from a copy (DDL is the slow part)."""
    directory = tmp_path_factory.mktemp("template")
    open_store(data_dir=directory).close()
    return directory / DB_FILENAME


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The one parameter of the storage suite: every database fixture below follows it.

    A test that asks for several databases (``db_url`` and ``new_db_url``, say) gets them
    all on the same backend, and runs once per backend.
    """
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at the newest schema with no rows, on the test's backend.

    SQLite: a copy of a migrated template in a new directory. PostgreSQL: a session-wide
    migrated schema whose tables are emptied after each test.
    """
    if backend == "sqlite":
        target = tmp_path / "node" / DB_FILENAME
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), target)
        yield sqlite_url_for(target.parent)
        return
    url = str(request.getfixturevalue("_pg_migrated_url"))
    yield url
    engine = create_engine(url)
    try:
        # DELETE beats TRUNCATE on a handful of rows (no new files, no extra fsyncs).
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture
def new_db_url(backend: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Factory of brand-new, empty databases (no schema at all) on the test's backend.

    Each call returns a new SQLite file URL or a new PostgreSQL schema, dropped after the
    test. For a second node's store, and for migration tests.
    """
    schemas: list[str] = []
    base = resolve_pg_url(os.environ) if backend == "postgresql" else ""

    def make() -> str:
        if backend == "sqlite":
            return sqlite_url_for(tmp_path / f"db-{uuid.uuid4().hex[:8]}")
        schema, url = _create_schema(base)
        schemas.append(schema)
        return url

    try:
        yield make
    finally:
        for schema in schemas:
            _drop_schema(base, schema)


@pytest.fixture
def fresh_db_url(new_db_url: Callable[[], str]) -> str:
    """An empty database (no schema at all) on the test's backend, for migration tests."""
    return new_db_url()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "node"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def store(db_url: str, data_dir: Path) -> Iterator[Store]:
    """An open, migrated store on a fresh database with a data dir for files."""
    s = open_store(db_url, data_dir=data_dir)
    try:
        yield s
    finally:
        s.close()
