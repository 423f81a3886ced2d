"""UCP protocols from the Ionworks client documentation, shared by the tests."""


def discharge(c_rate: str, cut_off_v: float = 2.5) -> str:
    """A discharge from full at ``c_rate`` (a number or an ``input["..."]`` placeholder) down to ``cut_off_v``."""
    return f"""
global:
  initial_soc: 1
  temperature: 25
steps:
  - direction: Discharge
    mode: C-rate
    value: {c_rate}
    ends:
      - variable: Voltage [V]
        value: {cut_off_v}
"""


ONE_C_DISCHARGE = discharge("1")
C_RATE_INPUT = 'input["C-rate"]'

PARAMETERIZED_DISCHARGE = """
global:
  initial_soc: input["Initial SOC"]
steps:
  - direction: Discharge
    mode: C-rate
    value: input["C-rate"]
    ends:
      - variable: Voltage [V]
        value: 2.5
"""

CCCV = """
global:
  initial_temperature: 25
  initial_state_type: soc_percentage
  initial_state_value: 100
steps:
  - CC Charge:
      - Charge:
          mode: C-rate
          value: 1
          ends:
            - "Voltage > 4.2"
  - CV Charge:
      - Charge:
          mode: Voltage
          value: 4.2
          ends:
            - "Current < 0.05"
  - Discharge:
      - Discharge:
          mode: C-rate
          value: 1
          ends:
            - "Voltage < 2.7"
"""

FORMATION_CYCLE = """
global:
  initial_state_type: voltage
  initial_state_value: 3.0
  temperature: 25
  resolution: 30
steps:
  - Rest:
      duration: 30 min
  - Charge:
      - Charge:
          mode: Current
          value: 0.5
          ends:
            - "Voltage > 4.2"
      - Charge:
          mode: Voltage
          value: 4.2
          ends:
            - "Current < 50 mA"
            - "Time > 2 h"
  - Relax:
      - Rest:
          duration: 1 h
  - Discharge:
      - Discharge:
          mode: C-rate
          value: 0.5
          ends:
            - "Voltage < 2.7"
            - "Time > 150 min"
"""
"""Rest, CC-CV charge, rest and a C/2 discharge: every step kind all five conversion targets write."""


def with_step(step_yaml: str) -> str:
    """A one-hour rest, the given step (``- Name: [...]`` YAML, indented under ``steps``), then a 1C discharge.

    The step under test is step 2 of the protocol.
    """
    return f"""
global:
  initial_soc: 0.5
steps:
  - Rest:
      duration: 1 h
{step_yaml}
  - Discharge:
      mode: C-rate
      value: 1
      ends:
        - "Voltage < 2.5"
"""
