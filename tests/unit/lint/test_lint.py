"""fleetpool lint: the sample code's known pinning statements are reported exactly, the
project's examples are clean, and the fleetpool rule set is the proxy's own verdict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fleetpool.cli import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from fleetpool.lint import lint_paths, lint_snippet
from fleetpool.lint.rules import RDS_PROXY_MAX_TEXT
from fleetpool.lint.sources import Snippet
from tests.cases.mysql_session import CASES as MYSQL_CASES
from tests.cases.pg_session import CASES as PG_CASES
from tests.cli_run import fleetpool

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "tests" / "lint_samples"
EXAMPLES = ROOT / "examples"
_EXPECT = re.compile(r"expect:\s*([a-z, -]+)")


def expected(directory: Path) -> dict[tuple[str, int], set[str]]:
    """(path, line) -> rule sets, from the samples' ``expect:`` comments."""
    out: dict[tuple[str, int], set[str]] = {}
    for path in sorted(directory.glob("*.*")):
        if path.suffix not in (".py", ".sql"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = _EXPECT.search(line)
            if match:
                rules = {r.strip() for r in match.group(1).split(",") if r.strip()}
                out[(str(path), number)] = rules
    return out


def test_samples_report_exactly_the_known_statements() -> None:
    want = expected(SAMPLES)
    assert len(want) >= 20  # the samples cover every kind of pin
    report = lint_paths([str(SAMPLES)])
    got: dict[tuple[str, int], set[str]] = {}
    for finding in report.findings:
        got.setdefault((finding.path, finding.line), set()).add(finding.rules)
        assert finding.reason and finding.fix and finding.statement
    assert got == want
    assert not report.skipped


def test_findings_name_the_engine_the_file_uses() -> None:
    report = lint_paths([str(SAMPLES)])
    engines = {Path(f.path).name: f.engine for f in report.findings}
    assert engines["pg_app.py"] == "postgresql"  # imports psycopg
    assert engines["mysql_app.py"] == "mysql"  # imports pymysql
    assert engines["schema.sql"] == "postgresql"  # says so in a comment


def test_the_projects_examples_are_clean() -> None:
    report = lint_paths([str(EXAMPLES)])
    assert report.statements > 0  # the example's SQL was found and judged
    assert report.findings == []


def test_statement_text_over_16_kb_pins_under_rds_proxy_only() -> None:
    long = "SELECT " + ", ".join(["1"] * (RDS_PROXY_MAX_TEXT // 3 + 1))
    assert len(long) > RDS_PROXY_MAX_TEXT
    findings = lint_snippet(Snippet("big.sql", 1, long, ("postgresql", "mysql")))
    assert {(f.rules, f.engine) for f in findings} == {
        ("rds-proxy", "postgresql"),
        ("rds-proxy", "mysql"),
    }
    assert all("16 KB" in f.reason for f in findings)
    assert lint_snippet(Snippet("small.sql", 1, long[:1000], ("postgresql",))) == []


@pytest.mark.parametrize("case", PG_CASES, ids=lambda c: c.sql[:40])
def test_fleetpool_rules_are_the_postgresql_proxys_verdict(case: object) -> None:
    reasons = {
        f.reason
        for f in lint_snippet(Snippet("c.sql", 1, case.sql, ("postgresql",)), ("fleetpool",))  # type: ignore[attr-defined]
    }
    if case.proxy == "pin":  # type: ignore[attr-defined]
        assert case.reason in reasons  # type: ignore[attr-defined]
    else:
        assert reasons == set()


@pytest.mark.parametrize("case", MYSQL_CASES, ids=lambda c: c.sql[:40])
def test_fleetpool_rules_are_the_mysql_proxys_verdict(case: object) -> None:
    reasons = {
        f.reason
        for f in lint_snippet(Snippet("c.sql", 1, case.sql, ("mysql",)), ("fleetpool",))  # type: ignore[attr-defined]
    }
    if case.pin:  # type: ignore[attr-defined]
        assert case.pin in reasons  # type: ignore[attr-defined]
    else:
        assert reasons == set()


def test_python_sources_read_without_running(tmp_path: Path) -> None:
    source = tmp_path / "app.py"
    source.write_text(
        "import psycopg\n"
        "TENANT = 'SET app.tenant = 1'\n"
        "def f(cur, conn, name):\n"
        "    cur.execute(TENANT)\n"
        "    cur.execute('SET ' + 'search_path TO x')\n"
        "    cur.execute('SET statement_timeout = %s' % (5,))\n"
        "    cur.execute('LISTEN {}'.format(name))\n"
        "    conn.exec_driver_sql(f'PREPARE {name} AS SELECT 1')\n"
        "    cur.execute(build_sql())\n"  # computed at run time: out of reach
        "    cur.execute('SELECT pg_advisory_lock(1)')  # fleetpool-lint: ignore\n"
    )
    lines = {f.line for f in lint_paths([str(tmp_path)], rule_sets=("rds-proxy",)).findings}
    assert lines == {2, 5, 6, 7, 8}


def test_unreadable_python_is_skipped_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def f(:\n")
    report = lint_paths([str(tmp_path)])
    assert [s.path for s in report.skipped] == [str(tmp_path / "broken.py")]
    assert "SyntaxError" in report.skipped[0].error


def test_command_exit_status_and_json() -> None:
    result = fleetpool("lint", str(SAMPLES), "--json")
    assert result.code == EXIT_FINDINGS
    data = json.loads(result.out)
    assert len(data["findings"]) == len(lint_paths([str(SAMPLES)]).findings)
    first = data["findings"][0]
    assert set(first) >= {"path", "line", "engine", "rules", "effect", "reason", "fix"}
    clean = fleetpool("lint", str(EXAMPLES))
    assert clean.code == EXIT_OK, clean.err
    assert "0 finding(s)" in clean.out
    text = fleetpool("lint", str(SAMPLES / "pg_app.py"), "--rules", "pgbouncer")
    assert text.code == EXIT_FINDINGS
    assert all("[pgbouncer/postgresql]" in line for line in text.out.splitlines()[:-1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no/such/dir"], "no such file or directory"),
        (["--engine", "oracle", "."], "expected one of postgresql, mysql"),
        (["--rules", "proxysql", "."], "expected some of fleetpool, rds-proxy, pgbouncer"),
    ],
)
def test_command_rejects_bad_input(args: list[str], message: str) -> None:
    result = fleetpool("lint", *args)
    assert result.code == EXIT_USAGE
    assert message in result.err
