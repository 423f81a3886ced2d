"""Pure logic of the ageing refit: grouping measurements into tests, fit markers, verdicts and readable output."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from ionworks_prefect import FittedParameter, FittedParameterSet, assess_fit
from ionworks_prefect.cell_tests import group_tests
from ionworks_prefect.fleet import failed_row, fleet_markdown, fleet_row
from ionworks_prefect.history import FitRecord, fit_key, fit_marker, latest_per_test, parse_fit_marker
from ionworks_prefect.reports import (
    format_percent,
    format_quantity,
    format_value,
    history_rows,
    summary_line,
    unit_of,
    values_rows,
)

DN = "Negative particle diffusivity [m2.s-1]"
LAM = "Negative electrode active material volume fraction"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _measurement(mid: str, name: str, tags: list[str], start: str | None = None):
    return SimpleNamespace(id=mid, name=name, tags=tags, start_time=start)


def _set(test: str, days: float, values: dict[str, float], rmse: float = 5.0, efc: float | None = None):
    return FittedParameterSet(pipeline_id=f"p-{test}", cell="spec/cell-1", test=test,
                              tested_at=T0 + timedelta(days=days), equivalent_full_cycles=efc,
                              parameters=[FittedParameter(name=k, value=v, lower_bound=v / 10, upper_bound=v * 10)
                                          for k, v in values.items()],
                              rmse_mv={f"{test} 1C": rmse})


def test_measurements_group_by_rpt_tag_and_order_by_start_time():
    tests = group_tests("c1", [
        _measurement("m3", "late", ["rpt:RPT 2", "iwp-sha256:ccc", "efc:80"], "2026-03-01T00:00:00Z"),
        _measurement("m1", "0.5C", ["rpt:RPT 1", "iwp-sha256:aaa"], "2026-02-01T00:00:00"),
        _measurement("m2", "1C", ["rpt:RPT 1", "iwp-sha256:bbb", "efc:40"], "2026-02-01T03:00:00+00:00"),
        _measurement("m4", "untagged", []),
    ])
    assert [t.label for t in tests] == ["RPT 1", "RPT 2", "untagged"]
    assert [m.id for m in tests[0].measurements] == ["m1", "m2"]
    assert tests[0].tested_at == datetime(2026, 2, 1, tzinfo=timezone.utc)  # naive times are UTC
    assert tests[0].equivalent_full_cycles == 40 and tests[2].tested_at is None
    assert tests[2].measurements[0].version == "id:m4"
    changed = group_tests("c1", [_measurement("m1", "0.5C", ["rpt:RPT 1", "iwp-sha256:zzz"])])
    assert changed[0].data_version != group_tests("c1", [_measurement("m1", "0.5C", ["rpt:RPT 1",
                                                                                    "iwp-sha256:aaa"])])[0].data_version


def test_fit_markers_round_trip_and_keys_change_with_data_or_config():
    (test,) = group_tests("c-1", [_measurement("m1", "x", ["rpt:RPT 3 | (hot)", "efc:12.5"], "2026-02-01T00:00:00Z")])
    key = fit_key(test, {"elements": {"fit": 1}})
    fields = parse_fit_marker(f"Refit of a cell {fit_marker(test, key)} [ionworks-prefect:abc]")
    assert fields == {"cell_instance_id": "c-1", "test": "RPT 3 | (hot)", "tested_at": test.tested_at,
                      "equivalent_full_cycles": 12.5, "fit_key": key}
    assert fit_key(test, {"elements": {"fit": 2}}) != key
    assert parse_fit_marker("no marker here") is None


def test_latest_successful_fit_per_test_wins():
    def record(pid, test, days, status="completed", failed=False):
        return FitRecord(pipeline_id=pid, cell_instance_id="c", test=test, tested_at=T0 + timedelta(days=days),
                         equivalent_full_cycles=None, fit_key="k", status=status, is_failed=failed, is_terminal=True)

    newest_first = [record("p4", "RPT 1", 30, "failed", True), record("p3", "RPT 1", 30), record("p2", "RPT 0", 0),
                    record("p1", "RPT 1", 30)]
    assert [r.pipeline_id for r in latest_per_test(newest_first)] == ["p2", "p3"]


def test_drift_against_the_baseline_catches_a_slow_creep_that_the_previous_fit_misses():
    history = [_set(f"RPT {i}", 30 * i, {DN: 5e-14 * (1 + 0.02 * i), LAM: 0.75}) for i in range(4)]
    verdicts = [assess_fit(history[: i + 1], drift_threshold=0.05) for i in range(4)]
    assert [v.verdict for v in verdicts] == ["baseline", "ok", "ok", "drifted"]
    change = {c.parameter: c for c in verdicts[-1].changes}[DN]
    assert change.change_vs_previous == pytest.approx(0.02 / 1.04)  # each night alone stays under 5 %
    assert change.change_vs_baseline == pytest.approx(0.06)
    assert change.change_per_30_days == pytest.approx(0.02)
    assert verdicts[-1].drifted == [DN]
    payload = verdicts[-1].event_payload()
    assert (payload["cell"], payload["test"], payload["baseline_test"]) == ("spec/cell-1", "RPT 3", "RPT 0")
    assert payload["values"][LAM] == 0.75 and payload["rmse_mv"] == {"RPT 3 1C": 5.0}


def test_a_poor_fit_is_degraded_and_trends_use_throughput():
    history = [_set("RPT 0", 0, {LAM: 0.75}, efc=0), _set("RPT 1", 10, {LAM: 0.72}, rmse=31.0, efc=100)]
    verdict = assess_fit(history, drift_threshold=0.05, rmse_threshold_mv=20.0)
    assert verdict.degraded and verdict.verdict == "degraded" and verdict.worst_rmse_mv == 31.0
    (change,) = verdict.changes
    assert change.change_per_efc == pytest.approx(-0.04 / 100)


def test_values_read_with_units_rounded_and_changes_in_percent():
    assert unit_of(DN) == "m2.s-1" and unit_of(LAM) == "-"
    assert format_value(5.197455570966452e-14) == "5.197e-14" and format_value(12.3) == "12.30"
    assert format_percent(0.0423) == "+4.2 %" and format_percent(None) == ""
    history = [_set("RPT 0", 0, {DN: 5e-14}), _set("RPT 1", 30, {DN: 5.5e-14})]
    verdicts = [assess_fit(history[:1]), assess_fit(history)]
    (row,) = values_rows(history[1], verdicts[1])
    assert (row["Parameter"], row["Value"], row["Unit"], row["vs baseline"]) == (
        "Negative particle diffusivity", "5.500e-14", "m2.s-1", "+10.0 %")
    rows = history_rows(history, verdicts)
    assert [r["Verdict"] for r in rows] == ["baseline", "drifted"]
    assert rows[1]["Negative particle diffusivity [m2.s-1]"] == "5.500e-14 (+10.0 %)"  # vs baseline
    assert rows[1]["RMSE [mV]"] == "5.0" and rows[1]["Date"] == "2026-01-31" and rows[1]["Pipeline"] == "p-RPT 1"
    assert row["Bounds"] == "5.500e-15 – 5.500e-13" and row["vs previous"] == "+10.0 %"
    assert format_quantity(5.5e-14, "m2.s-1") == "5.500e-14 m2.s-1" and format_quantity(0.75, "-") == "0.7500"
    assert summary_line(history[1], verdicts[1]) == (
        "RPT 1 (2026-01-31): Negative particle diffusivity 5.500e-14 m2.s-1 (+10.0 % vs baseline); RMSE 5.0 mV; "
        "drifted")


def test_fleet_view_links_each_cell_to_its_report_and_lists_failures_under_few_columns():
    newest = _set("RPT 1", 30, {DN: 5.5e-13})
    newest = newest.model_copy(update={"parameters": [FittedParameter(name=DN, value=5.5e-13, upper_bound=5.5e-13)]})
    history = [_set("RPT 0", 0, {DN: 5e-14}), newest]  # the newest at its upper bound
    ok = fleet_row("cell-1", history[1], assess_fit(history))
    rows = [failed_row("cell-0", "No processed time-series measurement found"), ok]
    report = "fitted-parameters-spec-cell-1-report"
    text = fleet_markdown("spec", rows, {report: "http://ui/v2/artifacts/artifact/a1"})
    header, _, first, second = [line for line in text.splitlines() if line.startswith("|")]
    assert header == "| Cell | Test | Verdict | RMSE [mV] | Negative particle diffusivity [m2.s-1] |"
    assert first == "| cell-0 |  | refit failed |  |  |"
    assert second == ("| [cell-1](http://ui/v2/artifacts/artifact/a1) | RPT 1 (2026-01-31) | drifted | 5.0 "
                      "| 5.500e-13 (+1000.0 %) at bound |")
    assert "2 cell(s), 2 flagged" in text and "- **cell-0**: No processed time-series measurement found" in text
    assert "[cell-1]" not in fleet_markdown("spec", rows, {})  # no UI URL: no link
