"""The README's task example runs as written against the sandbox."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from ionworks_sandbox.compute.synthetic import synthetic_discharge

README = Path(__file__).parents[1] / "README.md"

pytestmark = pytest.mark.slow


def _example(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return next(block for block in blocks if marker in block)


def test_readme_refit_example(sandbox, prefect_server, tmp_path):
    csv = tmp_path / "rpt0.csv"
    synthetic_discharge({}, c_rates=(1.0,), period_s=20.0).write_csv(csv)
    namespace: dict = {}
    exec(compile(_example("async def refit("), str(README), "exec"), namespace)
    asyncio.run(namespace["refit"](str(csv)))

    from prefect.artifacts import Artifact

    table = Artifact.get("fitted-parameters-cell-7")
    assert table is not None and "Negative particle diffusivity" in str(table.data)
