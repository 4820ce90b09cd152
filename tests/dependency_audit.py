"""Audit the dependency set the tests run with for known vulnerabilities (pip-audit).

Usage::

    .venv/bin/python -m tests.dependency_audit      (scripts/test runs it in CI)

Strategy: the set audited is exactly what ``scripts/bootstrap test`` installed, pinned
(``pip freeze`` of .venv, fleetpool itself left out): the versions CI ran with. pip-audit
runs from a virtualenv of its own (.venv-audit), so its own dependencies are not mixed
into the answer. The run fails on a known vulnerability that has a fixed release (the
fix is one upgrade away); one without a fix is reported and does not fail. When no
vulnerability service can be reached (a network that allows package downloads only),
the run says "blocked" with the services' own errors and does not fail -- unless
FLEETPOOL_AUDIT_STRICT=1, for CI where the network allows it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
AUDIT_VENV = ROOT / ".venv-audit"
SERVICES = ("pypi", "osv")  # pip-audit's vulnerability services, in the order tried


@dataclass
class Verdict:
    fixable: list[str] = field(default_factory=list)  # "name version: ID (fixed in ...)"
    unfixable: list[str] = field(default_factory=list)
    audited: int = 0
    skipped: list[str] = field(default_factory=list)  # pip-audit's skip reasons

    @property
    def blocked(self) -> bool:
        """Nothing could be audited (every dependency skipped): the service is out of
        reach, not the dependencies clean."""
        return self.audited == 0 and bool(self.skipped)


def verdict(report: dict[str, Any]) -> Verdict:
    """Read pip-audit's JSON report (``-f json``)."""
    out = Verdict()
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            out.skipped.append(str(dep["skip_reason"]))
            continue
        out.audited += 1
        for vuln in dep.get("vulns", []):
            fixes = vuln.get("fix_versions") or []
            line = f"{dep.get('name')} {dep.get('version')}: {vuln.get('id')}"
            if fixes:
                out.fixable.append(f"{line} (fixed in {', '.join(fixes)})")
            else:
                out.unfixable.append(f"{line} (no fixed release yet)")
    return out


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _ensure_pip_audit() -> Path:
    python = _python(AUDIT_VENV)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(AUDIT_VENV)], check=True, timeout=300)
    check = subprocess.run(
        [str(python), "-c", "import pip_audit"], capture_output=True, timeout=60, check=False
    )
    if check.returncode != 0:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "pip-audit>=2.7"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"cannot install pip-audit: {done.stderr.strip()[-2000:]}")
    return python


def _pypi_answer(skip_reason: str) -> str:
    """What PyPI's JSON API itself answers for a dependency pip-audit skipped."""
    import re
    import urllib.error
    import urllib.request

    match = re.search(r": (\S+) \((\S+)\)$", skip_reason)
    if match is None:
        return ""
    url = f"https://pypi.org/pypi/{match.group(1)}/{match.group(2)}/json"
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            return f"GET {url} -> HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"GET {url} -> HTTP {exc.code} (the per-release endpoint pip-audit reads)"
    except OSError as exc:
        return f"GET {url} -> {exc}"


def _locked_set(folder: Path) -> Path:
    """``pip freeze`` of the project's virtualenv, without fleetpool itself."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--all"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    lines = [
        line
        for line in frozen.splitlines()
        if line
        and not line.startswith(("#", "-e ", "fleetpool=="))
        and " @ " not in line  # local paths and URLs: nothing a service knows
    ]
    path = folder / "requirements-locked.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(service: str, python: Path, requirements: Path, folder: Path) -> tuple[Verdict, str]:
    """(verdict, error text if pip-audit itself failed) for one service."""
    report = folder / f"audit-{service}.json"
    done = subprocess.run(
        [
            *(str(python), "-m", "pip_audit", "--vulnerability-service", service),
            *("-r", str(requirements), "--no-deps", "--disable-pip", "--progress-spinner", "off"),
            *("-f", "json", "-o", str(report)),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if not report.exists() or not report.read_text().strip():
        lines = (done.stderr or done.stdout).strip().splitlines()
        return Verdict(), lines[-1] if lines else f"pip-audit exited {done.returncode}"
    return verdict(json.loads(report.read_text())), ""


def main() -> int:
    strict = os.environ.get("FLEETPOOL_AUDIT_STRICT") == "1"
    with tempfile.TemporaryDirectory(prefix="fleetpool-audit-") as tmp:
        folder = Path(tmp)
        requirements = _locked_set(folder)
        count = len(requirements.read_text().splitlines())
        python = _ensure_pip_audit()
        errors = []
        for service in SERVICES:
            result, error = run(service, python, requirements, folder)
            if error or result.blocked:
                reason = error or (
                    f"every dependency skipped, e.g. {result.skipped[0]!r}; "
                    + _pypi_answer(result.skipped[0])
                )
                errors.append(f"{service}: {reason}")
                continue
            print(f"audit ({service}): {result.audited} of {count} pinned dependencies audited")
            for line in result.unfixable:
                print(f"  known, no fix yet: {line}")
            for line in result.fixable:
                print(f"  VULNERABLE, fix available: {line}")
            if result.skipped:
                print(f"  {len(result.skipped)} skipped, e.g. {result.skipped[0]}")
            return 1 if result.fixable else 0
    print("audit: blocked -- no vulnerability service could be reached from here:")
    for line in errors:
        print(f"  {line}")
    if strict:
        return 1
    print("  (not a failure here; FLEETPOOL_AUDIT_STRICT=1 makes it one where the network allows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
