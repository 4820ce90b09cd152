"""Budget configurations and function names for the admission-rule property tests.

Read by the pure rule's tests (fleetpool.budget._policy.admit) and by the Redis Lua
transcription's tests, so both draw from the same space of configurations.
"""

from __future__ import annotations

from hypothesis import strategies as st

from fleetpool.budget import BudgetConfig, FunctionLimits

NAMES = ["api", "jobs", "reports", "other"]


@st.composite
def configs(draw: st.DrawFn) -> BudgetConfig:
    """A valid configuration: limit 0..12; up to three of NAMES with a (min, max) whose
    reserves fit the limit (the fourth name never has one)."""
    limit = draw(st.integers(0, 12))
    functions: dict[str, FunctionLimits] = {}
    left = limit
    for name in draw(st.lists(st.sampled_from(NAMES[:3]), unique=True, max_size=3)):
        lo = draw(st.integers(0, left))
        left -= lo
        hi = draw(st.one_of(st.none(), st.integers(lo, limit + 2)))
        functions[name] = FunctionLimits(lo, hi)
    return BudgetConfig(limit, functions)
