"""Turn a parsed UCP protocol into a ``pybamm.Experiment`` built from ``pybamm.step`` objects.

All steps form one cycle, so the solution's ``cycles[0].steps`` line up with the protocol's steps (a step
PyBaMM finds infeasible at its start comes back as an empty solution). C-rates become currents through the
nominal capacity, so the experiment does not depend on how PyBaMM looks the capacity up.

Example:
    >>> experiment, initial_soc, temperature_k = to_pybamm_experiment(parse_protocol(text), 5.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pybamm

    from .ucp_types import EndCondition, Protocol, Step

DEFAULT_TEMPERATURE_C = 25.0


def to_pybamm_experiment(
    protocol: Protocol, nominal_capacity_ah: float | None
) -> tuple[pybamm.Experiment, float | str | None, float]:
    """``(experiment, initial_soc, temperature_K)``.

    ``initial_soc`` is a fraction, a ``"3.9 V"`` string for a voltage initial state (both accepted by
    ``pybamm.Simulation.solve``), or ``None`` to keep the parameter set's own initial state.

    Example:
        >>> experiment, soc, kelvin = to_pybamm_experiment(protocol, nominal_capacity_ah=5.0)
    """
    import pybamm

    steps = tuple(_step(pybamm, step, nominal_capacity_ah, protocol.period_s) for step in protocol.steps)
    celsius = DEFAULT_TEMPERATURE_C if protocol.temperature_c is None else protocol.temperature_c
    temperature_k = celsius + 273.15
    experiment = pybamm.Experiment([steps], temperature=temperature_k)
    if protocol.initial_soc is not None:
        initial: float | str | None = protocol.initial_soc
    elif protocol.initial_voltage is not None:
        initial = f"{protocol.initial_voltage} V"
    else:
        initial = None
    return experiment, initial, temperature_k


def _amps(step: Step, c_rate: float, capacity: float | None) -> float:
    if capacity is None or capacity <= 0:
        raise ValueError(f"step {step.number} uses a C-rate, which needs the cell's nominal capacity "
                         "('Nominal cell capacity [A.h]')")
    return c_rate * capacity


def _step(pybamm: Any, step: Step, capacity: float | None, period: float) -> pybamm.step.BaseStep:
    durations = [end.value for end in step.ends if end.variable == "Time"]
    terminations = [_termination(pybamm, step, end, capacity) for end in step.ends if end.variable != "Time"]
    common: dict[str, Any] = {
        "duration": min(durations) if durations else None,
        "termination": terminations or None,
        "period": period,
        "description": f"Step {step.number}: {step.describe()}",
        "direction": step.direction.lower(),
    }
    if step.direction == "Rest":
        return pybamm.step.rest(**common)
    sign = 1.0 if step.direction == "Discharge" else -1.0
    if step.mode == "Voltage":
        return pybamm.step.voltage(step.value, **common)
    if step.mode == "Power":
        return pybamm.step.power(sign * step.value, **common)
    amps = step.value if step.mode == "Current" else _amps(step, step.value, capacity)
    return pybamm.step.current(sign * amps, **common)


def _termination(pybamm: Any, step: Step, end: EndCondition, capacity: float | None) -> Any:
    if end.variable == "Voltage":
        return pybamm.step.VoltageTermination(end.value, operator=end.operator)
    amps = end.value if end.variable == "Current" else _amps(step, end.value, capacity)
    if end.operator == "<":
        # No operator: PyBaMM compares |I|, which is what a CV taper end means. "< x A" would compare the
        # signed (negative, charging) current and end the step before it starts.
        return pybamm.step.CurrentTermination(amps)
    return pybamm.step.CustomTermination(
        f"|Current| > {amps:g} A", lambda variables: amps - abs(variables["Current [A]"])
    )
