"""The initial state of a model taken from the data: the rested voltage the measurement opens with.

A cell's lithium inventory (loss of lithium inventory) and the amount of active material in each electrode
(loss of active material) are properties of the cell; the state of charge a test starts at is a property of
the test. So the parameter set's initial concentrations only fix the cyclable lithium,
``n_Li = eps_n L_n c_n0 + eps_p L_p c_p0``, and each objective's model starts at the stoichiometries that keep
``n_Li`` and put the open-circuit voltage ``U_p(y0) - U_n(x0)`` at the measured rested voltage, as PyBaMM's
``set_initial_state("<V> V")`` does. Here it is solved for every evaluation in numpy, so the fitted
stoichiometry window, active-material fractions and OCP knots stay solver inputs.

Example:
    >>> start = RestedStart(values, voltage=4.18, temperature=298.15)
    >>> start.concentrations({"Negative electrode active material volume fraction": 0.7})
    {'Initial concentration in negative electrode [mol.m-3]': 2.9e4, 'Initial concentration in positive ...': ...}
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pybamm

INITIAL_NEGATIVE = "Initial concentration in negative electrode [mol.m-3]"
INITIAL_POSITIVE = "Initial concentration in positive electrode [mol.m-3]"
INITIAL_CONCENTRATIONS = (INITIAL_NEGATIVE, INITIAL_POSITIVE)
_STOICHIOMETRY = np.linspace(1e-4, 1.0 - 1e-4, 2001)


class RestedStart:
    """Initial concentrations at a measured open-circuit voltage for given (possibly fitted) parameter values.

    ``values`` are the model's parameter values with the fitted names as ``"[input]"``; every quantity the
    inventory and the OCPs need is processed once into an expression of those inputs.
    """

    def __init__(self, values: pybamm.ParameterValues, voltage: float, temperature: float) -> None:
        param = pybamm.LithiumIonParameters()
        grid = pybamm.Vector(_STOICHIOMETRY)

        def processed(symbol: pybamm.Symbol) -> pybamm.Symbol:
            return values.process_symbol(symbol)

        self.voltage = voltage
        self._ocp = {
            "n": processed(param.n.prim.U(grid, pybamm.Scalar(temperature))),
            "p": processed(param.p.prim.U(grid, pybamm.Scalar(temperature))),
        }
        self._terms = {
            key: processed(pybamm.Parameter(name))
            for key, name in {
                "eps_n": "Negative electrode active material volume fraction",
                "eps_p": "Positive electrode active material volume fraction",
                "L_n": "Negative electrode thickness [m]",
                "L_p": "Positive electrode thickness [m]",
                "cmax_n": "Maximum concentration in negative electrode [mol.m-3]",
                "cmax_p": "Maximum concentration in positive electrode [mol.m-3]",
                "c0_n": INITIAL_NEGATIVE,
                "c0_p": INITIAL_POSITIVE,
            }.items()
        }

    def concentrations(self, inputs: Mapping[str, float]) -> dict[str, float] | None:
        """Both initial concentrations for one set of inputs; ``None`` when no state has that voltage."""
        inputs = dict(inputs)
        v = {key: float(np.asarray(term.evaluate(inputs=inputs)).ravel()[0]) for key, term in self._terms.items()}
        u_n = np.asarray(self._ocp["n"].evaluate(inputs=inputs), dtype=float).ravel()
        u_p = np.asarray(self._ocp["p"].evaluate(inputs=inputs), dtype=float).ravel()
        capacity_n, capacity_p = v["eps_n"] * v["L_n"] * v["cmax_n"], v["eps_p"] * v["L_p"] * v["cmax_p"]
        inventory = v["eps_n"] * v["L_n"] * v["c0_n"] + v["eps_p"] * v["L_p"] * v["c0_p"]
        if min(capacity_n, capacity_p) <= 0:
            return None
        x = _STOICHIOMETRY
        y = (inventory - capacity_n * x) / capacity_p
        inside = (y >= x[0]) & (y <= x[-1])
        if inside.sum() < 2:
            return None
        x, y = x[inside], y[inside]
        # U_p(y(x)) - U_n(x) rises with x (y falls as x rises); the rested voltage is where it crosses.
        gap = np.interp(y, _STOICHIOMETRY, u_p) - u_n[inside] - self.voltage
        if not np.all(np.isfinite(gap)) or gap[0] > 0 or gap[-1] < 0:
            return None
        i = int(np.clip(np.searchsorted(gap, 0.0), 1, gap.size - 1))
        x0 = x[i - 1] + (x[i] - x[i - 1]) * (0.0 - gap[i - 1]) / ((gap[i] - gap[i - 1]) or 1.0)
        y0 = (inventory - capacity_n * x0) / capacity_p
        return {INITIAL_NEGATIVE: float(x0 * v["cmax_n"]), INITIAL_POSITIVE: float(y0 * v["cmax_p"])}
