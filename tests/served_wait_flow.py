"""A served flow that waits on one Ionworks pipeline; test_tasks_cancellation cancels its runs through Prefect."""

from prefect import flow

from ionworks_prefect import PollSchedule, wait_for_pipeline


@flow
async def wait_on_pipeline(pipeline_id: str) -> str:
    run = await wait_for_pipeline(pipeline_id, poll_schedule=PollSchedule(first=0.2, ceiling=1.0))
    return run.status


if __name__ == "__main__":
    wait_on_pipeline.serve(name="cancel-test")
