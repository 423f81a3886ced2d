"""Submitting an Ionworks pipeline once per distinct content.

Idempotency: a submission's content hash (prepared config incl. data ids, name, description, options and
project) is written into the pipeline description as ``[ionworks-prefect:<hash12>]``. Before creating, the
project's pipelines are searched for that marker (``description=ilike.%...%``, newest first, the marker checked
on each record, see :func:`_matches`); a pending, running or completed match is reattached instead of
submitting again. After creating, duplicates left by a retried or racing submission are deleted, keeping the
earliest. Failed or canceled matches are ignored, so a resubmission runs again. ``force=True`` always submits
(its marker differs, so later lookups still find the original).
On top, the submit task's Prefect cache (key: config fingerprint + target) skips even the lookup for a day;
a cached :class:`PipelineRun` carries the status at submission, so wait on it for the current one.
Limits: the marker is visible in the description; a description edited to drop it loses the link; a pipeline
deleted in Ionworks is still returned by the cache that day.
"""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Optional

from ionworks import Ionworks
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from ._calls import call, run_logger
from .credentials import resolve_credentials
from .exceptions import InvalidPipelineConfig, IonworksPrefectError, IonworksTransientError
from .pipeline_config import HASH_TAG_PREFIX, config_fingerprint, config_hash, discard_uploads, hash_tag
from .results import PipelineRun

#: Pipelines per page when looking for an earlier identical submission.
LOOKUP_PAGE_SIZE = 100


def run_from_record(record: dict[str, Any], *, url: str | None = None, config_hash: str | None = None,
                    reattached: bool = False) -> PipelineRun:
    """A :class:`PipelineRun` from an API record (pipeline or simple pipeline), reading only the fields both of the
    client's models define (``PipelineSubmissionResponse``, ``SimplePipelineSubmissionResponse``)."""
    return PipelineRun(
        id=record["id"], name=record.get("name"), description=record.get("description"),
        status=record["status"], error=record.get("error"), is_terminal=record["is_terminal"],
        is_failed=record["is_failed"], url=url, config_hash=config_hash, reattached=reattached,
    )


def pipeline_url(client: Ionworks, pipeline_id: str) -> str | None:
    try:
        return client.urls.pipeline(pipeline_id)
    except Exception:  # noqa: BLE001 - a link is optional
        return None


def _matches(resource: Any, digest: str, project_id: str | None) -> list[Any]:
    """Unfailed pipelines carrying this submission's marker, earliest first.

    The search asks the server for the marker (``description=ilike.``), but reads the list newest first, page by
    page, and checks the marker itself, so a server that ignores the filter costs pages, not a duplicate: it stops
    at the end of the list or at the first page after a match that holds none (duplicates of one submission are
    created together).
    """
    tag = hash_tag(digest)
    found: dict[str, Any] = {}
    offset = 0
    while True:
        page = call("list pipelines", resource.list, project_id=project_id,
                    description=f"ilike.%{HASH_TAG_PREFIX}{digest[:12]}%", order_by="created_at", order="desc",
                    limit=LOOKUP_PAGE_SIZE, offset=offset)
        hits = {p.id: p for p in page if tag in (p.description or "") and not p.is_failed}
        if found and not hits.keys() - found.keys():
            break
        found.update(hits)
        offset += len(page)
        if not page or offset >= page.total:
            break
    return list(reversed(found.values()))


def _keep_earliest(resource: Any, digest: str, project_id: str | None) -> Any | None:
    """The earliest unfailed pipeline with this marker; later duplicates (from retries or races) are removed."""
    matches = _matches(resource, digest, project_id)
    for duplicate in matches[1:]:
        _discard(resource, duplicate.id)
    return matches[0] if matches else None


def _discard(resource: Any, pipeline_id: str) -> None:
    for action, fn in (("cancel pipeline", resource.cancel), ("delete pipeline", resource.delete)):
        try:
            call(action, fn, pipeline_id)
        except Exception as exc:  # noqa: BLE001 - cleanup is best effort
            run_logger().warning("Could not %s %s: %s", action.split()[0], pipeline_id, exc)


def submit_prepared(
    client: Ionworks,
    prepared: dict[str, Any],
    *,
    project_id: str | None = None,
    force: bool = False,
    simple: bool = False,
) -> PipelineRun:
    """Submit a prepared config once (see the module docstring); returns the new or reattached pipeline.

    ``simple=True`` submits a simple pipeline (``client.simple_pipeline``) under the same rules.

    Example:
        >>> run = submit_prepared(client, prepare_pipeline(config, client=client))
    """
    resource = client.simple_pipeline if simple else client.pipeline
    link = (lambda _: None) if simple else (lambda pid: pipeline_url(client, pid))
    project = project_id or prepared.get("project_id") or client.project_id
    body = {k: v for k, v in prepared.items() if k != "project_id"}
    digest = config_hash({**body, "simple": simple}, project)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # simple pipelines are deprecated upstream
        if not force and (existing := _keep_earliest(resource, digest, project)) is not None:
            return run_from_record(existing.model_dump(), url=link(existing.id), config_hash=digest, reattached=True)
        marker = hash_tag(digest) if not force else f"[{HASH_TAG_PREFIX}{digest[:12]} forced {uuid.uuid4().hex[:8]}]"
        description = " ".join(p for p in (body.pop("description", None), marker) if p)
        created = call("submit pipeline", resource.create, body, project_id=project, description=description,
                       invalid=InvalidPipelineConfig)
        keep = created if force else (_keep_earliest(resource, digest, project) or created)
    return run_from_record(keep.model_dump(), url=link(keep.id), config_hash=digest, reattached=keep.id != created.id)


def log_submission(run: PipelineRun) -> None:
    """Log a submission; a reattachment (a re-run after a crash, a retry) says so and names the pipeline it joined."""
    if run.reattached:
        run_logger().warning("Reattached to Ionworks pipeline %s (%s), submitted earlier with the same content; "
                             "not submitting again: %s", run.id, run.status, run.url or run.id)
    else:
        run_logger().info("Ionworks pipeline %s submitted: %s", run.id, run.url or run.id)


def submit_uploaded(client: Ionworks, prepared: dict[str, Any], uploaded: list[str], **options: Any) -> PipelineRun:
    """:func:`submit_prepared`; if Ionworks refuses the submission, the measurements ``uploaded`` for it by
    :func:`prepare_pipeline` are deleted first (not after a transient failure: the pipeline may exist)."""
    try:
        return submit_prepared(client, prepared, **options)
    except IonworksTransientError:
        raise
    except IonworksPrefectError:
        discard_uploads(client, uploaded)
        raise


@dataclass
class SubmissionCache(CachePolicy):
    """Cache key of a submission: config fingerprint (local data by content) + target server and project.

    No key (no caching) when ``force=True``.
    """

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> Optional[str]:
        if inputs.get("force"):
            return None
        block = resolve_credentials(inputs.get("credentials"))
        target = f"{block.api_url}|{inputs.get('project_id') or block.project_id or ''}"
        parts = {k: inputs.get(k) for k in ("name", "description", "options", "cell")}
        return config_fingerprint({"config": inputs["config"], "target": target, **parts}, inputs.get("base_dir"))
