"""Session fixtures: one live sandbox over real HTTP and one Prefect test server, shared by all tests; a throwaway
PostgreSQL database for the tests that start a real Prefect server.

Every answer the sandbox gives the official client or the plugin's own reads is checked against the client's
models for the whole session (``tests/client_contract.py``): a test during which an answer did not fit, or plugin
code read a key the client does not define, fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ionworks_prefect.local_sandbox import LocalSandbox

from .client_contract import ContractMonitor
from .fault_proxy import FaultProxy
from .postgres_server import PostgresServer, postgres_bindir

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

API_KEY = "test-key"
OTHER_ORG_KEY = "other-org:other-key"
CONTRACT = ContractMonitor()


@pytest.fixture(scope="session", autouse=True)
def client_contract() -> Iterator[ContractMonitor]:
    """The contract monitor, hooked into every Ionworks client and the plugin's ``httpx`` reads all session."""
    with CONTRACT.installed() as monitor:
        yield monitor
    if problems := monitor.take():
        pytest.fail("Sandbox answers broke the client's contract after the last test:\n  " + "\n  ".join(problems))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail a test during whose setup or run a sandbox answer broke the client's contract."""
    outcome = yield
    problems = CONTRACT.take()
    if problems and outcome.excinfo is None:
        listed = "\n  ".join(problems)
        outcome.force_exception(AssertionError(f"Sandbox answers broke the client's contract:\n  {listed}"))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSandbox]:
    """A live sandbox on a free loopback port; the official client is pointed at it through IONWORKS_* variables."""
    root = tmp_path_factory.mktemp("sandbox")
    process = LocalSandbox(root / "data", [API_KEY, OTHER_ORG_KEY],
                           extra_args=["--request-log", str(root / "requests.tsv")]).start()
    os.environ.update(process.client_env())
    import ionworks.cache

    ionworks.cache.set_cache_enabled(False)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def requests_since(sandbox: LocalSandbox):
    """``requests_since(t)``: the session sandbox's requests that started at or after ``t`` (``time.time()``), as
    ``(start, method, target, status, milliseconds)``."""
    from ionworks_sandbox.request_log import read_request_log

    log = Path(sandbox.extra_args[sandbox.extra_args.index("--request-log") + 1])
    return lambda since: [r for r in read_request_log(log) if r[0] >= since]


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


@pytest.fixture(scope="module")
def proxy(sandbox: LocalSandbox) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the sandbox (``tests/fault_proxy.py``), one per test module."""
    with FaultProxy(sandbox.url) as running:
        yield running


@pytest.fixture(scope="module")
def proxied(proxy: FaultProxy, sandbox: LocalSandbox):
    """Credentials that reach the sandbox through :func:`proxy`."""
    from ionworks_prefect import IonworksCredentials

    return IonworksCredentials(api_key=sandbox.api_key, api_url=proxy.url, project_id=sandbox.project_id)
