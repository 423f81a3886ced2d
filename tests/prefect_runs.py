"""Reading runs back from the Prefect server, which learns of task runs through events, a moment after the flow."""

from __future__ import annotations

import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import TaskRun
from prefect.exceptions import ObjectNotFound


def ended_task_run(task_run_id, timeout: float = 30.0) -> TaskRun:
    """The task run's record once the server has it and its end: on a busy server both arrive after the flow."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            try:
                run = client.read_task_run(task_run_id)
            except ObjectNotFound:
                run = None
            if run is not None and run.end_time is not None:
                return run
            assert time.monotonic() < deadline, f"task run {task_run_id} never ended on the server"
            time.sleep(0.2)
