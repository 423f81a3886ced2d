"""The sandbox's vendor protocol writers and parsers: every target round-trips the shared protocols, each format
holds what the vendor's public files hold, and a step a target cannot express is refused naming the step."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from ionworks_sandbox.compute import vendor
from ionworks_sandbox.compute.ucp import EndCondition, Step, parse_protocol
from ionworks_sandbox.compute.vendor import (
    SUPPORTED_TARGETS,
    ProtocolConversionError,
    UnsupportedTarget,
    convert_protocol,
)
from tests.protocols import CCCV, FORMATION_CYCLE, ONE_C_DISCHARGE, with_step

FIVE_TARGETS = ("maccor", "neware", "arbin", "biologic_bttest", "novonix")
FILES = {"maccor": (".000", "application/xml"), "neware": (".xml", "application/xml"), "arbin": (".sdu", "text/plain"),
         "biologic_bttest": (".mps", "text/plain"), "novonix": (".pro2", "text/plain")}
CAPACITY_AH = 5.0


def _text(result: dict) -> str:
    return base64.b64decode(result["primary"]["content_base64"]).decode("utf-8")


def _kinds(steps: list[Step]) -> list[tuple]:
    return [(s.direction, s.mode, s.value, sorted((e.variable, e.operator, round(e.value, 9)) for e in s.ends))
            for s in steps]


def test_the_five_documented_targets_are_written():
    assert set(FIVE_TARGETS) == set(SUPPORTED_TARGETS)


@pytest.mark.parametrize("protocol", [ONE_C_DISCHARGE, CCCV, FORMATION_CYCLE], ids=["1C", "CCCV", "formation"])
@pytest.mark.parametrize("target", FIVE_TARGETS)
def test_each_target_round_trips_the_shared_protocols(target: str, protocol: str) -> None:
    result = convert_protocol(protocol, target, filename_stem="rpt", nominal_capacity_ah=CAPACITY_AH, verify=True)
    extension, media_type = FILES[target]
    assert result["target"] == target and result["assets"] == []
    assert result["primary"]["filename"] == f"rpt{extension}" and result["primary"]["media_type"] == media_type

    steps = vendor._FORMATS[target].read(_text(result))
    source = parse_protocol(protocol).steps
    assert [s.direction for s in steps] == [s.direction for s in source]
    assert len(steps) == len(source)


def test_neware_writes_bts_step_types_in_mA_and_tenths_of_mV():
    root = ET.fromstring(_text(convert_protocol(FORMATION_CYCLE, "neware", nominal_capacity_ah=2.0)).encode())
    config = root.find("config")
    assert config.get("type") == "Step File" and config.find("Head_Info/MultCap").get("Value") == "7200000"
    steps = list(config.find("Step_Info"))
    assert [s.get("Step_Type") for s in steps] == ["4", "1", "3", "4", "2", "6"]
    fields = [{f.tag: f.get("Value") for f in s.iterfind("Limit/Main/*")} for s in steps]
    assert fields[0] == {"Time": "1800000"}
    assert fields[1] == {"Curr": "500", "Stop_Volt": "42000"}
    assert fields[2] == {"Volt": "42000", "Time": "7200000", "Stop_Curr": "50", "Curr": "500"}
    assert fields[4] == {"Curr": "1000", "Time": "9000000", "Stop_Volt": "27000"}  # C/2 of 2 A.h as a current
    with pytest.raises(ProtocolConversionError, match="nominal_capacity_ah"):
        convert_protocol(FORMATION_CYCLE, "neware")


def test_neware_reads_a_public_style_step_file_and_refuses_a_loop():
    step_file = """<?xml version="1.0" encoding="utf-8"?>
<root><config type="Step File" version="18"><Step_Info Num="4">
  <Step1 Step_ID="1" Step_Type="4"><Limit><Main><Time Value="180000" /></Main></Limit></Step1>
  <Step2 Step_ID="2" Step_Type="2"><Limit><Main><Curr Value="2.5" /><Rate Value="0.5" /><Stop_Volt Value="30000" />
  </Main></Limit></Step2>
  <Step3 Step_ID="3" Step_Type="19"><Limit><Main><Volt Value="30000" /><Stop_Curr Value="0.1" /></Main></Limit></Step3>
  <Step4 Step_ID="4" Step_Type="6" />
</Step_Info></config></root>"""
    assert _kinds(vendor.neware.read(step_file)) == [
        ("Rest", None, None, [("Time", ">", 180.0)]),
        ("Discharge", "Current", 0.0025, [("Voltage", "<", 3.0)]),
        ("Discharge", "Voltage", 3.0, [("Current", "<", 0.0001)])]
    looped = step_file.replace('Step_Type="6"', 'Step_Type="5"')
    with pytest.raises(ValueError, match="Cycle"):
        vendor.neware.read(looped)


def test_arbin_writes_native_c_rates_signed_currents_and_crlf():
    text = _text(convert_protocol(FORMATION_CYCLE, "arbin"))  # C-rates need no capacity on Arbin
    assert text.startswith("[Version Section]\r\n") and "\n" not in text.replace("\r\n", "")
    assert "[Schedule_Step4]\r\nm_uLimitNum=3\r\nm_szLabel=5-Discharge\r\nm_szStepCtrlType=C-Rate" in text
    assert "m_szCtrlValue=-0.5\r\n" in text and "m_uStepNum=5\r\n" in text
    assert "Equation0_szLeft=PV_CHAN_Step_Time\r\nEquation0_szCompareSign=>\r\nEquation0_szRight=9000" in text
    assert text.count("m_szGotoStep=End Test") == 2  # both limits of the last step end the test

    discharge_cv = with_step("""  - Hold:
      - Discharge:
          mode: Voltage
          value: 3.0
          ends:
            - "Current < 0.1"
""")
    text = _text(convert_protocol(discharge_cv, "arbin", verify=True))
    assert "Equation0_szLeft=PV_CHAN_Current\r\nEquation0_szCompareSign=>\r\nEquation0_szRight=-0.1" in text
    assert vendor.arbin.read(text)[1] == Step(2, "Discharge", "Voltage", 3.0, (EndCondition("Current", "<", 0.1),),
                                              label="Hold")


def test_arbin_refuses_a_limit_jumping_elsewhere():
    text = _text(convert_protocol(CCCV, "arbin")).replace("m_szGotoStep=End Test", "m_szGotoStep=1-CC Charge")
    with pytest.raises(ValueError, match="going to '1-CC Charge'"):
        vendor.arbin.read(text)


def test_novonix_writes_cc_then_cv_as_one_cc_cv_charge_and_reads_two_steps():
    text = _text(convert_protocol(FORMATION_CYCLE, "novonix", nominal_capacity_ah=2.0))
    blocks = [line for line in text.splitlines() if line.startswith("[") and not line.startswith("[End")]
    assert blocks[:3] == ["[Protocol operating limits]", "[Protocol emergency limits]", "[Open circuit storage]"]
    assert [b for b in blocks if b in ("[Open circuit storage]", "[CC-CV charge]", "[Constant current discharge]")] \
        == ["[Open circuit storage]", "[CC-CV charge]", "[Open circuit storage]", "[Constant current discharge]"]
    assert "   [Storage_time 30 minutes]" in text and "   [Storage_time 1 hour]" in text
    assert "      [0 End step if hold time is greater than 2 hours]" in text
    assert "      [1 End step if absolute current is less than 0.05 A]" in text
    assert "   [Discharge_current 1 A]\n   [Discharge_voltage 2.7 V]" in text
    assert "      [0 End step if step time is longer than 150 minutes]" in text
    assert "      [0 Save data if \u2206T is greater than 30 seconds]" in text
    steps = vendor.novonix.read(text)
    assert [(s.direction, s.mode) for s in steps[1:3]] == [("Charge", "Current"), ("Charge", "Voltage")]


def test_novonix_reads_the_public_example_protocol_and_refuses_a_repeat():
    # Blocks from the protocol in BatLabLancaster/preparenovonix example_data/example_data.csv (MIT licence).
    protocol = """Novonix HPC Protocol File
Version:3.0.2.3
[Protocol operating limits]
   [0 Stop channel if voltage < 2.6900 V or if voltage > 4.2500 V]
[End protocol operating limits]
[Open circuit storage]
   [Storage_time 5 hours]
   [Trip conditions]
   [End trip conditions]
   [Save conditions]
      [0 Save data if \u2206T is greater than 30 seconds]
   [End save conditions]
[End storage]
[Increment the cycle counter]
[End increment]
[CC-CV charge]
   [Maximum_current 0.2 A]
   [Charge_voltage 4.2 V]
   [Trip conditions]
      [0 End step if hold time is greater than 5 hours]
      [1 End step if absolute current is less than 0.1 A]
   [End trip conditions]
[End CCCV charge]
[Constant current discharge]
   [Discharge_current 1.5 A]
   [Discharge_voltage 2.7 V]
   [Trip conditions]
      [0 End step if step time is longer than 10 hours]
   [End trip conditions]
[End discharge]
"""
    assert _kinds(vendor.novonix.read(protocol)) == [
        ("Rest", None, None, [("Time", ">", 18000.0)]),
        ("Charge", "Current", 0.2, [("Voltage", ">", 4.2)]),
        ("Charge", "Voltage", 4.2, [("Current", "<", 0.1), ("Time", ">", 18000.0)]),
        ("Discharge", "Current", 1.5, [("Time", ">", 36000.0), ("Voltage", "<", 2.7)])]
    repeated = protocol.replace("[Increment the cycle counter]", "[Repeat the step(s) below]")
    with pytest.raises(ValueError, match="Repeat"):
        vendor.novonix.read(repeated)


RELAX_ON_VOLTAGE = with_step("""  - Relax:
      - Rest:
          ends:
            - "Voltage > 3.6"
""")
POWER_DISCHARGE = with_step("""  - Power pulse:
      - Discharge:
          mode: Power
          value: 10
          duration: 10 s
""")
LONE_CV_DISCHARGE = with_step("""  - Hold:
      - Discharge:
          mode: Voltage
          value: 3.0
          duration: 1 h
""")
CC_ON_TIME_ONLY = with_step("""  - Top up:
      - Charge:
          mode: Current
          value: 1
          duration: 10 min
""")
REST_ON_CURRENT = with_step("""  - Relax:
      - Rest:
          ends:
            - "Time > 1 h"
            - "Current < 0.01"
""")
FOUR_ENDS = with_step("""  - Top up:
      - Charge:
          mode: Current
          value: 1
          ends:
            - "Voltage > 4.1"
            - "Time > 1 h"
            - "Current > 2"
            - "Current < 0.5"
""")


@pytest.mark.parametrize(("target", "protocol", "reason"), [
    ("neware", RELAX_ON_VOLTAGE, "a Neware rest step has no field for a Voltage end"),
    ("neware", POWER_DISCHARGE, "constant-power steps are not written to Neware"),
    ("neware", CC_ON_TIME_ONLY.replace('duration: 10 min', 'ends: ["Current < 0.5"]'),
     "a Neware CC charge step has no field for a Current end"),
    ("arbin", POWER_DISCHARGE, "constant-power steps are not written to Arbin"),
    ("arbin", LONE_CV_DISCHARGE, "only by the sign of its current limit"),
    ("arbin", REST_ON_CURRENT, "a rest step's current end has no charge or discharge sign"),
    ("novonix", RELAX_ON_VOLTAGE, "runs for its Storage_time"),
    ("novonix", LONE_CV_DISCHARGE, "a CV charge must follow a CC charge"),
    ("novonix", CC_ON_TIME_ONLY, "ends at its Charge_voltage"),
    ("novonix", POWER_DISCHARGE, "constant-power steps are not written to Novonix"),
    ("biologic_bttest", FOUR_ENDS, "at most 3 limits"),
], ids=lambda value: value if value in SUPPORTED_TARGETS else None)
def test_a_step_the_target_cannot_express_is_refused_naming_it(target: str, protocol: str, reason: str) -> None:
    with pytest.raises(ProtocolConversionError) as caught:
        convert_protocol(protocol, target, nominal_capacity_ah=CAPACITY_AH, verify=True)
    error = caught.value
    step = parse_protocol(protocol).steps[1]
    assert (error.step, error.label, error.line) == (2, step.label, step.line)
    assert str(error).startswith(f"step 2 ({step.label!r}, line {step.line}): {target} cannot express "
                                 f"'{step.describe()}'")
    assert reason in str(error)


def test_maccor_writes_every_step_the_others_refuse():
    for protocol in (RELAX_ON_VOLTAGE, POWER_DISCHARGE, LONE_CV_DISCHARGE, CC_ON_TIME_ONLY, REST_ON_CURRENT, FOUR_ENDS):
        assert convert_protocol(protocol, "maccor", nominal_capacity_ah=CAPACITY_AH, verify=True)["primary"]


@pytest.mark.parametrize("target", ["neware", "arbin", "novonix"])
def test_verify_reports_a_step_the_file_changed(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = vendor._FORMATS[target]

    def lossy_read(text: str) -> list[Step]:
        steps = fmt.read(text)
        return [*steps[:-1], replace(steps[-1], ends=(EndCondition("Voltage", "<", 2.0),))]

    monkeypatch.setitem(vendor._FORMATS, target, replace(fmt, read=lossy_read))
    with pytest.raises(ProtocolConversionError, match=r"verify: step 3 \('Discharge', line \d+\) changed") as caught:
        convert_protocol(CCCV, target, nominal_capacity_ah=CAPACITY_AH, verify=True)
    assert caught.value.step == 3


def test_verify_reports_a_file_that_does_not_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = vendor._FORMATS["novonix"]
    monkeypatch.setitem(vendor._FORMATS, "novonix", replace(fmt, write=lambda *a: "[Repeat the step(s) below]\n"))
    with pytest.raises(ProtocolConversionError, match="does not read back"):
        convert_protocol(CCCV, "novonix", nominal_capacity_ah=CAPACITY_AH, verify=True)


def test_the_mits_pro_8_dialect_is_not_written():
    with pytest.raises(UnsupportedTarget, match="'arbin' writes the MITS Pro 7 .sdu schedule") as caught:
        convert_protocol(CCCV, "arbin_sdx")
    assert caught.value.supported == SUPPORTED_TARGETS
