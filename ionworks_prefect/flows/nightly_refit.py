"""Nightly refit: fit a cell's model parameters to all of its measurements and publish them.

Recipe: gather the cell's measurements -> build the fit pipeline (default: SPMe, one CurrentDriven
objective per measurement as ``db:<id>``, differential evolution, RMSE; or a YAML/JSON pipeline file)
-> skip when nothing changed since the last run -> run it on Ionworks -> publish the fitted set
(table, report, drift event when a parameter moved more than ``drift_threshold``).

"Nothing changed" is decided cheaply: the fingerprint of the pipeline and of every measurement's id and
content digest is kept in a Prefect Variable per cell; a run with the same fingerprint submits nothing
and returns the previous fit. Beneath that, ``run_pipeline`` reattaches to an identical earlier
submission instead of submitting again.

Example:
    >>> import asyncio
    >>> asyncio.run(nightly_refit(cell={"specification": "NMC811 21700", "instance": "cell-7"}))
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Union

import ionworks_schema as iws
import yaml
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable
from pydantic import BaseModel, Field

from ionworks_prefect import (
    CellTarget,
    FittedParameterSet,
    IonworksPrefectError,
    ParameterSetError,
    fetch_pipeline_result,
    publish_parameter_set,
    run_pipeline,
)
from ionworks_prefect.credentials import resolve_credentials
from ionworks_prefect.events import slug
from ionworks_prefect.measurements import DIGEST_TAG_PREFIX

DN = "Negative particle diffusivity [m2.s-1]"
DP = "Positive particle diffusivity [m2.s-1]"
#: Objective key in a pipeline file that stands for "one objective per measurement".
EACH_MEASUREMENT = "*"


class FitRange(BaseModel):
    """Start value and search bounds of one fitted parameter.

    Example:
        >>> FitRange(initial_value=3.3e-14, bounds=(1e-14, 1e-13))
    """

    initial_value: float
    bounds: tuple[float, float]


#: Chen2020 diffusivities as the start, one decade of search each (fitted in log10 by Ionworks).
DEFAULT_PARAMETERS = {
    DN: FitRange(initial_value=3.3e-14, bounds=(1e-14, 1e-13)),
    DP: FitRange(initial_value=4.0e-15, bounds=(1e-15, 2e-14)),
}


class NoMeasurements(IonworksPrefectError):
    """The cell has no time-series measurement to fit."""


class MeasurementRef(BaseModel):
    """A measurement the refit uses; ``version`` changes whenever its data does."""

    id: str
    name: str
    cell_instance_id: str
    version: str = Field(description="Content digest tag, else the last update time.")


def cell_label(cell: Union[str, CellTarget, None], specification: Optional[str]) -> str:
    """The name a refit publishes under: ``spec/instance``, the instance id, or the specification."""
    if isinstance(cell, CellTarget):
        spec = cell.specification if isinstance(cell.specification, str) else cell.specification["name"]
        return f"{spec}/{cell.instance}"
    return cell or specification or ""


def _specification_id(client: Any, specification: str) -> str:
    found = client.cell_spec.list(name_exact=specification, limit=2)
    if found:
        return found[0].id
    return client.cell_spec.get(specification).id  # not a name: an id (raises a 404 error otherwise)


def _instance_ids(client: Any, cell: Union[str, CellTarget, None], specification: Optional[str]) -> list[str]:
    if isinstance(cell, str):
        return [cell]
    if isinstance(cell, CellTarget):
        spec = cell.specification if isinstance(cell.specification, str) else cell.specification["name"]
        instances = client.cell_instance.list(_specification_id(client, spec), name_exact=cell.instance, limit=2)
        if not instances:
            raise NoMeasurements(f"Cell specification {spec!r} has no instance named {cell.instance!r}")
        return [instances[0].id]
    return [i.id for i in client.cell_instance.list(_specification_id(client, specification), limit=1000)]


def _version(measurement: Any) -> str:
    digests = [t for t in (measurement.tags or []) if t.lower().startswith(DIGEST_TAG_PREFIX)]
    return digests[0] if digests else f"updated:{getattr(measurement, 'updated_at', None) or measurement.id}"


@task(name="Gather cell measurements", cache_policy=NO_CACHE)
def gather_measurements(
    cell: Union[str, CellTarget, None], specification: Optional[str], credentials: Optional[str] = None
) -> list[MeasurementRef]:
    """Time-series measurements of one cell instance (or every instance of a specification), processed ones only.

    Example:
        >>> gather_measurements("1c4f...", None)
    """
    if (cell is None) == (specification is None):
        raise ValueError("Give exactly one of cell (instance id or CellTarget) and specification")
    client = resolve_credentials(credentials).get_client()
    refs = []
    for instance_id in _instance_ids(client, cell, specification):
        for m in client.cell_measurement.list(instance_id, measurement_type="time_series", limit=1000,
                                              order_by="created_at", order="asc"):
            if m.processing_status in (None, "ready"):
                refs.append(MeasurementRef(id=m.id, name=m.name, cell_instance_id=instance_id, version=_version(m)))
    return refs


def _objective_names(measurements: list[MeasurementRef]) -> list[str]:
    names = [m.name for m in measurements]
    return [m.name if names.count(m.name) == 1 else f"{m.name} ({m.id[:8]})" for m in measurements]


def default_pipeline(measurements: list[MeasurementRef], parameters: dict[str, FitRange], model: str) -> dict:
    """SPMe (or ``model``) refit: one CurrentDriven objective per measurement, differential evolution, RMSE in volts.

    Example:
        >>> default_pipeline(refs, DEFAULT_PARAMETERS, "SPMe")["elements"]["fit"]["cost"]
        {'normalization': 'identity', 'type': 'RMSE'}
    """
    objectives = {
        name: iws.objectives.CurrentDriven(data_input=f"db:{m.id}", options={"model": {"type": model}})
        for name, m in zip(_objective_names(measurements), measurements, strict=False)
    }
    fitted = {name: iws.Parameter(name, initial_value=r.initial_value, bounds=tuple(r.bounds))
              for name, r in parameters.items()}
    fit = iws.DataFit(objectives=objectives, parameters=fitted, cost=iws.costs.RMSE(normalization="identity"),
                      optimizer=iws.optimizers.DifferentialEvolution())
    return iws.Pipeline({"fit": fit}).to_config()


def pipeline_from_file(path: str | Path, measurements: list[MeasurementRef]) -> dict:
    """A pipeline config read from YAML or JSON; an objective keyed ``"*"`` becomes one per measurement.

    The ``"*"`` objective is a template: each copy is named after a measurement and reads it as ``db:<id>``.

    Example:
        >>> pipeline_from_file("pipelines/refit-dn.yaml", refs)["elements"]["fit"]["objectives"].keys()
    """
    config = yaml.safe_load(Path(path).read_text())  # YAML is a superset of JSON
    if not isinstance(config, dict):
        raise ValueError(f"Pipeline file {path} must hold a mapping with 'elements'")
    for element in (config.get("elements") or {}).values():
        objectives = element.get("objectives") if isinstance(element, dict) else None
        if isinstance(objectives, dict) and EACH_MEASUREMENT in objectives:
            template = objectives.pop(EACH_MEASUREMENT)
            for name, m in zip(_objective_names(measurements), measurements, strict=False):
                objectives[name] = {**template, "data": f"db:{m.id}"}
    return config


def refit_fingerprint(config: dict, measurements: list[MeasurementRef]) -> str:
    """sha256 of the pipeline config and every measurement's id and version."""
    body = {"config": config, "data": sorted((m.id, m.version) for m in measurements)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@task(name="Write parameter files", cache_policy=NO_CACHE)
def write_parameter_files(fitted: FittedParameterSet, output_dir: str, model: str) -> list[str]:
    """Write the set as JSON and, where BPX can hold every fitted parameter, as BPX.

    Example:
        >>> write_parameter_files(fitted, "out", "SPMe")
        ['out/nmc811-cell-7.json', 'out/nmc811-cell-7.bpx.json']
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / slug(fitted.cell or fitted.pipeline_id)
    json_path = stem.with_name(stem.name + ".json")
    json_path.write_text(fitted.to_json())
    written = [str(json_path)]
    try:
        bpx_path = stem.with_name(stem.name + ".bpx.json")
        bpx_path.write_text(json.dumps(fitted.to_bpx(model=model), indent=2))
        written.append(str(bpx_path))
    except ParameterSetError as exc:
        get_run_logger().warning("No BPX file: %s", exc)
    return written


def _state_variable(label: str) -> str:
    return f"nightly_refit_{slug(label).replace('-', '_')}"[:255]


@flow(name="nightly-refit", description="Refit a cell's model parameters to its measurements and publish them.")
async def nightly_refit(
    cell: Union[str, CellTarget, None] = None,
    specification: Optional[str] = None,
    parameters: Optional[dict[str, FitRange]] = None,
    pipeline_file: Optional[str] = None,
    model: str = "SPMe",
    drift_threshold: float = 0.05,
    output_dir: Optional[str] = None,
    credentials: Optional[str] = None,
    max_wait_seconds: float = 3600.0,
) -> FittedParameterSet:
    """Refit one cell (instance id or ``{"specification", "instance"}``) or every cell of a ``specification``.

    ``parameters`` (default: both particle diffusivities) are fitted unless ``pipeline_file`` gives the whole
    pipeline. ``output_dir`` also receives the set as JSON, BPX and the fit plot. ``credentials`` names a
    saved IonworksCredentials block; without it the IONWORKS_* environment is used.

    Example:
        >>> fitted = await nightly_refit(cell="1c4f...", parameters={DN: FitRange(initial_value=3e-14,
        ...                                                            bounds=(1e-14, 1e-13))})
    """
    logger = get_run_logger()
    label = cell_label(cell, specification)
    measurements = gather_measurements(cell, specification, credentials)
    if not measurements:
        raise NoMeasurements(f"No processed time-series measurement found for {label!r}")
    if pipeline_file:
        config = pipeline_from_file(pipeline_file, measurements)
    else:
        config = default_pipeline(measurements, parameters or DEFAULT_PARAMETERS, model)
    fingerprint = refit_fingerprint(config, measurements)

    state_name = _state_variable(label)
    last = await Variable.aget(state_name, default=None)
    if last and last.get("fingerprint") == fingerprint:
        previous = fetch_pipeline_result(last["pipeline_id"], credentials, return_state=True)
        if previous.is_completed():
            logger.info("No measurement changed since pipeline %s; nothing submitted.", last["pipeline_id"])
            return FittedParameterSet.from_pipeline_result(await previous.aresult(), cell=label, config=config)
        logger.warning("The last fit, pipeline %s, cannot be read any more; refitting.", last["pipeline_id"])

    logger.info("Refitting %s on %d measurement(s)", label, len(measurements))
    description = f"Nightly refit of {label}; data {fingerprint[:12]}"  # new data, new submission
    config = {**config, "name": f"Nightly refit {label}", "description": description}
    result = await run_pipeline(config, credentials, cell=measurements[0].cell_instance_id,
                                base_dir=str(Path(pipeline_file).parent) if pipeline_file else None,
                                max_wait_seconds=max_wait_seconds)
    fitted = FittedParameterSet.from_pipeline_result(result, cell=label)
    publish_parameter_set(fitted, credentials, drift_threshold=drift_threshold, image_dir=output_dir)
    if output_dir:
        write_parameter_files(fitted, output_dir, model)
    await Variable.aset(state_name, {"fingerprint": fingerprint, "pipeline_id": fitted.pipeline_id}, overwrite=True)
    return fitted
