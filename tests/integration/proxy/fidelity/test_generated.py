"""Generated sessions: random sequences of protocol building blocks, some pipelined
(sent before the previous answers are read), compared directly and through the proxy.

Blocks are self-contained (each ends with a Sync or is a simple Query, so the number of
ReadyForQuery messages to read is known) and avoid the differences already recorded as
xfail in test_scripts.py, so a failure here is a new one. Hypothesis is derandomised:
the same examples run in CI and on a laptop.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .compare import compare
from .driver import Run, Target
from .scripts import CS, DP, DS, PBE, SYNC, B, E, P, Q

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Block:
    name: str
    frames: bytes
    ready: int  # ReadyForQuery messages it produces

    def __repr__(self) -> str:
        return self.name


def _block(name: str, *frames: bytes) -> Block:
    data = b"".join(frames)
    # Every block ends its own work: one ReadyForQuery per Query or Sync it holds.
    ready = sum(1 for f in frames if f[:1] == b"Q") + sum(1 for f in frames if f == SYNC)
    return Block(name, data, ready)


BLOCKS = [
    _block("query", Q("SELECT 1 AS one, 'x' AS x")),
    _block("query error", Q("SELECT 1/0")),
    _block("multi-statement", Q("SELECT 1; SELECT 2 AS two")),
    _block("empty query", Q("")),
    _block("BEGIN", Q("BEGIN")),
    _block("COMMIT", Q("COMMIT")),
    _block("ROLLBACK", Q("ROLLBACK")),
    _block("SAVEPOINT", Q("SAVEPOINT gen_sp")),
    _block("ROLLBACK TO", Q("ROLLBACK TO SAVEPOINT gen_sp")),
    _block("SET", Q("SET DateStyle = 'SQL, DMY'")),
    _block("SHOW", Q("SHOW DateStyle")),
    _block("date", Q("SELECT '2021-03-04'::date::text")),
    _block("notice", Q("DO $$ BEGIN RAISE NOTICE 'generated'; END $$")),
    _block("extended", PBE("SELECT $1::int + 1", "41"), SYNC),
    _block("extended error", PBE("SELECT 1 / $1::int", "0"), SYNC),
    _block("parse error", P("SELEC"), B(), E(), SYNC),
    _block("bind error", P("SELECT $1::int"), B("nope"), E(), SYNC),
    _block("described", P("SELECT $1::text AS t"), DS(), B("d"), DP(), E(), SYNC),
    _block(
        "named, used, closed",
        P("SELECT $1::int * 2", name="gen_s"),
        B("4", stmt="gen_s"),
        E(),
        CS("gen_s"),
        SYNC,
    ),
    _block(
        "portal in steps",
        P("SELECT g FROM generate_series(1, 3) g"),
        B(portal="gen_p"),
        E("gen_p", 2),
        E("gen_p", 2),
        SYNC,
    ),
    _block("pipeline of two", PBE("SELECT 'p1'"), PBE("SELECT 'p2'"), SYNC),
    _block("error mid pipeline", PBE("SELECT 'p1'"), PBE("SELECT 1/0"), PBE("SELECT 'p3'"), SYNC),
    _block("Sync", SYNC),
]

sequences = st.lists(st.tuples(st.sampled_from(BLOCKS), st.booleans()), min_size=1, max_size=8)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(sequence=sequences)
def test_generated_sessions(
    sequence: list[tuple[Block, bool]], direct_target: Target, proxy_target: Target
) -> None:
    """``(block, wait)``: with ``wait`` the answers are read before the next block is
    sent; without it the next block is pipelined behind this one."""

    def script(run: Run) -> None:
        s = run.session()
        pending, frames, names = 0, b"", []
        for block, wait in sequence:
            frames += block.frames
            pending += block.ready
            names.append(block.name)
            if wait:
                s.exchange(" + ".join(names), frames, ready=pending)
                pending, frames, names = 0, b"", []
        if frames:
            s.exchange(" + ".join(names), frames, ready=pending)
        s.query("ROLLBACK")  # whatever the sequence left open

    report = compare(script, direct_target, proxy_target)
    assert report is None, f"{sequence}\n{report}"
