"""Pipeline configs for task tests: instant (entry only), quick fits, a slow fit, and synthetic data."""

from __future__ import annotations

import uuid
import zlib
from functools import cache

import ionworks_schema as iws
import polars as pl

from ionworks_sandbox.compute.synthetic import synthetic_discharge

DN = "Negative particle diffusivity [m2.s-1]"
DP = "Positive particle diffusivity [m2.s-1]"
TRUE = {DN: 5.0e-14, DP: 8.0e-15}


@cache
def synthetic(c_rate: float = 1.0, seed: int = 1, period_s: float = 10.0) -> pl.DataFrame:
    """An SPMe discharge with 1 mV noise from known diffusivities (cached per arguments)."""
    return synthetic_discharge(TRUE, c_rates=(c_rate,), model="SPMe", noise_v=0.001, seed=seed, period_s=period_s)


def entry_pipeline(label: str | None = None) -> iws.Pipeline:
    """A pipeline of one direct entry: finishes at once; ``label`` makes its content distinct."""
    value = 298.15 + zlib.crc32((label or uuid.uuid4().hex).encode()) % 10**6 * 1e-9
    return iws.Pipeline({"known": iws.direct_entries.DirectEntry(parameters={"Ambient temperature [K]": value})},
                        name=f"entry {label or ''}".strip())


def fit_pipeline(data: str, *, optimizer: str = "de", name: str = "Dn fit") -> iws.Pipeline:
    """Fit the negative particle diffusivity to ``data`` (a ``db:``/``file:``/``folder:`` reference).

    ``optimizer``: ``"dummy"`` evaluates the initial guess only (instant), ``"de"`` is a real fit (seconds),
    ``"slow"`` fits a DFN until the sandbox's evaluation budget is spent (a minute or more).
    """
    model = "DFN" if optimizer == "slow" else "SPMe"
    optimizers = {
        "dummy": iws.optimizers.DummyOptimizer(),
        "de": iws.optimizers.DifferentialEvolution(),
        "slow": iws.optimizers.DifferentialEvolution(min_iterations=100000, absolute_tolerance=0.0,
                                                     relative_tolerance=0.0, max_evaluations=100000),
    }
    return iws.Pipeline(
        {
            "known": iws.direct_entries.DirectEntry(parameters={"Ambient temperature [K]": 298.15, DP: TRUE[DP]}),
            "fit": iws.DataFit(
                objectives={"1C": iws.objectives.CurrentDriven(data_input=data, options={"model": {"type": model}})},
                parameters={DN: iws.Parameter(DN, initial_value=2e-14, bounds=(1e-14, 1e-13))},
                cost=iws.costs.RMSE(),
                optimizer=optimizers[optimizer],
            ),
        },
        name=name,
    )
