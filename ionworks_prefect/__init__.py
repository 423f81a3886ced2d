"""Prefect tasks, blocks and typed results for the Ionworks battery-modelling platform.

Example:
    >>> from prefect import flow
    >>> from ionworks_prefect import CellTarget, run_pipeline, upload_measurement
"""

from .artifacts import publish_parameter_set
from .credentials import IonworksCredentials
from .exceptions import (
    InvalidMeasurementError,
    InvalidPipelineConfig,
    InvalidResourceId,
    InvalidSimulationConfig,
    IonworksNotFound,
    IonworksPrefectError,
    IonworksRequestError,
    IonworksTransientError,
    MeasurementNameTaken,
    MeasurementProcessingFailed,
    ParameterSetError,
    PipelineCanceled,
    PipelineFailed,
    ProtocolInvalid,
    RemoteJobFailed,
    ResultNotReady,
    SimulationFailed,
    WaitTimedOut,
)
from .measurement_data import read_measurement_file
from .measurements import CellTarget, upload_measurement
from .parameter_sets import FittedParameter, FittedParameterSet
from .pipeline_config import prepare_pipeline
from .pipelines import fetch_pipeline_result, run_pipeline, submit_pipeline, wait_for_pipeline
from .protocols import convert_protocol, find_protocol_inputs, validate_protocol
from .results import (
    ConvertedProtocol,
    ElementSummary,
    PipelineResult,
    PipelineRun,
    ProtocolCheck,
    PublishedArtifacts,
    SimulationResult,
    SimulationRun,
    StudyAssignment,
    UploadedMeasurement,
)
from .retries import ionworks_task, retry_on_transient_error
from .simple_pipelines import run_simple_pipeline, submit_simple_pipeline, wait_for_simple_pipeline
from .simulations import fetch_simulation_result, run_simulation, run_simulation_batch
from .studies import assign_to_study
from .waiting import PollSchedule

__version__ = "0.1.0"

__all__ = [
    # block
    "IonworksCredentials",
    # tasks
    "upload_measurement",
    "submit_pipeline",
    "wait_for_pipeline",
    "fetch_pipeline_result",
    "run_pipeline",
    "submit_simple_pipeline",
    "wait_for_simple_pipeline",
    "run_simple_pipeline",
    "run_simulation",
    "run_simulation_batch",
    "fetch_simulation_result",
    "validate_protocol",
    "find_protocol_inputs",
    "convert_protocol",
    "assign_to_study",
    "publish_parameter_set",
    # helpers
    "CellTarget",
    "PollSchedule",
    "prepare_pipeline",
    "read_measurement_file",
    "ionworks_task",
    "retry_on_transient_error",
    # results
    "UploadedMeasurement",
    "PipelineRun",
    "PipelineResult",
    "ElementSummary",
    "SimulationRun",
    "SimulationResult",
    "ConvertedProtocol",
    "ProtocolCheck",
    "StudyAssignment",
    "PublishedArtifacts",
    "FittedParameter",
    "FittedParameterSet",
    # errors
    "IonworksPrefectError",
    "IonworksRequestError",
    "IonworksNotFound",
    "IonworksTransientError",
    "InvalidMeasurementError",
    "InvalidPipelineConfig",
    "InvalidResourceId",
    "InvalidSimulationConfig",
    "MeasurementNameTaken",
    "MeasurementProcessingFailed",
    "RemoteJobFailed",
    "PipelineFailed",
    "PipelineCanceled",
    "SimulationFailed",
    "ResultNotReady",
    "WaitTimedOut",
    "ProtocolInvalid",
    "ParameterSetError",
]
