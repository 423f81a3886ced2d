"""Pipeline configs before submission: local data resolved, validated, content-hashed.

The official client inlines ``file:``/``folder:`` data relative to the worker's current directory and refuses
more than 1,000 rows. :func:`prepare_pipeline` resolves such references against ``base_dir`` instead, inlines
small files itself and uploads larger ones as measurements (``db:<id>``), so the result does not depend on
where the worker runs and its hash covers the data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Union

import pandas as pd
import polars as pl
from ionworks import Ionworks
from ionworks.validators import IssueCode, MeasurementValidationError, file_scheme_validator, run_validators_outbound
from pydantic import ValidationError

from .credentials import resolve_credentials
from .exceptions import InvalidPipelineConfig
from .measurement_data import frame_digest, load_measurement
from .measurements import CellArg, store_measurement
from .pipeline_checks import check_pipeline

PipelineConfig = Union[dict[str, Any], Any]  # a dict or an ionworks_schema.Pipeline
METADATA_KEYS = ("name", "description", "project_id", "options")
HASH_TAG_PREFIX = "ionworks-prefect:"


def config_dict(config: PipelineConfig) -> dict[str, Any]:
    """A plain dict for a pipeline given as ``ionworks_schema.Pipeline`` or dict (a shallow copy).

    Example:
        >>> config_dict(iws.Pipeline({"known": iws.direct_entries.DirectEntry(parameters={"x": 1})}))["elements"]
    """
    import ionworks_schema as iws

    if isinstance(config, iws.Pipeline):
        return config.to_config()
    if isinstance(config, dict):
        return dict(config)
    raise InvalidPipelineConfig(f"A pipeline must be an ionworks_schema.Pipeline or a dict, not {type(config).__name__}")


def _local_path(reference: str, base_dir: Path) -> Path:
    raw = Path(reference.split(":", 1)[1]).expanduser()
    path = raw if raw.is_absolute() else base_dir / raw
    if not path.exists():
        raise InvalidPipelineConfig(f"Data reference {reference!r} not found (looked for {path})")
    return path.resolve()


def _folder_time_series(folder: Path, stem: str) -> Path:
    for suffix in (".parquet", ".csv"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise InvalidPipelineConfig(f"Folder {folder} has no {stem}.parquet or {stem}.csv")


def _label(path: Path, base_dir: Path) -> str:
    try:
        return path.relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return path.name


def _resolve_reference(reference: str, base_dir: Path, client: Ionworks | None, cell: CellArg | None,
                       created: list[str]) -> Any:
    path = _local_path(reference, base_dir)
    scheme = reference.split(":", 1)[0]
    try:
        return file_scheme_validator(f"{scheme}:{path}")
    except OSError as exc:
        raise InvalidPipelineConfig(f"Data reference {reference!r} cannot be read: {exc.strerror or exc} "
                                    f"({Path(exc.filename).name if exc.filename else path})") from exc
    except MeasurementValidationError as exc:
        if not exc.has_code(IssueCode.TIME_SERIES_ROW_COUNT_EXCEEDED):
            raise InvalidPipelineConfig(f"{reference}: {exc.message}") from exc
    if cell is None:
        raise InvalidPipelineConfig(
            f"{reference} has more than 1,000 rows, which cannot be sent inline; pass cell= so it is uploaded "
            "as a measurement and referenced as db:<id>"
        )
    client = client or resolve_credentials(None).get_client()
    series = _folder_time_series(path, "time_series") if scheme == "folder" else path
    steps = None
    if scheme == "folder" and any((path / f"steps{s}").is_file() for s in (".parquet", ".csv")):
        steps = load_measurement(_folder_time_series(path, "steps"))[0]
    frame, _ = load_measurement(series)
    name = f"{_label(path, base_dir)} [{frame_digest(frame)[:8]}]"
    stored = store_measurement(client, frame, cell, name, steps=steps)  # the frame read once, not the file again
    if stored.created:
        created.append(stored.id)
    return stored.db_ref


def _resolve(value: Any, base_dir: Path, client: Ionworks | None, cell: CellArg | None, created: list[str]) -> Any:
    if isinstance(value, str) and value.startswith(("file:", "folder:")):
        return _resolve_reference(value, base_dir, client, cell, created)
    if isinstance(value, dict):
        return {k: _resolve(v, base_dir, client, cell, created) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, base_dir, client, cell, created) for v in value)
    return value


def _elements(config: dict[str, Any]) -> dict[str, Any]:
    import ionworks_schema as iws

    body = {k: v for k, v in config.items() if k not in METADATA_KEYS}
    try:
        elements = iws.Pipeline.model_validate(body).to_config()
    except ValidationError as exc:
        raise InvalidPipelineConfig(f"Invalid pipeline configuration: {exc}") from exc
    check_pipeline(elements)
    return elements


def check_config(config: PipelineConfig) -> None:
    """Check a config's shape (``ionworks_schema``) and its parameters and inline data
    (:mod:`ionworks_prefect.pipeline_checks`) without reading a data file or sending anything.

    Example:
        >>> check_config({"elements": {"fit": {...}}})
    """
    _elements(config_dict(config))


def discard_uploads(client: Ionworks, measurement_ids: list[str]) -> None:
    """Delete measurements a preparation uploaded, when what they were uploaded for cannot be submitted."""
    from ._calls import call, run_logger
    from .resource_ids import path_segment

    for measurement_id in measurement_ids:
        try:
            call("delete measurement", client.cell_measurement.delete, path_segment(measurement_id))
        except Exception as exc:  # noqa: BLE001 - the original failure is the one to raise
            run_logger().warning("Could not remove measurement %s uploaded for this pipeline: %s", measurement_id, exc)


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check a config dict against ``ionworks_schema`` and return it in the client's wire form.

    Metadata keys (name, description, project_id, options) are kept as given; elements are normalised the way
    ``client.pipeline.create`` does it, so a dict and the equivalent schema object hash the same.

    Example:
        >>> validate_config({"elements": {"known": {"element_type": "entry", "values": {"x": 1.0}}}})
    """
    metadata = {k: config[k] for k in METADATA_KEYS if config.get(k) is not None}
    elements = _elements(config)
    try:
        wire = run_validators_outbound({**elements, **metadata})
    except (MeasurementValidationError, FileNotFoundError) as exc:
        raise InvalidPipelineConfig(f"Invalid pipeline data: {exc}") from exc
    check_pipeline(wire)
    return wire


def prepare_pipeline(
    config: PipelineConfig,
    base_dir: str | Path | None = None,
    cell: CellArg | None = None,
    *,
    client: Ionworks | None = None,
    created: list[str] | None = None,
) -> dict[str, Any]:
    """Resolve local data in a pipeline config and validate it; returns the config to submit.

    The config is checked first (:func:`check_config`), so a malformed one uploads nothing. Ids of the
    measurements this call uploaded are appended to ``created``; if the resolved config is then refused, they are
    deleted before the error is raised (the caller that submits it removes them likewise if the submission is
    refused, see :func:`discard_uploads`).

    ``file:``/``folder:`` paths are resolved against ``base_dir`` (default: current directory). Files of at
    most 1,000 rows are inlined; larger ones are uploaded as measurements of ``cell`` (idempotently, named
    ``<relative path> [<digest8>]``) and replaced by ``db:<id>``; uploads use ``client``, else a client built
    from the IONWORKS_* environment.

    Example:
        >>> prepared = prepare_pipeline(pipeline, base_dir="/data/run-42", cell="1c4f...", client=client)
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    raw = config_dict(config)
    _elements(raw)
    uploaded: list[str] = [] if created is None else created
    resolved = _resolve(raw, base, client, cell, uploaded)
    try:
        return validate_config(resolved)
    except InvalidPipelineConfig:
        if uploaded:
            discard_uploads(client or resolve_credentials(None).get_client(), uploaded)
            uploaded.clear()
        raise


def config_hash(prepared: dict[str, Any], project_id: str | None) -> str:
    """sha256 of a prepared config (canonical JSON, data ids included) and its project.

    Example:
        >>> config_hash(prepared, "proj-1")[:12]
        '3f9a0c1b2d4e'
    """
    canonical = json.dumps({"project_id": project_id, **prepared}, sort_keys=True, separators=(",", ":"),
                           default=repr, allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def hash_tag(digest: str) -> str:
    """The marker appended to a pipeline description: ``[ionworks-prefect:<hash12>]``."""
    return f"[{HASH_TAG_PREFIX}{digest[:12]}]"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _fingerprint(value: Any, base_dir: Path) -> Any:
    if isinstance(value, str) and value.startswith(("file:", "folder:")):
        raw = Path(value.split(":", 1)[1]).expanduser()
        path = raw if raw.is_absolute() else base_dir / raw
        return {"data": value, "sha256": _file_digest(path) if path.exists() else None}
    if isinstance(value, (pl.DataFrame, pd.DataFrame)):
        return {"frame": frame_digest(load_measurement(value)[0])}
    if isinstance(value, dict):
        return {str(k): _fingerprint(v, base_dir) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_fingerprint(v, base_dir) for v in value]
    return run_validators_outbound(value)


def config_fingerprint(config: PipelineConfig, base_dir: str | Path | None = None) -> str:
    """A cheap content key for a config before preparation: local files and frames count by their content.

    Used as the Prefect cache key of submissions; nothing is uploaded or sent.

    Example:
        >>> config_fingerprint(pipeline, "/data/run-42") == config_fingerprint(pipeline, "/data/run-42")
        True
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    canonical = json.dumps(_fingerprint(config_dict(config), base), sort_keys=True, default=repr, allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def referenced_measurements(config: Any) -> list[str]:
    """Measurement ids referenced as ``db:<id>`` anywhere in a config, in order of appearance.

    Example:
        >>> referenced_measurements({"elements": {"fit": {"objectives": {"1C": {"data": "db:m1"}}}}})
        ['m1']
    """
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and value.startswith("db:") and value[3:] not in found:
            found.append(value[3:])
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(config)
    return found
