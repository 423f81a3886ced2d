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
    """Ask Ionworks whether a UCP protocol is valid (cached by the protocol and ``raise_if_invalid``).

    Args:
        protocol: The protocol as UCP YAML text, or a dict (sent as YAML).
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.
        raise_if_invalid: Raise :class:`ProtocolInvalid` for an invalid protocol instead of returning the check.

    Returns:
        The :class:`ProtocolCheck`: ``valid`` and, for an invalid protocol, the server's ``error``.

    Raises:
        ProtocolInvalid: The protocol is invalid and ``raise_if_invalid`` is True (its ``error`` is the reason).
        IonworksRequestError: Ionworks refused the request (4xx) or answered in a way that cannot be used.
        IonworksTransientError: The request still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from pathlib import Path
        from prefect import flow
        from ionworks_prefect import validate_protocol

        @flow
        def check_protocols(directory: str = "protocols") -> dict[str, str | None]:
            checks = {path.name: validate_protocol(path.read_text()) for path in Path(directory).glob("*.yaml")}
            return {name: check.error for name, check in checks.items() if not check.valid}
        ```
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
    """Names of the ``input["..."]`` placeholders a protocol expects as experiment parameters (cached by protocol).

    Args:
        protocol: The protocol as UCP YAML text, or a dict (sent as YAML).
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.

    Returns:
        The placeholder names, as Ionworks lists them, e.g. ``['Initial SOC', 'C-rate']``.

    Raises:
        IonworksRequestError: Ionworks refused the request (4xx) or answered in a way that cannot be used.
        IonworksTransientError: The request still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from pathlib import Path
        from prefect import flow
        from ionworks_prefect import find_protocol_inputs

        @flow
        def missing_inputs(protocol_file: str, given: dict[str, float]) -> list[str]:
            wanted = find_protocol_inputs(Path(protocol_file).read_text())
            return [name for name in wanted if name not in given]
        ```
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
    rejects raises :class:`ProtocolInvalid` with its reason. Conversions are cached by their inputs, except when
    ``output_dir`` is given (files are always written).

    Args:
        protocol: The protocol as UCP YAML text or a dict.
        target: The cycler format: ``maccor``, ``arbin``, ``arbin_sdx``, ``neware``, ``biologic_bttest`` or
            ``novonix``.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.
        output_dir: Directory to write the primary file and its assets into (created if needed); None writes
            nothing.
        filename_stem: Stem of the primary file's name.
        nominal_capacity_ah: The cell's rated capacity in A.h; needed by ``neware`` and ``biologic_bttest`` to turn
            C-rates into absolute currents.
        drive_cycles: Drive cycle name -> samples, for protocols with drive cycle steps.
        verify: Ask Ionworks to parse the produced file back and refuse a conversion that changed the protocol's
            meaning.

    Returns:
        The :class:`ConvertedProtocol`: ``target``, ``filename``, ``media_type``, ``content`` (bytes) and
        ``assets`` (side files by name).

    Raises:
        ProtocolInvalid: Ionworks cannot convert the protocol for ``target`` (HTTP 400 or 422); ``error`` holds the
            server's reason.
        IonworksRequestError: Ionworks refused the request otherwise (4xx), answered in a way that cannot be used,
            or the files could not be written to ``output_dir`` (the ``OSError`` is the cause).
        IonworksTransientError: The request still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from pathlib import Path
        from prefect import flow
        from ionworks_prefect import convert_protocol

        @flow
        def rpt_for_the_maccor(protocol_file: str = "protocols/rpt.yaml") -> str:
            converted = convert_protocol(Path(protocol_file).read_text(), "maccor", output_dir="cycler/maccor",
                                         filename_stem="rpt", nominal_capacity_ah=5.0)
            return converted.filename
        ```
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
