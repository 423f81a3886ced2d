"""Prefect tasks, blocks and typed results for the Ionworks battery-modelling platform.

Example:
    >>> from prefect import flow
    >>> from ionworks_prefect import CellTarget, run_pipeline, upload_measurement
"""

from .aliases import load_parameter_set, promote_parameter_set
from .artifacts import publish_parameter_set
from .cell_tests import CellIdentity, CellTest, gather_cell_tests, identify_cell, list_cells
from .credentials import IonworksCredentials
from .cycler_files import UnsupportedCyclerFile, detect_format, read_measurement_file
from .exceptions import (
    InvalidCredentials,
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
from .history import parameter_history
from .jobs import IonworksPipeline, IonworksPipelineRun, run_ionworks_pipeline
from .measurement_checks import MeasurementSanityError
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
from .simulation_jobs import IonworksSimulation, IonworksSimulationRun, run_ionworks_simulation
from .simulations import fetch_simulation_result, run_simulation, run_simulation_batch
from .studies import assign_to_study
from .verdicts import FitVerdict, assess_fit
from .waiting import PollSchedule

__version__ = "0.1.0"

__all__ = [
    # blocks and the job flow
    "IonworksCredentials",
    "IonworksPipeline",
    "IonworksPipelineRun",
    "run_ionworks_pipeline",
    "IonworksSimulation",
    "IonworksSimulationRun",
    "run_ionworks_simulation",
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
    "gather_cell_tests",
    "identify_cell",
    "list_cells",
    "parameter_history",
    "promote_parameter_set",
    "load_parameter_set",
    # helpers
    "assess_fit",
    "CellTarget",
    "PollSchedule",
    "prepare_pipeline",
    "read_measurement_file",
    "detect_format",
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
    "CellTest",
    "CellIdentity",
    "FitVerdict",
    # errors
    "IonworksPrefectError",
    "IonworksRequestError",
    "IonworksNotFound",
    "IonworksTransientError",
    "InvalidCredentials",
    "InvalidMeasurementError",
    "MeasurementSanityError",
    "UnsupportedCyclerFile",
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
