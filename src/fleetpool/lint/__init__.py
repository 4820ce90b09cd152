"""``fleetpool lint``: find, before deploying, the statements that would pin a client to
one server connection or leave session state behind, per file and line.

Strategy: :mod:`.sources` finds the SQL (Python sources read with ``ast``, ``.sql``
files), each engine's own classifier splits it into statements, and :mod:`.rules`
judges each statement under three rule sets: the fleetpool proxy's (its own
classifiers), RDS Proxy's documented pinning conditions and PgBouncer's transaction
mode. Everything here is pure: reading files is the only I/O.

Usage::

    from fleetpool.lint import lint_paths
    report = lint_paths(["src/"], engine="postgresql")
    for finding in report.findings:
        print(finding.location, finding.reason, finding.fix)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..redact import sql_head
from .rules import RULE_SETS, judge, readings
from .sources import ENGINES, Skipped, Snippet, iter_files, snippets

__all__ = ["ENGINES", "RULE_SETS", "Finding", "Report", "lint_paths", "lint_snippet"]


@dataclass(frozen=True)
class Finding:
    """One statement that pins or leaves state under one rule set."""

    path: str
    line: int
    engine: str
    rules: str  # "fleetpool", "rds-proxy" or "pgbouncer"
    effect: str  # "pins", "may pin" or "leaks"
    reason: str
    fix: str
    statement: str  # its first words, literals hidden

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Report:
    """What a run found; ``statements`` counts every statement judged."""

    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    statements: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "findings": [asdict(f) for f in self.findings],
            "files": self.files,
            "statements": self.statements,
            "skipped": [asdict(s) for s in self.skipped],
        }


def lint_snippet(snippet: Snippet, rule_sets: tuple[str, ...] = RULE_SETS) -> list[Finding]:
    """Findings for one piece of SQL, each statement on its own line."""
    out: dict[Finding, None] = {}  # (ordered, and one finding read two ways is one)
    for engine in snippet.engines:
        for blanked, spans in readings(engine, snippet.sql):
            for start, end in spans:
                # The statement runs from its first word to its last (comments outside).
                piece = blanked[start:end]
                start, end = start + len(piece) - len(piece.lstrip()), start + len(piece.rstrip())
                text = snippet.sql[start:end]
                line = snippet.line + snippet.sql.count("\n", 0, start)
                if line in snippet.ignored:
                    continue
                for v in judge(engine, text, rule_sets):
                    finding = Finding(
                        snippet.path,
                        line,
                        engine,
                        v.rules,
                        v.effect,
                        v.reason,
                        v.fix,
                        sql_head(text),
                    )
                    out[finding] = None
    return list(out)


def _count(snippet: Snippet) -> int:
    return sum(len(readings(e, snippet.sql)[0][1]) for e in snippet.engines)


def lint_paths(
    paths: list[str], engine: str | None = None, rule_sets: tuple[str, ...] = RULE_SETS
) -> Report:
    """Lint the ``.py``/``.sql`` files in ``paths``.

    ``engine``: ``"postgresql"`` or ``"mysql"`` for every file, or None to guess each
    Python file's from its driver imports (``.sql`` files: both).
    """
    if engine is not None and engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    unknown = [r for r in rule_sets if r not in RULE_SETS]
    if unknown or not rule_sets:
        raise ConfigError(
            f"unknown rule set(s) {', '.join(unknown) or '(none)'}: expected some of "
            f"{', '.join(RULE_SETS)}"
        )
    report = Report()
    for path in iter_files(paths):
        report.files += 1
        try:
            found = snippets(Path(path), engine)
        except ConfigError:
            raise
        except (SyntaxError, ValueError, OSError) as exc:
            report.skipped.append(Skipped(str(path), f"{type(exc).__name__}: {exc}"))
            continue
        for snippet in found:
            report.statements += _count(snippet)
            report.findings.extend(lint_snippet(snippet, rule_sets))
    report.findings.sort(key=lambda f: (f.path, f.line, f.engine, RULE_SETS.index(f.rules)))
    return report
