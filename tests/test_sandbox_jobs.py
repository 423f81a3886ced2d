"""The sandbox job runner: worker processes, progress, failure, cancel and restart recovery."""

import time

import pytest

from ionworks_sandbox.jobs import JobRunner
from ionworks_sandbox.store import Store


def wait_for(runner, job_id, statuses, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = runner.get(job_id)
        if job["status"] in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stayed {runner.get(job_id)['status']}")


@pytest.fixture
def runner(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    runner = JobRunner(store, tmp_path, workers=2)
    runner.start()
    yield runner
    runner.stop()
    store.close()


def test_job_completes_with_progress(runner):
    job = runner.submit("test", "tests.job_handlers:sleep_then_echo",
                        {"steps": 3, "seconds": 0.05, "value": 7}, org_id="o")
    done = wait_for(runner, job["id"], {"completed", "failed"})
    assert done["status"] == "completed", done.get("error")
    assert done["output"] == {"echo": 7}
    assert done["progress"] == {"step": 3, "of": 3}


def test_failure_keeps_the_reason(runner):
    job = runner.submit("test", "tests.job_handlers:explode", {"value": "x"}, org_id="o")
    done = wait_for(runner, job["id"], {"completed", "failed"})
    assert done["status"] == "failed"
    assert "cannot use value 'x'" in done["error"]


def test_cancel_stops_a_running_job_and_the_pool_recovers(runner):
    job = runner.submit("test", "tests.job_handlers:sleep_then_echo",
                        {"steps": 200, "seconds": 0.1, "value": 1}, org_id="o")
    wait_for(runner, job["id"], {"running"})
    started = time.monotonic()
    assert runner.cancel(job["id"])["status"] == "canceled"
    assert time.monotonic() - started < 5
    time.sleep(0.5)
    assert runner.get(job["id"])["status"] == "canceled"
    after = runner.submit("test", "tests.job_handlers:sleep_then_echo",
                          {"steps": 1, "seconds": 0.01, "value": 2}, org_id="o")
    assert wait_for(runner, after["id"], {"completed", "failed"})["output"] == {"echo": 2}


def test_restart_requeues_running_jobs(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    job = store.insert("job", {"job_type": "test", "handler": "tests.job_handlers:sleep_then_echo",
                               "payload": {"steps": 1, "seconds": 0.01, "value": 3}, "status": "running"},
                       org_id="o")
    runner = JobRunner(store, tmp_path, workers=1)
    runner.start()
    try:
        done = wait_for(runner, job["id"], {"completed", "failed"})
        assert done["status"] == "completed"
        assert "restarted" in done["note"]
    finally:
        runner.stop()
        store.close()
