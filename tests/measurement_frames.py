"""Physically consistent measurement frames and cells for sandbox tests, plus a raw upload that skips client checks."""

from __future__ import annotations

import io
import uuid

import numpy as np
import polars as pl
import requests

TIME, CURRENT, VOLTAGE, STEP = "Time [s]", "Current [A]", "Voltage [V]", "Step count"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def discharge_frame(points_per_step: int = 100, current: float = 1.0) -> pl.DataFrame:
    """Rest, constant-current discharge, rest at 1 s sampling: time from 0, steps 0, 1, 2.

    Positive current is discharge: voltage drops by the ohmic step when the current starts, falls during the
    discharge and relaxes upwards in the final rest.
    """
    n = points_per_step
    relax = np.arange(n, dtype=float)
    voltage = np.concatenate(
        [
            np.full(n, 4.10),
            4.05 - 0.30 * np.linspace(0.0, 1.0, n),
            3.80 + 0.05 * (1.0 - np.exp(-relax / 20.0)),
        ]
    )
    return pl.DataFrame(
        {
            TIME: np.arange(3 * n, dtype=float),
            CURRENT: np.concatenate([np.zeros(n), np.full(n, current), np.zeros(n)]),
            VOLTAGE: voltage,
            STEP: np.repeat(np.arange(3), n),
        }
    )


def new_instance(client, prefix: str = "cell") -> tuple[str, str]:
    """A fresh cell specification and instance with unique names; returns ``(spec_id, instance_id)``."""
    spec = client.cell_spec.create({"name": unique(f"{prefix}-spec")})
    instance = client.cell_instance.create(spec.id, {"name": unique(prefix)})
    return spec.id, instance.id


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def raw_upload(client, instance_id: str, name: str, body: bytes) -> str:
    """initiate-upload, PUT ``body`` as time_series.parquet, confirm-upload: the client's sequence without its checks."""
    started = client.post(
        f"/cell_instances/{instance_id}/cell_measurements/initiate-upload", {"measurement": {"name": name}}
    )
    target = next(u for u in started["uploads"] if u["filename"] == "time_series.parquet")
    requests.put(
        target["signed_url"], data=body, headers={"Content-Type": "application/octet-stream"}, timeout=30
    ).raise_for_status()
    measurement_id = started["measurement_id"]
    client.post(
        f"/cell_measurements/{measurement_id}/confirm-upload",
        {"cell_instance_id": instance_id, "measurement": {"name": name}, "measurement_type": "time_series"},
    )
    return measurement_id


def upload(client, frame: pl.DataFrame, name: str | None = None, instance_id: str | None = None) -> str:
    """Upload ``frame`` through the official client (to a new cell unless ``instance_id``); return its id."""
    instance_id = instance_id or new_instance(client)[1]
    bundle = client.cell_measurement.create(
        instance_id, {"measurement": {"name": name or unique("rpt")}, "time_series": frame}
    )
    return bundle.id
