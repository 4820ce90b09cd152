"""Every fuzz target in every test run: its kept corpus replayed (crashes found once
stay fixed: they live there as regression inputs), then random and mutated inputs from
hypothesis. The coverage-guided half runs in CI as ``python -m tests.fuzz``."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import TARGETS, run_one

CORPUS = Path(__file__).resolve().parent / "corpus"


def _corpus(name: str) -> list[bytes]:
    folder = CORPUS / name
    return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.is_dir() else []


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_corpus_replays_cleanly(name: str) -> None:
    inputs = _corpus(name)
    assert inputs, f"tests/fuzz/corpus/{name}/ is empty: python -m tests.fuzz --seed-corpus"
    for data in inputs:
        run_one(TARGETS[name], data)


def _mutations(name: str) -> st.SearchStrategy[bytes]:
    base = _corpus(name) or [b""]

    def mutate(args: tuple[int, list[tuple[int, int]], int, bytes]) -> bytes:
        index, flips, cut, tail = args
        raw = bytearray(base[index % len(base)])
        for pos, value in flips:
            if raw:
                raw[pos % len(raw)] = value
        if cut % 3 == 0:
            raw = raw[: cut % (len(raw) + 1)]
        return bytes(raw) + tail

    return st.tuples(
        st.integers(0, 10_000),
        st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
        st.integers(0, 1 << 16),
        st.binary(max_size=16),
    ).map(mutate)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_random_inputs_fail_cleanly(name: str) -> None:
    target = TARGETS[name]

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.nested_given,
        ],
    )
    @given(st.one_of(st.binary(max_size=300), _mutations(name)))
    def check(data: bytes) -> None:
        run_one(target, data)

    check()
