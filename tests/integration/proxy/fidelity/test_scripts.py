"""Every script, directly against PostgreSQL and through the proxy: same messages.

A difference the proxy must fix is listed in KNOWN_DIFFERENCES and runs as
xfail(strict=True): when the rebuilt proxy fixes it, the test fails with "XPASS(strict)"
and the entry must go. Differences a client cannot care about go to allowed.py instead.
"""

from __future__ import annotations

import pytest

from .compare import compare
from .driver import Target
from .scripts import SCRIPTS

pytestmark = pytest.mark.integration

# script name -> what the client sees differently (the test's xfail reason). Each
# script isolates one difference, so a fix flips exactly the tests it should.
KNOWN_DIFFERENCES: dict[str, str] = {}


def _params() -> list[object]:
    out: list[object] = []
    for name in SCRIPTS:
        marks = []
        if name in KNOWN_DIFFERENCES:
            reason = f"fidelity: {KNOWN_DIFFERENCES[name]}"
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.mark.parametrize("name", _params())
def test_script(name: str, direct_target: Target, proxy_target: Target) -> None:
    report = compare(SCRIPTS[name], direct_target, proxy_target)
    if report is not None:
        pytest.fail(f"{name}: through the proxy the client sees something else\n{report}")
