"""Every script, directly against MariaDB and through the proxy: the client reads the same
packets (after the allowed differences in allowed.py).

A difference the proxy must fix is listed in KNOWN_DIFFERENCES and runs as
xfail(strict=True): when the proxy is fixed the test fails with "XPASS(strict)" and the
entry must go.
"""

from __future__ import annotations

import os

import pytest

from .allowed import ALLOWED, normalise
from .scripts import SCRIPTS, Script
from .tap import Received, Run, Target, Transcript, render_session

pytestmark = pytest.mark.integration

# script name -> what the client sees differently (the xfail reason).
KNOWN_DIFFERENCES: dict[str, str] = {}


def run_script(
    script: Script, target: Target
) -> tuple[Transcript, dict[str, int], Exception | None]:
    run = Run(target)
    error: Exception | None = None
    try:
        script(run)
    except Exception as exc:
        error = exc
    finally:
        run.close()
    return run.transcript, run.capabilities, error


def rendered(t: Transcript, capabilities: dict[str, int]) -> list[str]:
    """One line per entry, in transcript order: 'session| step | packet'."""
    by_session: dict[str, list[Received]] = {}
    for r in t:
        by_session.setdefault(r.session, []).append(r)
    lines = {
        s: iter(render_session(entries, capabilities.get(s, 0)))
        for s, entries in by_session.items()
    }
    return [f"{r.session}| {r.step[:28]:<28} | {next(lines[r.session])}" for r in t]


def first_difference(a: Transcript, b: Transcript) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if (x.session, x.payload) != (y.session, y.payload):
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def report(a: list[str], b: list[str], at: int, labels: tuple[str, str]) -> str:
    width = 90
    out = [
        f"first difference at packet {at}; allowed differences applied: "
        + ", ".join(x.name for x in ALLOWED),
        f"   {labels[0]:<{width}} | {labels[1]}",
    ]
    for i in range(max(0, at - 6), min(max(len(a), len(b)), at + 8)):
        x = a[i] if i < len(a) else ""
        y = b[i] if i < len(b) else ""
        out.append(f"{'>> ' if i == at else '   '}{x[:width]:<{width}} | {y[:width]}")
    out.append(f"   {labels[0]}: {a[at] if at < len(a) else '(nothing)'}")
    out.append(f"   {labels[1]}: {b[at] if at < len(b) else '(nothing)'}")
    return "\n".join(out)


def compare(script: Script, direct: Target, proxy: Target) -> str | None:
    raw_a, caps_a, err_a = run_script(script, direct)
    if err_a is not None:
        raise AssertionError(f"the script fails against the server itself: {err_a!r}") from err_a
    raw_b, caps_b, err_b = run_script(script, proxy)
    a, b = normalise(raw_a), normalise(raw_b)
    lines_a, lines_b = rendered(a, caps_a), rendered(b, caps_b)
    if os.environ.get("FLEETPOOL_FIDELITY_SHOW"):  # whole transcripts, for `pytest -s`
        for x, y in zip(lines_a, lines_b, strict=False):
            print(f"{x[:100]:<100} | {y[:100]}")
    at = first_difference(a, b)
    if at is None and err_b is None:
        return None
    text = report(lines_a, lines_b, len(b) if at is None else at, (direct.label, proxy.label))
    if err_b is not None:
        text += f"\nthrough the proxy the script stopped: {err_b!r}"
    return text


def _params() -> list[object]:
    out: list[object] = []
    for name in SCRIPTS:
        marks = []
        if name in KNOWN_DIFFERENCES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_DIFFERENCES[name]))
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.mark.parametrize("name", _params())
def test_script(name: str, direct_target: Target, proxy_target: Target) -> None:
    text = compare(SCRIPTS[name], direct_target, proxy_target)
    if text is not None:
        pytest.fail(f"{name}: through the proxy the client sees something else\n{text}")
