"""``fleetpool lint PATH...``: the statements that would pin or leave session state.

Strategy: a thin typer front over :func:`fleetpool.lint.lint_paths`. One line per
finding (``path:line: [rules/engine] effect: reason; statement; fix``) like a compiler,
or ``--json`` for tools. Exit status 0 when nothing is found, 4 (``EXIT_FINDINGS``)
when something is, so CI fails on a new pinning statement; usage errors are 2.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..cli import EXIT_FINDINGS, EXIT_OK
from ..errors import ConfigError
from . import ENGINES, RULE_SETS, Report, lint_paths


def lint_command(
    paths: Annotated[
        list[str],
        typer.Argument(help="Python (.py) and SQL (.sql) files or directories.", metavar="PATH"),
    ],
    engine: Annotated[
        str | None,
        typer.Option(
            help=f"Judge every file for this engine ({' or '.join(ENGINES)})  \\[default: "
            "from each Python file's driver imports; .sql files: both]",
            show_default=False,
        ),
    ] = None,
    rules: Annotated[
        str,
        typer.Option(help="Rule sets, comma-separated: " + ", ".join(RULE_SETS)),
    ] = ",".join(RULE_SETS),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report statements that would pin a client or leave session state, per file and line."""
    chosen = tuple(r.strip() for r in rules.split(",") if r.strip())
    if engine is not None and engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    report = lint_paths(paths, engine, chosen)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(render(report))
    raise typer.Exit(EXIT_FINDINGS if report.findings else EXIT_OK)


def render(report: Report) -> str:
    """The report as text: one line per finding, then a summary."""
    lines = [
        f"{f.location}: [{f.rules}/{f.engine}] {f.effect}: {f.reason}; "
        f"statement: {f.statement}; fix: {f.fix}"
        for f in report.findings
    ]
    lines += [f"{s.path}: skipped: {s.error}" for s in report.skipped]
    places = len({(f.path, f.line) for f in report.findings})
    lines.append(
        f"{len(report.findings)} finding(s) at {places} place(s); "
        f"{report.statements} statement(s) in {report.files} file(s)"
        + (f", {len(report.skipped)} skipped" if report.skipped else "")
    )
    return "\n".join(lines)
