"""Read-only web pages at the addresses the client's ``client.urls`` builds when ``IONWORKS_APP_URL`` is
``<sandbox>/app``, so pipeline links published to the Prefect UI open on the sandbox.

Pages are served without a key, like a local development UI: they need both the project and the pipeline id
(random UUIDs) and show only what the pipeline's own record and result hold.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from .deps import Records
from .jobs import Runner
from .pipelines import element_views
from .submissions import job_state

router = APIRouter(prefix="/app")

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
          ".failed,.canceled{color:#b00}.completed{color:#070}")


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")
    return HTMLResponse(html, status_code=status_code)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    cells = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{cells}</table>"


def _value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@router.get("/projects/{project_id}/pipelines/{pipeline_id}", response_class=HTMLResponse)
def pipeline_page(project_id: str, pipeline_id: str, store: Records, runner: Runner) -> HTMLResponse:
    """The pipeline's status, its elements and, once completed, its parameter values."""
    record = store.find("pipeline", pipeline_id)
    if record is None or record["project_id"] != project_id:
        return _page("Not found", f"<h1>No pipeline {escape(pipeline_id)} in project {escape(project_id)}</h1>", 404)
    state = job_state(runner, record["job_id"])
    elements = [(e["name"], e["element_type"], e["status"], e["error"] or "") for e in element_views(record, state["job"])]
    values = ((state["job"].get("output") or {}).get("result") or {}).get("parameter_values") or {}
    parts = [
        f"<h1>{escape(record['name'])}</h1>",
        f"<p>{escape(record.get('description') or '')}</p>",
        f"<p>Pipeline <code>{escape(pipeline_id)}</code>: <strong class='{escape(state['status'])}'>"
        f"{escape(state['status'])}</strong>, created {escape(record['created_at'])}</p>",
    ]
    if state["error"]:
        parts.append(f"<p class='failed'>{escape(state['error'])}</p>")
    parts += ["<h2>Elements</h2>", _table(("Element", "Type", "Status", "Error"), elements)]
    if values:
        rows = [(name, _value(value)) for name, value in sorted(values.items())]
        parts += ["<h2>Parameter values</h2>", _table(("Parameter", "Value"), rows)]
    return _page(record["name"], "".join(parts))
