"""Typed errors raised by ionworks-prefect tasks.

Every error derives from :class:`IonworksPrefectError`. Only :class:`IonworksTransientError` is retried by the
shared task retry policy (``ionworks_prefect.retries``); everything else fails the task at once. Messages carry
the server's own message and never a credential.
"""

from __future__ import annotations

from typing import Any


class IonworksPrefectError(Exception):
    """Root of every error raised by ionworks-prefect."""


class IonworksRequestError(IonworksPrefectError):
    """The Ionworks API refused a request (4xx) or answered in a way the client could not use."""

    def __init__(self, message: str, *, status_code: int | None = None, error_code: str | None = None,
                 action: str | None = None) -> None:
        super().__init__(message)
        self.message = message  # the server's own message
        self.status_code = status_code
        self.error_code = error_code
        self.action = action

    def __str__(self) -> str:
        codes = " ".join(str(p) for p in (self.status_code, self.error_code) if p is not None)
        prefix = f"{self.action} failed" if self.action else ""
        prefix += f" [{codes}]" if codes else ""
        return f"{prefix.strip()}: {self.message}" if prefix else self.message


class IonworksNotFound(IonworksRequestError):
    """The Ionworks resource does not exist (HTTP 404)."""


class IonworksTransientError(IonworksRequestError):
    """A retryable failure: connection error, timeout, HTTP 429 or 5xx.

    ``attempts`` is how many times the request was tried when the retry policy gave up on it (``None`` when it
    was raised before any retry); such an error is not retried again.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        retry_after: float | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, error_code=error_code, action=action)
        self.retry_after = retry_after
        self.attempts: int | None = None

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (after {self.attempts} attempts)" if self.attempts and self.attempts > 1 else text


class InvalidResourceId(IonworksPrefectError, ValueError):
    """An Ionworks id is empty or cannot name one resource in a URL; nothing was sent."""

    def __init__(self, message: str, *, resource_id: Any) -> None:
        super().__init__(message)
        self.resource_id = resource_id


class InvalidCredentials(IonworksPrefectError, ValueError):
    """No usable credentials: no key or token, an unknown saved block, or an API URL that is not http(s)://host.

    Raised before anything is sent; the message names the block or the URL, never a key.
    """


class InvalidPipelineConfig(IonworksPrefectError):
    """The pipeline configuration is malformed or references data that cannot be used."""


class InvalidSimulationConfig(IonworksPrefectError):
    """The simulation request is malformed (unknown keys, conflicting protocol sources, bad DOE)."""


class InvalidMeasurementError(IonworksPrefectError):
    """Measurement data failed validation before anything was sent."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        row: int | None = None,
        issues: list[dict[str, Any]] | None = None,
    ) -> None:
        where = [f"file {file!r}"] if file is not None else []
        where += [f"column {column!r}"] if column is not None else []
        where += [f"row {row}"] if row is not None else []
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.file = file
        self.column = column
        self.row = row
        self.issues = issues or []


class MeasurementNameTaken(IonworksPrefectError):
    """A measurement of that name already exists on the cell and holds different data."""

    def __init__(self, message: str, *, measurement_id: str) -> None:
        super().__init__(message)
        self.measurement_id = measurement_id


class MeasurementProcessingFailed(IonworksPrefectError):
    """The server could not process an uploaded measurement; the upload was removed."""

    def __init__(self, message: str, *, measurement_id: str, reason: str) -> None:
        super().__init__(message)
        self.measurement_id = measurement_id
        self.reason = reason


class RemoteJobFailed(IonworksPrefectError):
    """A remote Ionworks job ended in a failed state."""

    def __init__(self, message: str, *, resource_id: str, status: str, error: str | None = None) -> None:
        super().__init__(message)
        self.resource_id = resource_id
        self.status = status
        self.error = error


class PipelineFailed(RemoteJobFailed):
    """The Ionworks pipeline ended with status ``failed``."""


class PipelineCanceled(RemoteJobFailed):
    """The Ionworks pipeline ended with status ``canceled``."""


class ResultNotReady(IonworksPrefectError):
    """A result was requested for a pipeline or simulation that has not completed."""


class SimulationFailed(RemoteJobFailed):
    """An Ionworks simulation job failed or was canceled."""


class WaitTimedOut(IonworksPrefectError):
    """Waiting gave up before the remote job finished; the remote job keeps running."""

    def __init__(self, message: str, *, resource_id: str, last_status: str | None) -> None:
        super().__init__(message)
        self.resource_id = resource_id
        self.last_status = last_status


class ProtocolInvalid(IonworksPrefectError):
    """The Ionworks server rejected a UCP protocol."""

    def __init__(self, message: str, *, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


class ParameterSetError(IonworksPrefectError):
    """A fitted parameter set cannot be built or exported as asked."""
