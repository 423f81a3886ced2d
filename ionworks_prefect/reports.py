"""How fitted parameters read in the Prefect UI: rounded values with units, % changes, verdicts and plots.

Pure rendering, no I/O: values in 4 significant figures with the unit from the parameter's name (PyBaMM names
carry it in brackets, ``"-"`` when dimensionless), relative changes as signed percentages, RMSE in mV. Tables are
kept to a few short columns: the Prefect UI shows an artifact beside a details panel, in about 700 px, and
scrolls (table artifacts) or wraps (markdown tables) what does not fit. Plots are drawn at that width.

Example:
    >>> format_value(5.197455570966452e-14), unit_of("Negative particle diffusivity [m2.s-1]")
    ('5.197e-14', 'm2.s-1')
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .parameter_sets import FittedParameter, FittedParameterSet
from .verdicts import FitVerdict, assess_fit

_UNIT = re.compile(r"\s*\[([^\]]+)\]\s*$")


def unit_of(name: str) -> str:
    """The unit in a PyBaMM parameter name's trailing brackets, ``"-"`` when it has none."""
    found = _UNIT.search(name)
    return found[1] if found else "-"


def label_of(name: str) -> str:
    """A PyBaMM parameter name without its unit: ``"Negative particle diffusivity"``."""
    return _UNIT.sub("", name)


def format_value(value: float | None) -> str:
    """4 significant figures, trailing zeros kept (``3.100e-14``, ``12.30``); empty for None."""
    return "" if value is None else f"{value:#.4g}".rstrip(".")


def format_quantity(value: float | None, unit: str) -> str:
    """A value in 4 significant figures with its unit (``6.503e-14 m2.s-1``; none for ``"-"``); empty for None."""
    return "" if value is None else format_value(value) + ("" if unit == "-" else f" {unit}")


def format_percent(fraction: float | None) -> str:
    """A relative change as a signed percentage (``+4.2 %``); empty for None."""
    return "" if fraction is None else f"{100 * fraction:+.1f} %"


def format_mv(value: float | None) -> str:
    """Millivolts to one decimal (``12.3 mV``); empty for None."""
    return "" if value is None else f"{value:.1f} mV"


def worst_rmse_mv(fitted: FittedParameterSet) -> float | None:
    """The worst objective's RMSE of a fit, mV (None when Ionworks reported none)."""
    return max(fitted.rmse_mv.values()) if fitted.rmse_mv else None


def rmse_text(rmse_mv: dict[str, float]) -> str:
    """RMSE per objective, e.g. ``0.5C 12.3 mV · 1C 14.1 mV``."""
    return " · ".join(f"{name} {format_mv(value)}" for name, value in rmse_mv.items()) or "not reported"


def summary_line(fitted: FittedParameterSet, verdict: FitVerdict | None) -> str:
    """One line that says what a fit found: test, date, each value with its change since baseline, RMSE, verdict.

    Used as artifact descriptions, so an artifact's version list shows the values.
    """
    changes = {c.parameter: c.change_vs_baseline for c in verdict.changes} if verdict else {}
    values = ", ".join(f"{label_of(p.name)} {format_quantity(p.value, unit_of(p.name))}"
                       + (f" ({format_percent(changes[p.name])} vs baseline)" if changes.get(p.name) is not None
                          else "")
                       for p in fitted.headline)
    head = f"{fitted.test or fitted.cell or fitted.pipeline_id}"
    if fitted.tested_at:
        head += f" ({fitted.tested_at:%Y-%m-%d})"
    worst = worst_rmse_mv(fitted)
    tail = f"; RMSE {format_mv(worst)}" if worst is not None else ""
    return f"{head}: {values}{tail}" + (f"; {verdict.verdict}" if verdict else "")


def bounds_text(parameter: FittedParameter) -> str:
    """The search range, ``1.000e-14 – 1.000e-13``, marked ``(at bound)`` when the value sits on one."""
    text = f"{format_value(parameter.lower_bound) or '…'} – {format_value(parameter.upper_bound) or '…'}"
    return text + (" (at bound)" if parameter.at_bound else "")


def values_rows(fitted: FittedParameterSet, verdict: FitVerdict | None) -> list[dict[str, Any]]:
    """One row per fitted parameter: value, unit, changes in % against the previous and the first test, bounds."""
    changes = {c.parameter: c for c in verdict.changes} if verdict else {}
    rows = []
    for p in fitted.headline:
        change = changes.get(p.name)
        rows.append({
            "Parameter": label_of(p.name), "Value": format_value(p.value), "Unit": unit_of(p.name),
            "vs previous": format_percent(change.change_vs_previous if change else None),
            "vs baseline": format_percent(change.change_vs_baseline if change else None),
            "Bounds": bounds_text(p),
        })
    curves: dict[str, list[Any]] = {}
    for p in fitted.parameters:
        if p.curve:
            curves.setdefault(p.curve, []).append(p)
    for curve, knots in curves.items():
        shifts = [1000 * abs(k.value - k.initial_value) for k in knots if k.initial_value is not None]
        moved = f", moved up to {max(shifts):.1f} mV from its start" if shifts else ""
        rows.append({"Parameter": label_of(curve), "Value": f"{len(knots)} knots{moved}", "Unit": unit_of(curve),
                     "vs previous": "", "vs baseline": "",
                     "Bounds": "(a knot at bound)" if any(k.at_bound for k in knots) else ""})
    return rows


def trend_text(verdict: FitVerdict) -> str:
    """Each parameter's trend over the history, e.g. ``Negative particle diffusivity +4.2 % per 30 days``."""
    return " · ".join(f"{label_of(c.parameter)} {format_percent(c.change_per_30_days)} per 30 days"
                      for c in verdict.changes if c.change_per_30_days is not None)


def history_verdicts(history: Sequence[FittedParameterSet], *, drift_threshold: float, rmse_threshold_mv: float,
                     drift_thresholds: Mapping[str, float] | None = None) -> list[FitVerdict]:
    """The verdict of every fit in a history (oldest first), each against the fits before it."""
    return [assess_fit(history[: i + 1], drift_threshold=drift_threshold, rmse_threshold_mv=rmse_threshold_mv,
                       drift_thresholds=drift_thresholds)
            for i in range(len(history))]


def history_rows(history: Sequence[FittedParameterSet], verdicts: Sequence[FitVerdict]) -> list[dict[str, Any]]:
    """One row per fit: test, date, verdict, worst RMSE (mV), each parameter as ``value (change vs baseline)`` in a
    column named after it with its unit, and the pipeline's short id (its first 8 characters, as Prefect shows ids)."""
    rows = []
    for fitted, verdict in zip(history, verdicts, strict=True):
        changes = {c.parameter: c.change_vs_baseline for c in verdict.changes}
        worst = worst_rmse_mv(fitted)
        row: dict[str, Any] = {"Test": fitted.test or "", "Date": f"{fitted.tested_at:%Y-%m-%d}" if fitted.tested_at
                               else f"{fitted.created_at:%Y-%m-%d} (fitted)", "Verdict": verdict.verdict,
                               "RMSE [mV]": "" if worst is None else f"{worst:.1f}"}
        for p in fitted.headline:
            moved = changes.get(p.name)
            row[f"{label_of(p.name)} [{unit_of(p.name)}]"] = (
                format_value(p.value) + (f" ({format_percent(moved)})" if moved is not None else ""))
        row["Pipeline"] = fitted.pipeline_id[:8]
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of rows (columns: the union of the rows' keys, in order of appearance)."""
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")).replace("|", "\\|").replace("\n", " ") for c in columns) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def png_markdown(png: bytes, alt: str) -> str:
    """An inline PNG image in markdown (Prefect's markdown artifacts show data URIs)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def warm_up_plotting() -> None:
    """Import matplotlib's figure and Agg canvas now (about a second), e.g. in a thread while a fit runs."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


def _channel(channels: dict[str, list], *words: str) -> list | None:
    """The first channel whose name contains every word (case-insensitive)."""
    return next((v for name, v in channels.items() if all(w in name.lower() for w in words)), None)


#: Plots are drawn at the width the Prefect UI gives an artifact (6.8 in at 100 dpi: 680 px), so text is shown at
#: its own size; a fit plot of one objective and the trend plot are 30-60 kB as PNG.
WIDTH_IN, DPI = 6.8, 100


#: Margins in inches (left, right, bottom, top) and between rows of axes: a fixed layout draws the figure once,
#: where a constrained layout draws it twice (0.15 s against 0.26 s for a fit plot of two objectives).
MARGINS_IN, ROW_GAP_IN = (0.75, 0.15, 0.55, 0.3), 0.8

#: Titles sit on the top of their axes, where matplotlib's automatic placement puts them when nothing is drawn
#: above the axes (no top ticks or labels here); placed so, matplotlib does not measure every axis's ticks to
#: place them, a third of a fit plot's drawing time.
TITLE_Y = 1.0


def _figure(height_in: float, rows: int, row_gap_in: float = ROW_GAP_IN) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI)
    figure.set_facecolor("white")
    left, right, bottom, top = MARGINS_IN
    axes_height = (height_in - bottom - top - row_gap_in * (rows - 1)) / rows
    figure.subplots_adjust(left=left / WIDTH_IN, right=1 - right / WIDTH_IN, bottom=bottom / height_in,
                           top=1 - top / height_in, wspace=0.3, hspace=row_gap_in / axes_height)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def render_fit_plot(series: dict[str, dict[str, list]]) -> bytes:
    """PNG bytes, one row per objective: measured (dots) and model (line) voltage over time in hours, and the
    error in mV.

    Example:
        >>> png = render_fit_plot({"1C": {"Time [s]": [0, 1], "Data voltage [V]": [4.1, 4.0]}})
    """
    rows = max(1, len(series))
    figure = _figure(2.6 * rows, rows)
    axes = figure.subplots(rows, 2, squeeze=False, gridspec_kw={"width_ratios": [3, 2]})
    for (voltage_ax, error_ax), (objective, channels) in zip(axes, series.items()):
        seconds = channels.get("Time [s]") or list(range(len(next(iter(channels.values()), []))))
        hours = [t / 3600 if t is not None else None for t in seconds]
        data = _channel(channels, "data", "voltage")
        model = _channel(channels, "model", "voltage")
        error = _channel(channels, "error")
        if data is not None and model is not None:
            error = [m - d if None not in (m, d) else None for m, d in zip(model, data)]
        if data is not None:
            voltage_ax.plot(hours, data, ".", markersize=2.5, color="0.35", label="Measured")
        if model is not None:
            voltage_ax.plot(hours, model, linewidth=1.5, color="tab:orange", label="Model")
        if error is not None:
            error_ax.plot(hours, [1000 * e if e is not None else None for e in error], linewidth=0.8,
                          color="tab:red")
        voltage_ax.set_title(objective, y=TITLE_Y)
        voltage_ax.set(xlabel="Time [h]", ylabel="Voltage [V]")
        voltage_ax.legend(loc="best", fontsize=8)
        error_ax.axhline(0, color="0.6", linewidth=0.8)
        error_ax.set_title("Model − measured", y=TITLE_Y)
        error_ax.set(xlabel="Time [h]", ylabel="Error [mV]")
    return _png(figure)


def render_trend_plot(history: Sequence[FittedParameterSet]) -> bytes:
    """PNG bytes: each parameter relative to its baseline (%) and the worst RMSE (mV), test by test.

    The x axis is the test date where every test has one, else the test order.

    Example:
        >>> png = render_trend_plot(history)
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    dated = all(s.tested_at for s in history)
    x = [s.tested_at for s in history] if dated else list(range(len(history)))
    figure = _figure(4.4, 2, row_gap_in=0.45)  # the axes share x: the upper one has no x labels
    values_ax, rmse_ax = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    baseline = history[0].values
    for name in dict.fromkeys(p.name for s in history for p in s.headline):
        if not baseline.get(name):
            continue
        ys = [100 * (s.values[name] / baseline[name] - 1) if name in s.values else None for s in history]
        values_ax.plot(x, ys, marker="o", linewidth=1.5, label=label_of(name))
    values_ax.axhline(0, color="0.6", linewidth=0.8)
    values_ax.set_title(f"Fitted parameters against the first test ({history[0].test or 'baseline'})", y=TITLE_Y)
    values_ax.set(ylabel="Change [%]")
    values_ax.legend(loc="best", fontsize=8)
    rmse_ax.plot(x, [worst_rmse_mv(s) for s in history], marker="s", color="tab:red", linewidth=1.5)
    rmse_ax.set_title("Fit quality", y=TITLE_Y)
    rmse_ax.set(ylabel="Worst RMSE [mV]", xlabel="Test date" if dated else "Test")
    rmse_ax.set_ylim(bottom=0)
    if dated:
        locator = AutoDateLocator(maxticks=6)
        rmse_ax.xaxis.set_major_locator(locator)
        rmse_ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    else:
        rmse_ax.set_xticks(x, [s.test or str(i) for i, s in enumerate(history)], rotation=20, fontsize=8)
    return _png(figure)
