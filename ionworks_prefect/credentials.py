"""The Ionworks credentials block."""

from __future__ import annotations

import os
from typing import Optional, Union
from urllib.parse import urlsplit

from ionworks import Ionworks
from prefect.blocks.abstract import CredentialsBlock
from pydantic import ConfigDict, Field, SecretStr, model_validator

from .exceptions import InvalidCredentials

DEFAULT_API_URL = "https://api.ionworks.com"


def _api_url_from_environment() -> str:
    return os.environ.get("IONWORKS_API_URL") or DEFAULT_API_URL


def checked_api_url(url: str) -> str:
    """``url`` if it is an ``http(s)://host[:port][/path]`` base URL, else :class:`InvalidCredentials` naming it.

    A malformed URL can never be reached, so it fails here, before any request, instead of being retried.

    Example:
        >>> checked_api_url("htp:/nowhere")
        Traceback (most recent call last):
        InvalidCredentials: ...
    """
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except (TypeError, ValueError, AttributeError):
        parts, port_ok = None, False
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok
            or parts.query or parts.fragment or any(c.isspace() for c in url)):
        raise InvalidCredentials(f"The Ionworks API URL {url!r} is not an http:// or https:// URL with a host")
    return url


class IonworksCredentials(CredentialsBlock):
    """Credentials and endpoint for the Ionworks API.

    Fields left unset fall back to the environment variables the official client reads:
    ``IONWORKS_API_KEY``, ``IONWORKS_API_TOKEN``, ``IONWORKS_API_URL``, ``IONWORKS_PROJECT_ID`` and
    ``IONWORKS_ORGANIZATION_ID``. Every task takes this block, a saved block's name, or None (the environment)
    as ``credentials``.

    Attributes:
        api_key: Ionworks API key, sent as ``X-API-Key`` (a ``SecretStr``); falls back to ``IONWORKS_API_KEY``.
        token: Bearer token used instead of an API key (a ``SecretStr``); falls back to ``IONWORKS_API_TOKEN``.
        api_url: Base URL of the Ionworks API; ``IONWORKS_API_URL`` when set, else ``https://api.ionworks.com``.
        project_id: Default Ionworks project; falls back to ``IONWORKS_PROJECT_ID``.
        organization_id: Organization to scope requests to; falls back to ``IONWORKS_ORGANIZATION_ID``.
        timeout: Timeout in seconds for each JSON request; None keeps the client default of 10 seconds.

    Raises:
        pydantic.ValidationError: Both ``api_key`` and ``token`` are given, or a field has the wrong type
            (the message never echoes a key or token).
        InvalidCredentials: From :meth:`get_client`: no API key or token here or in the environment, or
            ``api_url`` is not an ``http(s)://`` URL with a host.

    Examples:
        Load saved credentials and talk to Ionworks:
        ```python
        from ionworks_prefect import IonworksCredentials

        credentials = IonworksCredentials.load("BLOCK_NAME")
        client = credentials.get_client()
        print(client.health_check())
        ```

        Save credentials once:
        ```python
        from pydantic import SecretStr
        from ionworks_prefect import IonworksCredentials

        IonworksCredentials(api_key=SecretStr("..."), project_id="9d2e...").save("ionworks")
        ```

        Use them in a flow, by block or by name:
        ```python
        from prefect import flow
        from ionworks_prefect import IonworksCredentials, list_cells

        @flow
        def cells_of_spec(specification: str = "NMC811 21700") -> list[str]:
            credentials = IonworksCredentials.load("ionworks")  # or pass credentials="ionworks" to the task
            return [c.instance_name for c in list_cells(specification, credentials=credentials)]
        ```
    """

    model_config = ConfigDict(hide_input_in_errors=True)  # a validation error must not echo a key or token

    _block_type_name = "Ionworks Credentials"
    _description = "Credentials and endpoint for the Ionworks battery-modelling API."
    _logo_url = "https://app.ionworks.com/ionworks-logo-square.png"
    _documentation_url = "https://docs.ionworks.com"

    api_key: Optional[SecretStr] = Field(
        default=None,
        title="API key",
        description="Ionworks API key, sent as X-API-Key. Falls back to IONWORKS_API_KEY.",
    )
    token: Optional[SecretStr] = Field(
        default=None,
        title="Bearer token",
        description="Bearer token used instead of an API key. Falls back to IONWORKS_API_TOKEN.",
    )
    api_url: str = Field(
        default_factory=_api_url_from_environment,
        title="API URL",
        description=f"Base URL of the Ionworks API. Defaults to IONWORKS_API_URL, else {DEFAULT_API_URL}.",
    )
    project_id: Optional[str] = Field(
        default=None,
        title="Project ID",
        description="Default Ionworks project. Falls back to IONWORKS_PROJECT_ID.",
    )
    organization_id: Optional[str] = Field(
        default=None,
        title="Organization ID",
        description="Organization to scope requests to. Falls back to IONWORKS_ORGANIZATION_ID.",
    )
    timeout: Optional[int] = Field(
        default=None,
        title="Request timeout",
        description="Timeout in seconds for each JSON request; the client default is 10 seconds.",
    )

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> IonworksCredentials:
        if self.api_key is not None and self.token is not None:
            raise ValueError("Give an API key or a bearer token, not both")
        return self

    def get_client(self) -> Ionworks:
        """Return a new configured ``ionworks.Ionworks`` client.

        The client makes no retries of its own (``max_retries=0``): every request is retried under the one
        policy of :mod:`ionworks_prefect.retries`.

        Returns:
            An ``ionworks.Ionworks`` client for ``api_url``.

        Raises:
            InvalidCredentials: No API key or token (here or in the environment), or ``api_url`` is not an
                ``http(s)://`` URL with a host.

        Example:
            >>> client = IonworksCredentials(api_key="key").get_client()
        """
        api_url = checked_api_url(self.api_url)
        try:
            return Ionworks(
                api_key=self.api_key.get_secret_value() if self.api_key else None,
                token=self.token.get_secret_value() if self.token else None,
                api_url=api_url,
                project_id=self.project_id,
                organization_id=self.organization_id,
                timeout=self.timeout,
                max_retries=0,
            )
        except ValueError as exc:  # the client's own check: no key and no token anywhere
            raise InvalidCredentials(f"No Ionworks credentials for {api_url}: {exc}") from None


CredentialsArg = Union[IonworksCredentials, str, None]


def resolve_credentials(credentials: CredentialsArg) -> IonworksCredentials:
    """Turn a task's ``credentials`` argument into a block: a block as is, a saved block's name, or the environment.

    Raises:
        InvalidCredentials: No saved block has that name, the name is empty, or the argument is of another type.

    Example:
        >>> client = resolve_credentials("ionworks-prod").get_client()
    """
    if isinstance(credentials, IonworksCredentials):
        return credentials
    if credentials is None:
        return IonworksCredentials()
    if not isinstance(credentials, str) or not credentials.strip():
        got = "an empty name" if isinstance(credentials, str) else f"a {type(credentials).__name__}"
        raise InvalidCredentials(f"credentials must be an IonworksCredentials block, a saved block's name or None, "
                                 f"got {got}")
    try:
        return IonworksCredentials.load(credentials, _sync=True)
    except ValueError:  # Prefect: "Unable to find block document named ..."
        raise InvalidCredentials(f"No saved IonworksCredentials block named {credentials!r}") from None
