"""UCP protocols: server-side validation, input references and conversion to cycler vendor files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from prefect.cache_policies import INPUTS, CachePolicy
from prefect.context import TaskRunContext

from ._calls import call, run_logger
from .credentials import CredentialsArg, resolve_credentials
from .exceptions import IonworksRequestError, ProtocolInvalid
from .results import ConvertedProtocol, ProtocolCheck
from .retries import ionworks_task

Protocol = Union[str, dict[str, Any]]


def _text(protocol: Protocol) -> str:
    return protocol if isinstance(protocol, str) else yaml.safe_dump(protocol, sort_keys=False)


@ionworks_task(
    name="Validate UCP protocol",
    description="Ask Ionworks whether a Universal Cycler Protocol is valid.",
    cache_policy=INPUTS - "credentials",
)
def validate_protocol(protocol: Protocol, credentials: CredentialsArg = None, *,
                      raise_if_invalid: bool = False) -> ProtocolCheck:
    """Validate a UCP protocol (YAML text or dict); with ``raise_if_invalid`` an invalid one raises :class:`ProtocolInvalid`.

    Example:
        >>> check = validate_protocol(ucp_yaml)
    """
    client = resolve_credentials(credentials).get_client()
    answer = call("validate protocol", client.protocol.validate, _text(protocol))
    check = ProtocolCheck(valid=bool(answer.get("valid")), error=answer.get("error"))
    if raise_if_invalid and not check.valid:
        raise ProtocolInvalid(f"Protocol is not valid: {check.error}", error=check.error)
    return check


@ionworks_task(
    name="Find UCP protocol inputs",
    description="List the input[...] placeholders of a Universal Cycler Protocol.",
    cache_policy=INPUTS - "credentials",
)
def find_protocol_inputs(protocol: Protocol, credentials: CredentialsArg = None) -> list[str]:
    """Names of the ``input["..."]`` placeholders a protocol expects as experiment parameters.

    Example:
        >>> find_protocol_inputs(ucp_yaml)
        ['Initial SOC', 'C-rate']
    """
    client = resolve_credentials(credentials).get_client()
    return list(call("find protocol inputs", client.protocol.find_input_references, _text(protocol)))


@dataclass
class ConversionCache(CachePolicy):
    """Conversions are cached by their inputs, except when files are to be written (``output_dir`` given)."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> Optional[str]:
        if inputs.get("output_dir") is not None:
            return None
        return (INPUTS - "credentials" - "output_dir").compute_key(task_ctx, inputs, flow_parameters, **kwargs)


@ionworks_task(
    name="Convert UCP protocol",
    description="Convert a Universal Cycler Protocol into a cycler vendor's native protocol file.",
    cache_policy=ConversionCache(),
)
def convert_protocol(
    protocol: Protocol,
    target: str,
    credentials: CredentialsArg = None,
    *,
    output_dir: str | Path | None = None,
    filename_stem: str = "protocol",
    nominal_capacity_ah: float | None = None,
    drive_cycles: dict[str, Any] | None = None,
    verify: bool = False,
) -> ConvertedProtocol:
    """Convert a UCP protocol for ``target`` (maccor, arbin, arbin_sdx, neware, biologic_bttest, novonix).

    Returns the file bytes (plus side assets); with ``output_dir`` also writes them there. A protocol the server
    rejects raises :class:`ProtocolInvalid` with its reason.

    Example:
        >>> converted = convert_protocol(ucp_yaml, "maccor", output_dir="cycler/")
    """
    client = resolve_credentials(credentials).get_client()
    try:
        result = call("convert protocol", client.protocol.convert, protocol, target, drive_cycles=drive_cycles,
                      filename_stem=filename_stem, nominal_capacity_ah=nominal_capacity_ah, verify=verify)
    except IonworksRequestError as exc:
        if exc.status_code in (400, 422):
            raise ProtocolInvalid(f"Ionworks cannot convert this protocol to {target}: {exc.message}",
                                  error=exc.message) from exc
        raise
    converted = ConvertedProtocol(target=result.target, filename=result.primary_filename,
                                  media_type=result.media_type, content=result.primary_bytes,
                                  assets=dict(result.assets))
    if output_dir is not None:
        written = converted.save(output_dir)
        run_logger().info("Wrote %s", ", ".join(str(p) for p in written))
    return converted
