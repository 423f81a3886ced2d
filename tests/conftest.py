"""Session fixtures: one live sandbox over real HTTP and one Prefect test server, shared by all tests; a throwaway
PostgreSQL database for the tests that start a real Prefect server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ionworks_prefect.local_sandbox import LocalSandbox

from .postgres_server import PostgresServer, postgres_bindir

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

API_KEY = "test-key"
OTHER_ORG_KEY = "other-org:other-key"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSandbox]:
    """A live sandbox on a free loopback port; the official client is pointed at it through IONWORKS_* variables."""
    root = tmp_path_factory.mktemp("sandbox")
    process = LocalSandbox(root / "data", [API_KEY, OTHER_ORG_KEY]).start()
    os.environ.update(process.client_env())
    import ionworks.cache

    ionworks.cache.set_cache_enabled(False)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def client(sandbox: LocalSandbox):
    """The official Ionworks client, configured for the sandbox."""
    from ionworks import Ionworks

    return Ionworks(api_url=sandbox.url, api_key=sandbox.api_key, project_id=sandbox.project_id)


@pytest.fixture(scope="session")
def other_org_client(sandbox: LocalSandbox):
    """A client holding the key of a second organization."""
    from ionworks import Ionworks

    return Ionworks(api_url=sandbox.url, api_key=OTHER_ORG_KEY.rpartition(":")[2])


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def prefect_database() -> Iterator[dict[str, str]]:
    """A PostgreSQL database for a live Prefect server when PostgreSQL is installed (``.ci/run`` installs it);
    otherwise the server keeps SQLite in its PREFECT_HOME."""
    bindir = postgres_bindir()
    if bindir is None:
        yield {}
        return
    with PostgresServer(bindir) as database:
        yield {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database.url}
