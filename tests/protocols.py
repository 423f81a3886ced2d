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
