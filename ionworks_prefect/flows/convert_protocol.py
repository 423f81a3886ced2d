"""Convert one UCP protocol into native files for several cycler vendors at once.

The protocol is validated first (an invalid protocol fails the run with Ionworks' reason). Then every
target is converted in parallel, each into ``<output_dir>/<target>/``. A target Ionworks cannot produce
is reported in the ``protocol-conversion`` table artifact with its reason; the others still convert.

Example:
    >>> asyncio.run(convert_protocol_files("protocols/rpt.yaml", ["maccor", "biologic_bttest"], "cycler-files"))
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal, Optional

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import acreate_table_artifact
from pydantic import BaseModel

from ionworks_prefect import ConvertedProtocol, convert_protocol, validate_protocol

from ._mapping import results_or_reasons

ARTIFACT_KEY = "protocol-conversion"


class TargetOutcome(BaseModel):
    """The files written for one vendor target, or why there are none."""

    target: str
    status: Literal["converted", "failed"]
    files: list[str] = []
    reason: Optional[str] = None


def read_protocol(protocol: str) -> str:
    """UCP text from a file path, or the text itself when ``protocol`` is not an existing file."""
    path = Path(protocol).expanduser()
    return path.read_text() if "\n" not in protocol and path.is_file() else protocol


def _outcome(target: str, directory: Path, converted: Optional[ConvertedProtocol],
             reason: Optional[str]) -> TargetOutcome:
    if converted is None:
        return TargetOutcome(target=target, status="failed", reason=reason)
    names = [converted.filename, *converted.assets]
    return TargetOutcome(target=target, status="converted", files=[str(directory / Path(n).name) for n in names])


@flow(name="convert-protocol-files", description="Convert a UCP protocol to native files for several cyclers.")
async def convert_protocol_files(
    protocol: str,
    targets: list[str],
    output_dir: str,
    filename_stem: str = "protocol",
    nominal_capacity_ah: Optional[float] = None,
    credentials: Optional[str] = None,
) -> list[TargetOutcome]:
    """Convert ``protocol`` (UCP YAML text or a file path) for each of ``targets`` into ``output_dir``.

    The protocol is validated first; then the targets are converted in parallel, each into
    ``<output_dir>/<target>/``. A target Ionworks cannot produce is logged and reported with its reason, in the
    result and in the ``protocol-conversion`` table artifact; the others still convert.

    Args:
        protocol: UCP YAML text, or the path of a file holding it.
        targets: Cycler formats to produce (``maccor``, ``arbin``, ``arbin_sdx``, ``neware``, ``biologic_bttest``,
            ``novonix``).
        output_dir: Directory that receives one subdirectory per target.
        filename_stem: Stem of each primary file's name.
        nominal_capacity_ah: The cell's rated capacity in A.h, so targets that store absolute currents (Neware,
            BioLogic) can resolve C-rates.
        credentials: The name of a saved ``IonworksCredentials`` block; None reads the ``IONWORKS_*`` variables.

    Returns:
        One :class:`TargetOutcome` per target, in the order given: ``status`` ``converted`` with the ``files``
        written, or ``failed`` with the ``reason``.

    Raises:
        ProtocolInvalid: Ionworks says the protocol is not valid; nothing was converted.
        IonworksRequestError: Ionworks refused the validation request (4xx) or answered in a way that cannot be
            used.
        IonworksTransientError: The validation request still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect.flows import convert_protocol_files

        @flow
        async def release_rpt_protocol():
            outcomes = await convert_protocol_files("protocols/rpt.yaml", ["maccor", "biologic_bttest", "novonix"],
                                                    "cycler-files", filename_stem="rpt", nominal_capacity_ah=5.0,
                                                    credentials="ionworks")
            return {o.target: o.files or o.reason for o in outcomes}
        ```
    """
    text = read_protocol(protocol)
    validate_protocol(text, credentials, raise_if_invalid=True)
    directories = [Path(output_dir) / target for target in targets]
    futures = convert_protocol.map(unmapped(text), targets, credentials=unmapped(credentials),
                                   output_dir=[str(d) for d in directories], filename_stem=unmapped(filename_stem),
                                   nominal_capacity_ah=unmapped(nominal_capacity_ah))
    settled = await asyncio.to_thread(results_or_reasons, futures)
    outcomes = [_outcome(t, d, *result) for t, d, result in zip(targets, directories, settled, strict=False)]
    for outcome in outcomes:
        if outcome.status == "failed":
            get_run_logger().warning("No %s file: %s", outcome.target, outcome.reason)
    await acreate_table_artifact(
        [{**o.model_dump(), "files": ", ".join(o.files)} for o in outcomes], key=ARTIFACT_KEY,
        description=f"Protocol converted for {len(targets)} target(s) into {Path(output_dir).resolve()}",
    )
    return outcomes
