"""Settings of ionworks-prefect, read from ``PREFECT_INTEGRATIONS_IONWORKS_*`` environment variables.

Example:
    ```bash
    export PREFECT_INTEGRATIONS_IONWORKS_RETRIES=5
    ```
    ```python
    from ionworks_prefect.settings import IonworksSettings

    print(IonworksSettings().retries)
    ```
"""

from __future__ import annotations

from prefect.settings.base import PrefectBaseSettings, build_settings_config
from pydantic import Field


class IonworksSettings(PrefectBaseSettings):
    """Tuning of the Ionworks tasks, read from ``PREFECT_INTEGRATIONS_IONWORKS_<FIELD>``."""

    model_config = build_settings_config(("integrations", "ionworks"))

    retries: int = Field(default=5, ge=0, description="Retries of one Ionworks request after a transient failure.")
    retry_backoff_seconds: float = Field(default=0.5, ge=0, description="First retry delay; doubles each retry.")
    retry_jitter_factor: float = Field(default=0.5, ge=0, description="Random extra delay, as a fraction.")
    fleet_concurrency_limit: str = Field(
        default="ionworks-fleet-refits",
        description="Prefect global concurrency limit bounding how many cells a fleet refits at once.")
    fleet_concurrency: int = Field(default=8, ge=1, description="Its size, when the fleet creates it.")
    rate_limit: str = Field(
        default="ionworks-api",
        description="Prefect rate limit (a global concurrency limit with slot decay) on a fleet's Ionworks requests.")
    rate_limit_per_second: float = Field(default=50.0, gt=0, description="Its decay: Ionworks requests per second.")
    rate_limit_burst: int = Field(default=200, ge=1, description="Its size: requests allowed in a burst.")
    requests_per_cell: int = Field(
        default=20, ge=1,
        description="Slots of the rate limit a cell's refit takes before it starts: about the requests it makes.")
