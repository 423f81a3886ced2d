"""Protocol conversion through the official client against the live sandbox: the five documented targets
round-trip the shared protocols with verify=True, a step a target cannot express answers 422 naming the step, and
a target with no writer answers 501 naming the ones there are."""

from __future__ import annotations

import pytest
from ionworks.errors import IonworksError

from ionworks_sandbox.compute import vendor
from ionworks_sandbox.compute.ucp import parse_protocol
from tests.protocols import CCCV, FORMATION_CYCLE, ONE_C_DISCHARGE, with_step

pytestmark = pytest.mark.usefixtures("sandbox")

TARGETS = {"maccor": ".000", "neware": ".xml", "arbin": ".sdu", "biologic_bttest": ".mps", "novonix": ".pro2"}


@pytest.mark.parametrize("target", TARGETS)
def test_each_documented_target_round_trips_the_shared_protocols(client, tmp_path, target):
    for name, protocol in (("1c", ONE_C_DISCHARGE), ("cccv", CCCV), ("formation", FORMATION_CYCLE)):
        converted = client.protocol.convert(protocol, target=target, filename_stem=name, nominal_capacity_ah=5.0,
                                            verify=True)
        assert converted.target == target and converted.primary_filename == f"{name}{TARGETS[target]}"
        steps = vendor._FORMATS[target].read(converted.text())
        assert [(s.direction, s.mode) for s in steps] == \
            [(s.direction, "Current" if s.mode == "C-rate" and not vendor._FORMATS[target].native_c_rate else s.mode)
             for s in parse_protocol(protocol).steps]
        written = converted.save(tmp_path / target)
        assert [p.name for p in written] == [converted.primary_filename]
        assert written[0].read_bytes() == converted.primary_bytes


@pytest.mark.parametrize(("target", "step_yaml", "reason"), [
    ("neware", """  - Relax:
      - Rest:
          ends:
            - "Voltage > 3.6"
""", "a Neware rest step has no field for a Voltage end"),
    ("arbin", """  - Power pulse:
      - Discharge:
          mode: Power
          value: 10
          duration: 10 s
""", "constant-power steps are not written to Arbin"),
    ("novonix", """  - Hold:
      - Discharge:
          mode: Voltage
          value: 3.0
          duration: 1 h
""", "Novonix holds a voltage only as the CV phase of a CC-CV charge"),
])
def test_a_step_the_target_cannot_express_answers_422_naming_the_step(client, target, step_yaml, reason):
    protocol = with_step(step_yaml)
    step = parse_protocol(protocol).steps[1]
    with pytest.raises(IonworksError) as caught:
        client.protocol.convert(protocol, target=target, nominal_capacity_ah=5.0, verify=True)
    error = caught.value
    assert error.status_code == 422 and error.error_code == "UNPROCESSABLE_ENTITY"
    assert error.message.startswith(f"step 2 ({step.label!r}, line {step.line}): {target} cannot express")
    assert reason in error.message
    assert {k: error.data["detail"][k] for k in ("target", "step", "label", "line")} == \
        {"target": target, "step": 2, "label": step.label, "line": step.line}


def test_c_rates_without_a_capacity_are_422_only_where_the_file_holds_currents(client):
    assert client.protocol.convert(CCCV, target="arbin", verify=True).primary_bytes
    with pytest.raises(IonworksError) as caught:
        client.protocol.convert(CCCV, target="neware", verify=True)
    assert caught.value.status_code == 422 and "nominal_capacity_ah" in caught.value.message
    assert caught.value.data["detail"]["step"] == 1


@pytest.mark.parametrize("target", ["arbin_sdx", "no_such_cycler"])
def test_a_target_without_a_writer_is_501_naming_the_five(client, target):
    with pytest.raises(IonworksError) as caught:
        client.protocol.convert(ONE_C_DISCHARGE, target=target)
    assert caught.value.status_code == 501
    assert "arbin, biologic_bttest, maccor, neware, novonix" in caught.value.message
