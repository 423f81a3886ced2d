"""The sandbox job runner: worker processes, progress, failure, cancel and restart recovery."""

import os
import time

import pytest

from ionworks_sandbox.errors import ApiError
from ionworks_sandbox.jobs import FINISHED_KEPT, JobRunner
from ionworks_sandbox.store import Store
from ionworks_sandbox.worker import WORKER_NICENESS


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


def test_workers_compute_at_a_lower_priority_than_the_server(runner):
    job = runner.submit("test", "tests.job_handlers:sleep_then_echo", {"steps": 1, "seconds": 0.01, "value": 1},
                        org_id="o")
    assert wait_for(runner, job["id"], {"completed", "failed"})["status"] == "completed"
    server = os.getpriority(os.PRIO_PROCESS, 0)
    workers = [os.getpriority(os.PRIO_PROCESS, w.process.pid) for w in runner._workers]
    assert workers == [min(19, server + WORKER_NICENESS)] * 2


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


def test_finished_jobs_are_kept_decoded_until_deleted_and_only_for_their_organization(runner):
    job = runner.submit("test", "tests.job_handlers:sleep_then_echo",
                        {"steps": 1, "seconds": 0.01, "value": 3}, org_id="o")
    done = wait_for(runner, job["id"], {"completed", "failed"})
    assert done["status"] == "completed"
    assert runner.get(job["id"], "o") is runner.get(job["id"], "o")  # read from the store once, then kept
    with pytest.raises(ApiError) as other:
        runner.get(job["id"], "p")
    assert other.value.status == 404
    runner.delete(job["id"])
    with pytest.raises(ApiError) as gone:
        runner.get(job["id"], "o")
    assert gone.value.status == 404


def test_at_most_the_newest_finished_jobs_are_kept(runner):
    ids = [runner.submit("test", "tests.job_handlers:sleep_then_echo", {"steps": 1, "seconds": 0.0, "value": i},
                         org_id="o")["id"] for i in range(FINISHED_KEPT + 2)]
    kept = {i: wait_for(runner, i, {"completed"}) for i in ids}
    assert runner.get(ids[-1]) is kept[ids[-1]]
    assert runner.get(ids[0]) is not kept[ids[0]] and runner.get(ids[0]) == kept[ids[0]]  # read again from the store
