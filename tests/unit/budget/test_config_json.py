"""BudgetConfig's stored form: one codec for every store, stable text, exact round trip."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fleetpool.budget import BudgetConfig, FunctionLimits


def test_the_stored_text_is_compact_and_sorted() -> None:
    config = BudgetConfig(10, {"b": FunctionLimits(1, None), "a": FunctionLimits(0, 3)})
    assert config.to_json() == '{"functions":{"a":[0,3],"b":[1,null]},"limit":10}'
    same = BudgetConfig(10, {"a": FunctionLimits(0, 3), "b": FunctionLimits(1, None)})
    assert same.to_json() == config.to_json()


def test_bytes_from_a_store_are_accepted() -> None:
    assert BudgetConfig.from_json(b'{"limit":2,"functions":{}}') == BudgetConfig(2)


@given(
    limit=st.integers(0, 10_000),
    functions=st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.tuples(st.integers(0, 50), st.none() | st.integers(0, 50)),
        max_size=6,
    ),
)
def test_round_trip(limit: int, functions: dict[str, tuple[int, int | None]]) -> None:
    config = BudgetConfig(limit, {n: FunctionLimits(lo, hi) for n, (lo, hi) in functions.items()})
    assert BudgetConfig.from_json(config.to_json()) == config
