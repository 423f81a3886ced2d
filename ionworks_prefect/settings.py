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

    retries: int = Field(default=3, ge=0, description="Retries of a task after a transient failure.")
    retry_backoff_seconds: float = Field(default=2.0, ge=0, description="First retry delay; doubles each retry.")
    retry_jitter_factor: float = Field(default=0.5, ge=0, description="Random extra delay, as a fraction.")
