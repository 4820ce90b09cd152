"""The hot-path lease constructor builds exactly what the dataclass constructor builds."""

from __future__ import annotations

import dataclasses

import pytest

from fleetpool.budget._base import Lease, granted_lease


def test_granted_lease_equals_the_constructor() -> None:
    fields = dict(
        id="abc",
        budget="b",
        function="api",
        holder="h:1",
        acquired_at=1.5,
        expires_at=31.5,
        meta={"tag": "fp:x"},
    )
    fast = granted_lease(**fields)  # type: ignore[arg-type]
    slow = Lease(**fields)  # type: ignore[arg-type]
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    assert fast.recorded is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.expires_at = 0.0  # type: ignore[misc]
    assert dataclasses.replace(fast, expires_at=2.0).expires_at == 2.0
