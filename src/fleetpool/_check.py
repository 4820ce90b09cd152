"""Argument checks shared by the parts, so a bad value is worded the same everywhere.

Strategy: user input is checked once, where it enters (a constructor, a public
method), and a bad value raises :class:`~fleetpool.ConfigError` saying what was
given and what is accepted; the code behind trusts what it receives.
"""

from __future__ import annotations

import math

from .errors import ConfigError


def seconds(name: str, value: object, *, zero_ok: bool = False, inf_ok: bool = False) -> float:
    """``value`` as float seconds: a number (not a bool, not NaN), above zero
    (or at least zero with ``zero_ok``), finite unless ``inf_ok``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    v = float(value)
    if math.isnan(v) or not (v >= 0 if zero_ok else v > 0) or (math.isinf(v) and not inf_ok):
        raise ConfigError(f"{name} must be {'>= 0' if zero_ok else '> 0'} seconds, got {value!r}")
    return v


__all__ = ["seconds"]
