"""The convert_protocol_files flow against the sandbox: files for all five documented targets in parallel, offline;
unsupported targets reported in the artifact without failing the run; an invalid protocol failing it."""

from __future__ import annotations

import json

import pytest
from prefect.artifacts import Artifact

from ionworks_prefect import ProtocolInvalid
from ionworks_prefect.flows.convert_protocol import ARTIFACT_KEY, convert_protocol_files, read_protocol
from tests.protocols import CCCV

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")

#: The five documented conversion targets and the file each writes.
WRITTEN = {"maccor": ".000", "neware": ".xml", "arbin": ".sdu", "biologic_bttest": ".mps", "novonix": ".pro2"}


async def test_each_target_gets_its_files_and_an_unsupported_one_is_reported(tmp_path):
    protocol = tmp_path / "cccv.yaml"
    protocol.write_text(CCCV)
    assert read_protocol(str(protocol)) == CCCV and read_protocol(CCCV) == CCCV

    outcomes = await convert_protocol_files(str(protocol), [*WRITTEN, "arbin_sdx", "no_such_cycler"],
                                            str(tmp_path / "out"), filename_stem="cccv", nominal_capacity_ah=5.0)
    by_target = {o.target: o for o in outcomes}
    assert {t: o.status for t, o in by_target.items()} == \
        {**dict.fromkeys(WRITTEN, "converted"), "arbin_sdx": "failed", "no_such_cycler": "failed"}
    for target, extension in WRITTEN.items():
        files = by_target[target].files
        assert files == [str(tmp_path / "out" / target / f"cccv{extension}")]
        assert (tmp_path / "out" / target / f"cccv{extension}").stat().st_size > 0
    assert "no_such_cycler" in by_target["no_such_cycler"].reason
    assert "MITS Pro 8" in by_target["arbin_sdx"].reason
    assert not (tmp_path / "out" / "no_such_cycler").exists()

    table = (await Artifact.aget(ARTIFACT_KEY)).data
    rows = json.loads(table) if isinstance(table, str) else table
    assert {r["target"]: r["status"] for r in rows} == {t: o.status for t, o in by_target.items()}


async def test_an_invalid_protocol_fails_before_any_conversion(tmp_path):
    state = await convert_protocol_files(CCCV.replace("mode: Voltage", "mode: Teleport"), ["maccor"],
                                         str(tmp_path / "out"), return_state=True)
    assert state.is_failed()
    with pytest.raises(ProtocolInvalid, match="Teleport|mode"):
        await state.result()
    assert not (tmp_path / "out").exists()
