"""Job handlers used to exercise the sandbox job runner itself."""

import time


def sleep_then_echo(payload, ctx):
    for step in range(payload["steps"]):
        ctx.report({"step": step + 1, "of": payload["steps"]})
        time.sleep(payload["seconds"])
    return {"echo": payload["value"]}


def explode(payload, ctx):
    raise ValueError(f"cannot use value {payload['value']!r}")
