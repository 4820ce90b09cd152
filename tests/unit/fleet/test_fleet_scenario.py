"""Scenario files: valid ones load; invalid ones name the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

import fleetpool.fleet
from fleetpool.errors import ConfigError
from fleetpool.fleet.scenario import demo_scenario, load_scenario, locate, parse_scenario

EXAMPLE = Path(fleetpool.fleet.__file__).parent / "scenarios" / "example.toml"

GOOD = """\
[scenario]
name = "t"
strategies = ["naive", "fleetpool"]

[function]
timeout = 3.0

[[traffic]]
kind = "steady"
rate = 2.0
duration = 5.0

[[traffic]]
kind = "spike"
base_rate = 1.0
peak_rate = 50.0
peak_length = 0.5
duration = 5.0
"""


def test_example_file_loads() -> None:
    sc = load_scenario(EXAMPLE)
    assert sc.name == "morning-rush"
    assert [p.kind for p in sc.phases] == ["steady", "ramp", "harness", "step"]
    assert sc.env == {"LOG_LEVEL": "info"}
    assert sc.duration == pytest.approx(15.0)


def test_good_scenario() -> None:
    sc = parse_scenario(GOOD)
    assert sc.strategies == ("naive", "fleetpool")
    assert sc.function.timeout == 3.0
    assert sc.duration == 10.0


def message(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_scenario(text, "s.toml")
    return str(info.value)


def test_syntax_error_names_the_line() -> None:
    msg = message("[scenario]\nname = \n")
    assert "s.toml" in msg and "line 2" in msg


def test_unknown_key_names_line_and_key() -> None:
    msg = message(GOOD.replace("timeout = 3.0", "timeout = 3.0\ntimeuot = 4"))
    assert msg.startswith("s.toml:7:")
    assert "'timeuot'" in msg and "timeout" in msg


def test_bad_value_in_second_traffic_phase() -> None:
    msg = message(GOOD.replace("peak_rate = 50.0", 'peak_rate = "lots"'))
    assert msg.startswith("s.toml:16:")
    assert "[[traffic]] #2" in msg and "'peak_rate'" in msg and "number" in msg


def test_unknown_strategy_and_missing_traffic() -> None:
    msg = message(
        '[scenario]\nstrategies = ["naive", "magic"]\n[[traffic]]\nkind="steady"\n'
        "rate=1\nduration=1\n"
    )
    assert msg.startswith("s.toml:2:") and "'magic'" in msg
    msg = message('[scenario]\nname = "x"\n')
    assert "[[traffic]]" in msg


def test_phase_needs_its_keys() -> None:
    msg = message('[[traffic]]\nkind = "ramp"\nfrom_rate = 1\nduration = 2\n')
    assert "s.toml:1:" in msg and "to_rate" in msg
    msg = message('[[traffic]]\nkind = "wave"\n')
    assert "s.toml:2:" in msg and "steady" in msg


def test_unknown_section_and_bad_enum() -> None:
    assert "unknown section" in message(
        '[databse]\ndsn = "x"\n[[traffic]]\nkind="steady"\nrate=1\nduration=1\n'
    )
    msg = message(
        '[function]\nkill_signal = "SIGHUP"\n[[traffic]]\nkind="steady"\nrate=1\nduration=1\n'
    )
    assert msg.startswith("s.toml:2:") and "SIGTERM" in msg


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(tmp_path / "nope.toml")


def test_locate_finds_keys_under_the_right_header() -> None:
    text = "[a]\nx = 1\n[[t]]\nx = 2\n[[t]]\ny = 3\nx = 4\n"
    assert locate(text, "a", "x") == 2
    assert locate(text, "t", "x", 0) == 4
    assert locate(text, "t", "x", 1) == 7
    assert locate(text, "t", "z", 1) == 5  # falls back to the header


def test_demo_scenario_puts_ten_times_the_limit_in_flight() -> None:
    sc = demo_scenario(10, 16.0)
    spike = sc.phases[0]
    assert spike.peak_rate * sc.workload.think == pytest.approx(100.0)
    assert sc.function.timeout > sc.max_wait
    with pytest.raises(ConfigError):
        demo_scenario(10, 3.0)
