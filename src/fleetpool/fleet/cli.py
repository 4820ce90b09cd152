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

from ..errors import ConfigError, FleetpoolError
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
    virtual: Annotated[
        bool,
        typer.Option(
            "--virtual",
            help="Simulate on a virtual clock (no processes, no database): any scale, "
            "in seconds; [model] sets the costs.",
        ),
    ] = False,
) -> None:
    """Run a scenario file (database, budget, function, workload, traffic phases)."""
    from dataclasses import replace

    try:
        scenario = load_scenario(scenario_path)
        if dsn:
            if virtual:
                raise ConfigError(
                    "--dsn and --virtual exclude each other: the simulator has no server"
                )
            scenario = replace(scenario, dsn=dsn)
        if strategies:
            scenario = replace(scenario, strategies=_strategies(strategies, scenario.strategies))
        if virtual:
            execute_virtual(scenario, out, json_out, quiet=quiet)
        else:
            execute(scenario, out, json_out, quiet=quiet, logs=logs)
    except FleetpoolError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def execute_virtual(
    scenario: Scenario, out: Path | None, json_out: Path | None, *, quiet: bool = False
) -> dict[str, Any]:
    """:func:`execute` on the virtual clock: same report, same table."""
    from .simulator import simulate_scenario

    started = time.monotonic()

    def on_strategy(strategy: str, result: dict[str, Any]) -> None:
        if not quiet:
            text, cls = verdict(result["summary"])
            style = "green" if cls == "good" else "red"
            console.print(
                f"{strategy:<14} [{style}]{text}[/{style}] "
                f"({result['summary']['invocations']} invocations, "
                f"{result['virtual']['containers']} containers, {result['wall_seconds']:.1f} s)"
            )

    run = simulate_scenario(scenario, on_strategy=on_strategy)
    write_report(run, out, json_out)
    if not quiet:
        console.print(summary_table(run))
        wrote = ", ".join(str(p) for p in (out, json_out) if p is not None)
        console.print(f"wrote {wrote} in {time.monotonic() - started:.1f} s (virtual clock)")
    return run


def plan_command(
    scenario_path: Annotated[
        Path, typer.Argument(metavar="SCENARIO", help="A scenario TOML file.")
    ],
    strategy: Annotated[
        str,
        typer.Option(
            help="What to tune: fleetpool (budget limit, lease TTL) or proxy (pool size)."
        ),
    ] = "fleetpool",
    success: Annotated[
        float, typer.Option(help="Share of invocations that must succeed (0..1].")
    ] = 0.99,
    max_p99: Annotated[
        float | None,
        typer.Option(
            "--max-p99",
            help="p99 latency the recommendation must stay under (ms)  \\[default: no limit]",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Write the plan (and its frontier) as JSON  \\[default: not written]",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write an HTML page with the frontier chart  \\[default: not written]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Recommend settings for a scenario, from simulated runs on a virtual clock."""
    import json

    from ..cli import exit_code_for
    from .plan import Target, plan
    from .report import plan_page

    try:
        scenario = load_scenario(scenario_path)
        started = time.monotonic()
        with console.status("simulating candidates..."):
            result = plan(scenario, strategy, Target(success, max_p99))
        result["wall_seconds"] = round(time.monotonic() - started, 2)
        console.print(plan_table(result))
        if json_out is not None:
            json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        if out is not None:
            out.write_text(plan_page(result), encoding="utf-8")
    except (FleetpoolError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(exit_code_for(exc)) from exc


def plan_table(result: dict[str, Any]) -> Table:
    rec = result["recommended"]
    target = result["target"]
    want = f"success >= {target['success']:.2%}" + (
        f", p99 <= {target['p99_ms']:.0f} ms" if target["p99_ms"] is not None else ""
    )
    title = (
        f"plan for {result['strategy']} ({want}; "
        f"database max_connections {result['max_connections']}):"
    )
    if rec is None:
        title += " [red]no setting meets the target[/red]"
    else:
        title += f" [green]{result['setting']} {rec['limit']}[/green]" + (
            f", lease_ttl {rec['lease_ttl']:g} s, max_wait {rec['max_wait']:g} s"
            if result["strategy"] == "fleetpool"
            else ""
        )
    table = Table(title=title, title_justify="left")
    for col in (
        result["setting"],
        "lease_ttl",
        "success",
        "p50 ms",
        "p99 ms",
        "peak sessions",
        "headroom",
    ):
        table.add_column(col, justify="right")
    for p in result["frontier"]:
        mark = "[green]{}[/green]" if rec is not None and p == rec else "{}"
        table.add_row(
            mark.format(p["limit"]),
            f"{p['lease_ttl']:g}",
            f"{p['success']:.2%}",
            "-" if p["p50_ms"] is None else f"{p['p50_ms']:.0f}",
            "-" if p["p99_ms"] is None else f"{p['p99_ms']:.0f}",
            str(p["peak_sessions"]),
            str(p["headroom"]),
        )
    table.caption = (
        f"{len(result['frontier'])} simulated runs in {result.get('wall_seconds', 0):.1f} s"
    )
    return table


def app() -> typer.Typer:
    """A standalone CLI with the two commands (``python -m fleetpool.fleet``)."""
    cli = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        help="Emulate a serverless fleet against a database and compare strategies.",
    )
    cli.command()(demo)
    cli.command()(simulate)
    cli.command("plan")(plan_command)
    return cli
