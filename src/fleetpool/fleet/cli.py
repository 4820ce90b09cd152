"""``fleetpool demo`` and ``fleetpool simulate``: run strategies side by side and report.

Strategy: the commands are plain functions with typer-friendly signatures, so the
main CLI mounts them as they are (``app.command()(demo)``) and
``python -m fleetpool.fleet`` runs them standalone. They print a rich progress bar
while strategies run and a summary table at the end, and write the JSON and
the self-contained HTML report. Errors users can fix (a bad scenario, an
unreachable database) exit with status 2 and one clear line.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import FleetpoolError
from .report import verdict, write_report
from .run import run_scenario
from .scenario import DEFAULT_STRATEGIES, Scenario, demo_scenario, load_scenario
from .strategies import STRATEGIES

# Not on a terminal (CI logs, | tee): no colour codes, and wide enough that no table is cut.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 1000)


def _strategies(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        return default
    names = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise typer.BadParameter(
            f"unknown strategy {unknown[0]!r}; known: {', '.join(STRATEGIES)}",
            param_hint="--strategies",
        )
    return names


def summary_table(run: dict[str, Any]) -> Table:
    db = run["database"]
    table = Table(
        title=f"{run['scenario']['name']}: {db['version'] or db['engine']}, "
        f"limit {db['limit']} connections",
        title_justify="left",
    )
    for col in (
        "strategy",
        "calls",
        "ok",
        "failed",
        "no conn left",
        "killed*",
        "p50/p95/p99 ms",
        "connects",
        "peak/limit",
        "zombies",
    ):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for r in run["strategies"]:
        s = r["summary"]
        lat = s["latency_ms"]
        bad = "[red]{}[/red]"
        good = "[green]{}[/green]"
        table.add_row(
            r["strategy"],
            str(s["invocations"]),
            str(s["succeeded"]),
            (bad if s["failed"] else good).format(s["failed"]),
            str(s["no_connections_left"]),
            str(s["injected_kills"]),
            "/".join("-" if lat[k] is None else f"{lat[k]:.0f}" for k in ("p50", "p95", "p99")),
            str(s["connects"]),
            (bad if s["peak_server_connections"] > s["limit"] else "{}").format(
                f"{s['peak_server_connections']}/{s['limit']}"
            ),
            (bad if s["zombies_end"] else good).format(s["zombies_end"]),
        )
    table.caption = "* killed: invocations the scenario made outlive the timeout (not failures)"
    return table


def execute(
    scenario: Scenario,
    out: Path | None,
    json_out: Path | None,
    *,
    quiet: bool = False,
    logs: Path | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` with a progress bar, write the report files, print the table."""
    started = time.monotonic()
    names = list(scenario.strategies) if not scenario.handler else ["custom"]
    with Progress(
        TextColumn("[bold]{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    ) as progress:
        tasks = {n: progress.add_task(n, total=None, status="waiting") for n in names}

        def on_progress(strategy: str, done: int, total: int) -> None:
            progress.update(tasks[strategy], completed=done, total=total, status="running")

        def on_strategy(strategy: str, result: dict[str, Any]) -> None:
            if "skipped" in result:
                progress.update(tasks[strategy], status="[yellow]skipped[/yellow]")
                return
            s = result["summary"]
            text, cls = verdict(s)
            style = "green" if cls == "good" else "red"
            progress.update(tasks[strategy], status=f"[{style}]{text}[/{style}]")

        run = run_scenario(scenario, progress=on_progress, on_strategy=on_strategy, log_dir=logs)
    write_report(run, out, json_out)
    if not quiet:
        console.print(summary_table(run))
        for sk in run.get("skipped", []):
            console.print(f"[yellow]skipped:[/yellow] {sk['skipped']}")
        wrote = ", ".join(str(p) for p in (out, json_out) if p is not None)
        console.print(f"wrote {wrote} in {time.monotonic() - started:.0f} s")
    return run


def demo(
    dsn: Annotated[
        str | None,
        typer.Option(
            help="Use this PostgreSQL or MySQL/MariaDB (postgresql://... or mysql://...)  "
            "\\[default: an embedded PostgreSQL]",
            show_default=False,
        ),
    ] = None,
    strategies: Annotated[
        str | None,
        typer.Option(
            help=f"Comma-separated strategies (known: {','.join(STRATEGIES)})  "
            f"\\[default: {','.join(DEFAULT_STRATEGIES)}]",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[float, typer.Option(help="Seconds of traffic per strategy.")] = 16.0,
    limit: Annotated[
        int,
        typer.Option(
            help="Connections the fleet may use (embedded server's usable max_connections)."
        ),
    ] = 10,
    out: Annotated[Path, typer.Option(help="HTML report path.")] = Path("fleetpool-report.html"),
    json_out: Annotated[Path, typer.Option("--json", help="JSON results path.")] = Path(
        "fleetpool-report.json"
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table.")] = False,
    logs: Annotated[
        Path | None,
        typer.Option(
            help="Keep each container's output in LOGS/<strategy>/<container>.log  "
            "\\[default: not kept]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a traffic spike against every connection strategy and write a report.

    With no arguments: an embedded PostgreSQL with 10 usable connections, an
    SQLite budget, and a spike to ~10x the limit in concurrent invocations.
    """
    try:
        scenario = demo_scenario(
            limit, duration, strategies=_strategies(strategies, DEFAULT_STRATEGIES)
        )
        if dsn:
            from dataclasses import replace

            scenario = replace(scenario, dsn=dsn)
        execute(scenario, out, json_out, quiet=quiet, logs=logs)
    except FleetpoolError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def simulate(
    scenario_path: Annotated[
        Path, typer.Argument(metavar="SCENARIO", help="A scenario TOML file.")
    ],
    dsn: Annotated[
        str | None,
        typer.Option(help="Override the scenario's database  \\[default: the scenario's]"),
    ] = None,
    strategies: Annotated[
        str | None,
        typer.Option(help="Comma-separated strategies  \\[default: the scenario's]"),
    ] = None,
    out: Annotated[Path, typer.Option(help="HTML report path.")] = Path("fleetpool-report.html"),
    json_out: Annotated[Path, typer.Option("--json", help="JSON results path.")] = Path(
        "fleetpool-report.json"
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table.")] = False,
    logs: Annotated[
        Path | None,
        typer.Option(
            help="Keep each container's output in LOGS/<strategy>/<container>.log  "
            "\\[default: not kept]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a scenario file (database, budget, function, workload, traffic phases)."""
    from dataclasses import replace

    try:
        scenario = load_scenario(scenario_path)
        if dsn:
            scenario = replace(scenario, dsn=dsn)
        if strategies:
            scenario = replace(scenario, strategies=_strategies(strategies, scenario.strategies))
        execute(scenario, out, json_out, quiet=quiet, logs=logs)
    except FleetpoolError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def app() -> typer.Typer:
    """A standalone CLI with the two commands (``python -m fleetpool.fleet``)."""
    cli = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        help="Emulate a serverless fleet against a database and compare strategies.",
    )
    cli.command()(demo)
    cli.command()(simulate)
    return cli
