"""The ingest_cycler_data flow against the sandbox: good files (Ionworks CSV, BioLogic .mpt, parquet) are uploaded,
broken ones (truncated, wrong columns, time going backwards, empty) are reported by name and reason."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client

from flows.demo import write_biologic_mpt
from ionworks_prefect.flows.ingest_cycler_data import (
    PARTIAL_STATE_NAME,
    IngestFailed,
    artifact_key,
    collect_files,
    ingest_cycler_data,
)
from ionworks_prefect.flows.nightly_refit import nightly_refit

from .measurement_frames import new_instance, unique
from .pipeline_configs import synthetic

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")


def cycler_drop(directory: Path) -> tuple[set[str], dict[str, str]]:
    """Three readable exports and five broken files; returns good names and, per broken name, a reason fragment."""
    synthetic(seed=11).write_csv(directory / "rpt-ionworks.csv")
    write_biologic_mpt(synthetic(seed=12), directory / "rpt-biologic.mpt")
    synthetic(seed=13).write_parquet(directory / "rpt-parquet.parquet")

    (directory / "truncated.parquet").write_bytes((directory / "rpt-parquet.parquet").read_bytes()[:400])
    mpt = (directory / "rpt-biologic.mpt").read_text(encoding="latin1").splitlines()
    (directory / "header-only.mpt").write_text("\n".join(mpt[:4]) + "\n", encoding="latin1")
    synthetic().rename({"Time [s]": "t", "Voltage [V]": "volts"}).write_csv(directory / "wrong-columns.csv")
    backwards = synthetic().with_columns(
        pl.when(pl.int_range(pl.len()) == 10).then(5.0).otherwise(pl.col("Time [s]")).alias("Time [s]"))
    backwards.write_csv(directory / "time-backwards.csv")
    (directory / "empty.csv").write_text("")
    (directory / ".partial.csv").write_text("hidden files are never ingested")
    good = {"rpt-ionworks.csv", "rpt-biologic.mpt", "rpt-parquet.parquet"}
    broken = {"truncated.parquet": "Could not read", "header-only.mpt": "Could not read",
              "wrong-columns.csv": "reader=", "time-backwards.csv": "Time [s]", "empty.csv": "empty"}
    return good, broken


def test_collect_files_joins_named_files_and_a_directory_without_hidden_files(tmp_path):
    for name in ("a.csv", "b.mpt", ".c.csv"):
        (tmp_path / name).write_text("x")
    assert collect_files("x.csv", str(tmp_path), "*.csv") == [Path("x.csv"), tmp_path / "a.csv"]
    assert collect_files([str(tmp_path / "a.csv")], str(tmp_path), "*") == [tmp_path / "a.csv", tmp_path / "b.mpt"]


async def test_good_files_are_uploaded_and_broken_ones_reported(client, tmp_path):
    good, broken = cycler_drop(tmp_path)
    cell = {"specification": unique("ingest-spec"), "instance": unique("cell")}

    state = await ingest_cycler_data(cell=cell, directory=str(tmp_path), return_state=True)
    assert state.is_completed() and state.name == PARTIAL_STATE_NAME
    assert state.message.startswith(f"{len(broken)} of {len(good) + len(broken)} cycler file(s) could not be ingested")
    report = await state.result()
    by_name = {Path(f.file).name: f for f in report.files}
    assert set(by_name) == good | set(broken)
    assert {n for n, f in by_name.items() if f.status == "uploaded"} == good
    for name, fragment in broken.items():
        outcome = by_name[name]
        assert outcome.status == "failed" and fragment in outcome.reason and name in outcome.reason
    assert "row 10" in by_name["time-backwards.csv"].reason

    table = (await Artifact.aget(artifact_key(cell))).data
    rows = json.loads(table) if isinstance(table, str) else table
    assert {Path(r["file"]).name: r["status"] for r in rows} == {n: f.status for n, f in by_name.items()}

    instance_id = client.cell_measurement.get(report.uploaded[0].measurement_id).cell_instance_id
    stored = {m.name: m for m in client.cell_measurement.list(instance_id)}
    assert set(stored) == {Path(n).stem for n in good}
    biologic = client.cell_measurement.time_series(stored["rpt-biologic"].id)
    assert biologic["Current [A]"].max() > 0, "BioLogic charge-positive current must be stored discharge-positive"
    assert by_name["rpt-ionworks.csv"].rows == synthetic(seed=11).height

    again = await ingest_cycler_data(cell=cell, directory=str(tmp_path), pattern="rpt-*", return_state=True)
    assert again.is_completed() and again.name == "Completed"
    again = await again.result()
    assert {f.status for f in again.files} == {"unchanged"}
    assert {f.measurement_id for f in again.files} == {f.measurement_id for f in report.uploaded}


async def test_a_run_where_no_file_can_be_read_fails_naming_every_file(client, tmp_path):
    _, broken = cycler_drop(tmp_path)
    _, instance_id = new_instance(client, "ingest")
    state = await ingest_cycler_data(cell=instance_id, files=[str(tmp_path / n) for n in broken], return_state=True)
    assert state.is_failed()
    with pytest.raises(IngestFailed) as failure:
        await state.result()
    assert all(name in str(failure.value) for name in broken)
    assert len(client.cell_measurement.list(instance_id)) == 0


async def test_new_data_starts_a_refit_inline_or_through_the_deployment(client, tmp_path):
    synthetic(seed=21).write_csv(tmp_path / "rpt-new.csv")
    cell = {"specification": unique("ingest-refit"), "instance": unique("cell")}
    report = await ingest_cycler_data(cell=cell, files=str(tmp_path / "rpt-new.csv"), refit=True)
    label = f"{cell['specification']}/{cell['instance']}"
    assert report.refit_flow_run_id
    assert len(client.pipeline.list(description=f"ilike.%Refit of {label}, test rpt-new %")) == 1

    deployment_id = await (await nightly_refit.to_deployment(name="refit-cell")).apply()
    synthetic(seed=22).write_csv(tmp_path / "rpt-newer.csv")
    report = await ingest_cycler_data(cell=cell, files=str(tmp_path / "rpt-newer.csv"), refit=True,
                                      refit_deployment="nightly-refit/refit-cell")
    async with get_client() as prefect:
        run = await prefect.read_flow_run(report.refit_flow_run_id)
    assert run.deployment_id == deployment_id
    assert run.parameters == {"cell": cell}
