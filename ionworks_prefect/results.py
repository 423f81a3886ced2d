"""Typed results returned by ionworks-prefect tasks (pydantic models; safe to persist and cache)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import polars as pl
from pydantic import BaseModel, ConfigDict, Field


class UploadedMeasurement(BaseModel):
    """A time-series measurement stored in Ionworks.

    Example:
        >>> measurement.db_ref  # use as pipeline data
        'db:6b0e...'
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Measurement id.")
    name: str = Field(description="Measurement name, unique per cell instance.")
    cell_instance_id: str = Field(description="Cell instance the measurement belongs to.")
    row_count: int = Field(description="Rows in the uploaded time series.")
    step_count: int = Field(description="Distinct values of 'Step count' in the time series.")
    digest: str = Field(description="sha256 of the time series content (columns, types and values).")
    created: bool = Field(description="False when an identical measurement already existed and was reused.")
    source_file: Optional[str] = Field(default=None, description="Cycler file the data was read from, if any.")

    @property
    def db_ref(self) -> str:
        """The ``db:<id>`` reference used for this measurement in pipeline configs."""
        return f"db:{self.id}"


class PipelineRun(BaseModel):
    """The state of an Ionworks pipeline (or simple pipeline) at one moment.

    Example:
        >>> run.status, run.is_terminal
        ('running', False)
    """

    model_config = ConfigDict(frozen=True)

    id: str
    name: Optional[str] = None
    description: Optional[str] = None
    status: str
    error: Optional[str] = None
    is_terminal: bool
    is_failed: bool
    config_hash: Optional[str] = Field(default=None, description="Content hash used for idempotent submission.")
    reattached: bool = Field(default=False, description="True when an existing identical pipeline was reused.")
    url: Optional[str] = Field(default=None, description="Link to the pipeline in the Ionworks web app.")

    @property
    def succeeded(self) -> bool:
        """True when the pipeline completed without failure."""
        return self.is_terminal and not self.is_failed


class ElementSummary(BaseModel):
    """One pipeline element as the official client decodes its result (an ``ionworks_schema`` result object).

    Example:
        >>> result.elements["fit"].fitted, result.elements["fit"].cost
        (True, 0.0021)
    """

    model_config = ConfigDict(frozen=True)

    name: str
    result_type: str = Field(description="The result's ionworks_schema type: OptimizationResult, ValidationResult...")
    fitted: bool = Field(default=False, description="True for a data fit (a ParameterEstimatorResult).")
    cost: Optional[float] = Field(default=None, description="A data fit's final cost.")
    parameter_values: dict[str, Any] = Field(default_factory=dict)
    summary_stats: dict[str, Any] = Field(default_factory=dict,
                                          description="A validation's statistics per objective, in volts.")

    @classmethod
    def from_result(cls, name: str, result: Any) -> ElementSummary:
        """The summary of one typed element result (``PipelineResponse.element(name)``, ``result_object``).

        Example:
            >>> ElementSummary.from_result("fit", client.pipeline.result(pipeline_id).element("fit"))
        """
        import ionworks_schema as iws

        fitted = isinstance(result, iws.ParameterEstimatorResult)
        cost = result.cost if fitted else None
        if cost is None and isinstance(result, iws.OptimizationResult):
            cost = result.fun
        stats = result.summary_stats if isinstance(result, iws.ValidationResult) else {}
        return cls(name=name, result_type=result.type, fitted=fitted, cost=cost,
                   parameter_values=result.parameter_values, summary_stats=stats or {})


class PipelineResult(BaseModel):
    """Results of a completed pipeline: final parameter values plus each element's raw and summarised result.

    Example:
        >>> result.parameter_values["Negative particle diffusivity [m2.s-1]"]
        3.1e-14
    """

    model_config = ConfigDict(frozen=True)

    pipeline_id: str
    parameter_values: dict[str, Any] = Field(description="Final parameter values of the pipeline.")
    element_results: dict[str, Any] = Field(description="Raw result dict per element name, as the API returns it.")
    elements: dict[str, ElementSummary] = Field(default_factory=dict, description="Summary per element name.")
    config: Optional[dict[str, Any]] = Field(default=None, description="The submitted config, when known.")
    completed_at: Optional[str] = Field(default=None, description="When the pipeline finished (its last job's "
                                        "updated_at), when Ionworks says.")

    def fit_elements(self) -> dict[str, ElementSummary]:
        """Elements that estimated parameters (data fits), by name."""
        return {name: e for name, e in self.elements.items() if e.fitted}


class SimulationRun(BaseModel):
    """A submitted Ionworks simulation.

    Example:
        >>> run.simulation_id
        '142f...'
    """

    model_config = ConfigDict(frozen=True)

    simulation_id: str
    job_id: str
    protocol_id: Optional[str] = None
    already_existed: bool = False


class SimulationResult(BaseModel):
    """Output of a finished simulation: time series and steps as polars frames, plus scalar metrics.

    Example:
        >>> result.time_series["Voltage [V]"].min()
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    simulation_id: str
    time_series: pl.DataFrame
    steps: pl.DataFrame
    metrics: dict[str, Any] = Field(default_factory=dict)


class ConvertedProtocol(BaseModel):
    """A UCP protocol converted to a cycler vendor's native file format.

    Example:
        >>> converted.save("out/")  # writes the primary file and any assets
        [PosixPath('out/protocol.000')]
    """

    model_config = ConfigDict(frozen=True)

    target: str
    filename: str
    media_type: str
    content: bytes
    assets: dict[str, bytes] = Field(default_factory=dict, description="Side files by file name.")

    def text(self, encoding: str = "utf-8") -> str:
        """The primary file decoded as text."""
        return self.content.decode(encoding)

    def save(self, directory: str | Path) -> list[Path]:
        """Write the primary file and the assets into ``directory`` (created if needed); primary first."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, data in {self.filename: self.content, **self.assets}.items():
            path = out / Path(name).name
            path.write_bytes(data)
            written.append(path)
        return written


class ProtocolCheck(BaseModel):
    """Server validation of a UCP protocol.

    Example:
        >>> check.valid, check.error
        (False, "steps[0]: unknown mode 'Crate'")
    """

    model_config = ConfigDict(frozen=True)

    valid: bool
    error: Optional[str] = None


class StudyAssignment(BaseModel):
    """Measurements and simulations assigned to an Ionworks study."""

    model_config = ConfigDict(frozen=True)

    study_id: str
    measurement_ids: list[str] = Field(default_factory=list)
    simulation_ids: list[str] = Field(default_factory=list)


class PublishedArtifacts(BaseModel):
    """Where a published parameter set can be found in Prefect."""

    model_config = ConfigDict(frozen=True)

    table_key: str = Field(description="Table of the newest values (one version per fit).")
    report_key: str = Field(description="Markdown report: values, changes, verdict, fit and trend plots.")
    history_key: str = Field(description="Table with one row per fitted test.")
    image_path: Optional[str] = None
    artifact_ids: list[str] = Field(default_factory=list)
    ui_urls: list[str] = Field(default_factory=list)
    verdict: Optional[str] = Field(default=None, description="The newest fit's verdict (ok, drifted, degraded...).")
    drifted: list[str] = Field(default_factory=list, description="Parameters whose change exceeded the threshold.")
