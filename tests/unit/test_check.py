"""One check for every duration a user passes in, worded the same everywhere."""

from __future__ import annotations

import math

import pytest

from fleetpool import ConfigError
from fleetpool._check import seconds


def test_numbers_become_float_seconds() -> None:
    assert seconds("ttl", 3) == 3.0 and isinstance(seconds("ttl", 3), float)
    assert seconds("wait", 0, zero_ok=True) == 0.0
    assert seconds("wait", math.inf, inf_ok=True) == math.inf


@pytest.mark.parametrize(
    ("value", "options", "message"),
    [
        ("3", {}, "ttl must be a number of seconds, got '3'"),
        (True, {}, "ttl must be a number of seconds, got True"),
        (0, {}, "ttl must be > 0 seconds, got 0"),
        (-1, {"zero_ok": True}, "ttl must be >= 0 seconds, got -1"),
        (math.nan, {"inf_ok": True}, "ttl must be > 0 seconds, got nan"),
        (math.inf, {}, "ttl must be > 0 seconds, got inf"),
    ],
)
def test_bad_values_say_what_was_given_and_what_is_accepted(
    value: object, options: dict[str, bool], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        seconds("ttl", value, **options)
    assert str(info.value) == message
