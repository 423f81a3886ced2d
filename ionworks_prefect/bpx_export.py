"""Export a PyBaMM parameter set (a base set plus overrides) as a validated BPX document.

Functions of the base set are tabulated at the reference temperature (OCPs over stoichiometry, electrolyte
transport over concentration); exchange-current densities become BPX reaction rate constants. Temperature
dependence (activation energies) is not carried over. An OCP adapted through knots (``"Positive electrode OCP
at Stoichiometry 0.5 [V]"``, fitted or held from an earlier fit) is written as that curve: linear between the
knots, its end segments extended, as ``PiecewiseInterpolation1D`` defines it. Changed values BPX has no field
for (a contact resistance) go into its ``User-defined`` section, which PyBaMM reads back under the same names.
"""

from __future__ import annotations

import copy
import numbers
from typing import Any

import numpy as np

from .exceptions import ParameterSetError
from .parameter_sets import curve_knot

BPX_VERSION = 1.0
_STO_GRID = np.linspace(0.002, 0.998, 120)
_CE_GRID = np.linspace(50.0, 4000.0, 80)
#: Base-set parameters that reach BPX only through derived quantities (stoichiometry limits, surface area).
_INDIRECT = {
    "Initial concentration in negative electrode [mol.m-3]",
    "Initial concentration in positive electrode [mol.m-3]",
    "Open-circuit voltage at 0% SOC [V]",
    "Open-circuit voltage at 100% SOC [V]",
    "Negative electrode active material volume fraction",
    "Positive electrode active material volume fraction",
    "Negative electrode Bruggeman coefficient (electrolyte)",
    "Positive electrode Bruggeman coefficient (electrolyte)",
    "Separator Bruggeman coefficient (electrolyte)",
    "Ambient temperature [K]",
    "Initial temperature [K]",
    "Initial concentration in electrolyte [mol.m-3]",
}


def _same(base: Any, value: float) -> bool:
    return isinstance(base, numbers.Number) and float(base) == float(value)


class _Reader:
    """Reads base-set values and remembers which names were used."""

    def __init__(self, values: Any, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.values = values
        self.curves = curves
        self.used: set[str] = set(_INDIRECT)

    def __call__(self, name: str) -> Any:
        self.used.add(name)
        return self.values[name]

    def evaluate(self, name: str, *args: Any) -> np.ndarray:
        """Evaluate a (possibly function-valued) parameter at numeric arguments; arrays broadcast."""
        import pybamm

        value = self(name)
        if isinstance(value, numbers.Number):
            return np.full(np.broadcast(*args).shape, float(value))
        children = {f"x{i}": pybamm.Vector(np.broadcast_to(np.asarray(a, float), np.broadcast(*args).shape).ravel())
                    if np.ndim(a) else pybamm.Scalar(float(a)) for i, a in enumerate(args)}
        symbol = pybamm.FunctionParameter(name, children)
        return np.asarray(self.values.process_symbol(symbol).evaluate(), dtype=float).ravel()

    def table(self, name: str, x: np.ndarray, *rest: float) -> Any:
        """A float for constants, else a BPX interpolated table over ``x`` (a fitted curve over its own points)."""
        value = self(name)
        if name in self.curves:
            points, curve = self.curves[name]
            return {"x": points.tolist(), "y": curve.tolist()}
        if isinstance(value, numbers.Number):
            return float(value)
        y = self.evaluate(name, x, *rest)
        keep = np.isfinite(y)
        return {"x": x[keep].tolist(), "y": y[keep].tolist()}


def fitted_curves(overrides: dict[str, float], known: Any) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], set[str]]:
    """Curves of the base set adapted through knots over stoichiometry, as (points, values), and the knots' names.

    A curve is tabulated on the export grid and at each knot: exact at the knots and linear between them, its
    end segments extended linearly (``PiecewiseInterpolation1D`` joins segments through a hinge 1e-4 wide,
    which this leaves out).

    Example:
        >>> curves, knots = fitted_curves({"Positive electrode OCP at Stoichiometry 0.2 [V]": 4.2,
        ...                                "Positive electrode OCP at Stoichiometry 0.9 [V]": 3.6}, ["Positive electrode OCP [V]"])
    """
    by_curve: dict[str, dict[float, tuple[str, float]]] = {}
    for name, value in overrides.items():
        knot = curve_knot(name)
        if knot is not None and knot[1] == "Stoichiometry" and knot[0] in known:
            by_curve.setdefault(knot[0], {})[knot[2]] = (name, float(value))
    curves, knots = {}, set()
    for curve, points in by_curve.items():
        if len(points) < 2:
            continue
        at = np.array(sorted(points))
        value = np.array([points[a][1] for a in at])
        grid = np.union1d(_STO_GRID, at)
        table = np.interp(grid, at, value)
        below, above = grid < at[0], grid > at[-1]
        table[below] = value[0] + (grid[below] - at[0]) * (value[1] - value[0]) / (at[1] - at[0])
        table[above] = value[-1] + (grid[above] - at[-1]) * (value[-1] - value[-2]) / (at[-1] - at[-2])
        curves[curve] = (grid, table)
        knots.update(name for name, _ in points.values())
    return curves, knots


def _electrode(read: _Reader, side: str, sto_limits: tuple[float, float], c_e: float, t_ref: float) -> dict:
    import pybamm

    domain, particle = f"{side} electrode", f"{side} particle"
    c_max = read(f"Maximum concentration in {side.lower()} electrode [mol.m-3]")
    radius = read(f"{particle} radius [m]")
    porosity = read(f"{domain} porosity")
    c_s = 0.5 * c_max
    j0 = read.evaluate(f"{domain} exchange-current density [A.m-2]", c_e, c_s, c_max, t_ref)[0]
    k_pybamm = j0 / np.sqrt(c_e * c_s * (c_max - c_s))
    return {
        "Thickness [m]": read(f"{domain} thickness [m]"),
        "Porosity": porosity,
        "Transport efficiency": porosity ** read(f"{domain} Bruggeman coefficient (electrolyte)"),
        "Conductivity [S.m-1]": read(f"{domain} conductivity [S.m-1]"),
        "Minimum stoichiometry": min(sto_limits),
        "Maximum stoichiometry": max(sto_limits),
        "Maximum concentration [mol.m-3]": c_max,
        "Particle radius [m]": radius,
        "Surface area per unit volume [m-1]": 3 * read(f"{domain} active material volume fraction") / radius,
        "Diffusivity [m2.s-1]": read.table(f"{particle} diffusivity [m2.s-1]", _STO_GRID, t_ref),
        "OCP [V]": read.table(f"{domain} OCP [V]", _STO_GRID),
        "Entropic change coefficient [V.K-1]": read.table(f"{domain} OCP entropic change [V.K-1]", _STO_GRID, c_max),
        "Reaction rate constant [mol.m-2.s-1]": float(k_pybamm * c_max * np.sqrt(c_e) / pybamm.constants.F.value),
    }


def export_bpx(overrides: dict[str, float], *, fitted: list[str], base: str = "Chen2020", model: str = "SPMe",
               title: str = "Fitted parameters") -> dict[str, Any]:
    """Merge ``overrides`` over the PyBaMM set ``base`` and return a BPX document validated with ``bpx``.

    ``fitted`` names must be parameters of the base set or knots of one of its curves, else
    :class:`ParameterSetError`; those BPX has no field for are kept in its ``User-defined`` section.

    Example:
        >>> export_bpx({"Negative particle diffusivity [m2.s-1]": 5e-14}, fitted=["Negative particle diffusivity [m2.s-1]"])
    """
    import bpx
    import pybamm

    try:
        values = pybamm.ParameterValues(base)
    except Exception as exc:  # noqa: BLE001 - unknown base set
        raise ParameterSetError(f"Unknown PyBaMM parameter set {base!r}: {exc}") from exc
    curves, knots = fitted_curves(overrides, values.keys())
    unknown = [n for n in overrides if n not in values.keys() and n in fitted and n not in knots]
    if unknown:
        raise ParameterSetError(f"Fitted parameter(s) not in the {base} base set, so not exportable to BPX: {unknown}")
    changed = {k: v for k, v in overrides.items() if k in values.keys() and (k in fitted or not _same(values[k], v))}
    values.update({k: v for k, v in overrides.items() if k in values.keys()})
    values.update({curve: (f"Fitted {curve}", table) for curve, table in curves.items()})
    read = _Reader(values, curves)
    read.used |= knots
    try:
        x0, x100, y100, y0 = pybamm.lithium_ion.get_min_max_stoichiometries(values)
        t_ref, c_e = read("Reference temperature [K]"), values["Initial concentration in electrolyte [mol.m-3]"]
        document = {
            "Header": {"BPX": BPX_VERSION, "Title": title, "Model": model,
                       "Description": f"Fitted values merged over the PyBaMM {base} parameter set."},
            "Parameterisation": {
                "Cell": {
                    "Electrode area [m2]": read("Electrode height [m]") * read("Electrode width [m]"),
                    "External surface area [m2]": read("Cell cooling surface area [m2]"),
                    "Volume [m3]": read("Cell volume [m3]"),
                    "Number of electrode pairs connected in parallel to make a cell":
                        read("Number of electrodes connected in parallel to make a cell"),
                    "Lower voltage cut-off [V]": read("Lower voltage cut-off [V]"),
                    "Upper voltage cut-off [V]": read("Upper voltage cut-off [V]"),
                    "Nominal cell capacity [A.h]": read("Nominal cell capacity [A.h]"),
                    "Reference temperature [K]": t_ref,
                },
                "Electrolyte": {
                    "Cation transference number": read("Cation transference number"),
                    "Diffusivity [m2.s-1]": read.table("Electrolyte diffusivity [m2.s-1]", _CE_GRID, t_ref),
                    "Conductivity [S.m-1]": read.table("Electrolyte conductivity [S.m-1]", _CE_GRID, t_ref),
                },
                "Negative electrode": _electrode(read, "Negative", (x0, x100), c_e, t_ref),
                "Positive electrode": _electrode(read, "Positive", (y100, y0), c_e, t_ref),
                "Separator": {
                    "Thickness [m]": read("Separator thickness [m]"),
                    "Porosity": read("Separator porosity"),
                    "Transport efficiency": read("Separator porosity") ** read("Separator Bruggeman coefficient (electrolyte)"),
                },
            },
            "State": {
                "Initial conditions": {"Initial temperature [K]": values["Initial temperature [K]"],
                                       "Initial electrolyte concentration [mol.m-3]": c_e},
                "Thermal environment": {"Ambient temperature [K]": values["Ambient temperature [K]"]},
            },
        }
    except (KeyError, ValueError, TypeError, pybamm.ModelError) as exc:
        raise ParameterSetError(f"The {base}-based parameter set cannot be expressed in BPX: {exc}") from exc
    user_defined = {name: float(value) for name, value in changed.items() if name not in read.used}
    if user_defined:
        document["Parameterisation"]["User-defined"] = user_defined
        document["Header"]["Description"] += (" BPX has no field for " + ", ".join(user_defined) + ": they are in "
                                              "User-defined, which PyBaMM reads back under the same names.")
    try:
        bpx.parse_bpx_obj(copy.deepcopy(document))  # parsing replaces nested dicts with models
    except Exception as exc:  # noqa: BLE001 - bpx raises pydantic and its own errors
        raise ParameterSetError(f"The exported document is not valid BPX: {exc}") from exc
    return document
