"""The audit's verdict on pip-audit reports: fixable vulnerabilities fail, unfixable ones
are reported, a report where everything was skipped means the service was out of reach."""

from __future__ import annotations

from tests.dependency_audit import verdict


def test_fixable_and_unfixable() -> None:
    report = {
        "dependencies": [
            {"name": "good", "version": "1.0", "vulns": []},
            {
                "name": "old",
                "version": "2.0",
                "vulns": [
                    {"id": "PYSEC-1", "fix_versions": ["2.1"]},
                    {"id": "GHSA-2", "fix_versions": []},
                ],
            },
            {"name": "local", "skip_reason": "Dependency not found on PyPI: local (0)"},
        ]
    }
    v = verdict(report)
    assert v.audited == 2 and not v.blocked
    assert v.fixable == ["old 2.0: PYSEC-1 (fixed in 2.1)"]
    assert v.unfixable == ["old 2.0: GHSA-2 (no fixed release yet)"]


def test_everything_skipped_is_blocked_not_clean() -> None:
    report = {"dependencies": [{"name": "a", "skip_reason": "not found"}], "fixes": []}
    v = verdict(report)
    assert v.blocked and not v.fixable
    assert not verdict({"dependencies": []}).blocked
