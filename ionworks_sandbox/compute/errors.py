"""Typed errors of the pipeline engine; the HTTP layer turns both into 422 answers.

Example:
    >>> raise UnsupportedFeature("elements.fit.optimizer.type", "CMAES", ["DifferentialEvolution"])
"""

from __future__ import annotations

from collections.abc import Iterable


class PipelineInputError(ValueError):
    """A pipeline config or its data is wrong; ``field`` is the dotted path of the culprit.

    Example:
        >>> raise PipelineInputError("elements.fit.objectives.1C.data", "column 'Voltage [V]' is missing")
    """

    error_code = "CONFIGURATION_ERROR"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnsupportedFeature(ValueError):
    """The sandbox does not implement what a pipeline asks for (a valid Ionworks feature it lacks).

    Example:
        >>> err = UnsupportedFeature("elements.fit.cost.type", "ChiSquare", ["MAE", "RMSE"])
        >>> err.supported
        ['MAE', 'RMSE']
    """

    error_code = "CONFIGURATION_ERROR"

    def __init__(self, field: str, value: object, supported: Iterable[str]) -> None:
        self.field = field
        self.value = str(value)
        self.supported = sorted(str(s) for s in supported)
        listed = ", ".join(self.supported) if self.supported else "none"
        super().__init__(f"{field}: {self.value!r} is not supported by the sandbox (supported: {listed})")
