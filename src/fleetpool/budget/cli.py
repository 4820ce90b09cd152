"""``fleetpool budget``: set, inspect and watch a fleet-wide connection budget."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ..errors import ConfigError, FleetpoolError
from . import Snapshot, open_budget

app = typer.Typer(
    help="Set, inspect and watch a fleet-wide connection budget.", no_args_is_help=True
)
console = Console()

StoreOpt = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="FLEETPOOL_BUDGET_STORE",
        help="Store URL: memory://, sqlite:///path.db, redis://host:port/db, dynamodb://table",
    ),
]


def parse_function_limit(spec: str) -> tuple[str, tuple[int, int | None]]:
    """Parse ``NAME=MIN:MAX`` (``MAX`` may be empty for "up to the limit")."""
    name, sep, limits = spec.partition("=")
    lo, colon, hi = limits.partition(":")
    if not sep or not colon or not name:
        raise ConfigError(
            f"--function expects NAME=MIN:MAX (e.g. api=2:20, or api=2: for no cap), got {spec!r}"
        )
    try:
        return name, (int(lo or 0), int(hi) if hi else None)
    except ValueError as exc:
        raise ConfigError(f"--function {spec!r}: MIN and MAX must be integers") from exc


def snapshot_table(snap: Snapshot) -> Table:
    table = Table(title=f"budget {snap.budget!r}", title_justify="left")
    table.add_column("function")
    table.add_column("in use", justify="right")
    table.add_column("min", justify="right")
    table.add_column("max", justify="right")
    names = sorted(set(snap.functions) | set(snap.config.functions))
    for name in names:
        limits = snap.config.limits_for(name)
        table.add_row(
            name,
            str(snap.functions.get(name, 0)),
            str(limits.min),
            "-" if limits.max is None else str(limits.max),
        )
    table.add_section()
    table.add_row("[b]total[/b]", f"[b]{snap.in_use}[/b]", "", f"[b]{snap.limit}[/b]")
    table.caption = f"remaining {snap.remaining} · waiting {snap.waiting}"
    return table


def _fail(exc: FleetpoolError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


@app.command("set")
def set_(
    name: Annotated[str, typer.Argument(help="Budget name, e.g. the database it protects")],
    store: StoreOpt,
    limit: Annotated[int, typer.Option("--limit", help="Connections the fleet may hold")],
    function: Annotated[
        list[str] | None,
        typer.Option("--function", "-f", help="Per-function reserve and cap: NAME=MIN:MAX"),
    ] = None,
) -> None:
    """Set a budget's limit and per-function reserves/caps."""
    try:
        functions = dict(parse_function_limit(spec) for spec in function or [])
        with open_budget(store, name, on_unavailable="fail_closed") as budget:
            budget.configure(limit=limit, functions=functions)
            console.print(snapshot_table(budget.snapshot()))
    except FleetpoolError as exc:
        raise _fail(exc) from exc


@app.command()
def status(
    name: Annotated[str, typer.Argument(help="Budget name")],
    store: StoreOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    show_leases: Annotated[bool, typer.Option("--leases", help="List live leases")] = False,
) -> None:
    """Show limit, in use, remaining and waiting, per function."""
    try:
        with open_budget(store, name, on_unavailable="fail_closed") as budget:
            snap = budget.snapshot()
            leases = budget.leases() if show_leases else []
    except FleetpoolError as exc:
        raise _fail(exc) from exc
    if as_json:
        data = snap.as_dict()
        if show_leases:
            data["leases"] = [
                {
                    "id": x.id,
                    "function": x.function,
                    "holder": x.holder,
                    "expires_in": round(x.expires_at - time.time(), 3),
                    "meta": dict(x.meta),
                }
                for x in leases
            ]
        typer.echo(json.dumps(data, indent=2))
        return
    console.print(snapshot_table(snap))
    if show_leases:
        table = Table("lease", "function", "holder", "expires in", "meta")
        now = time.time()
        for x in leases:
            table.add_row(
                x.id[:12], x.function, x.holder, f"{x.expires_at - now:.1f}s", json.dumps(x.meta)
            )
        console.print(table)


@app.command()
def watch(
    name: Annotated[str, typer.Argument(help="Budget name")],
    store: StoreOpt,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes")] = 0.5,
    count: Annotated[int, typer.Option(help="Stop after this many refreshes (0: forever)")] = 0,
) -> None:
    """Watch a budget live (Ctrl-C to stop)."""
    try:
        with (
            open_budget(store, name, on_unavailable="fail_closed") as budget,
            Live(console=console, auto_refresh=False) as live,
        ):
            n = 0
            while count == 0 or n < count:
                live.update(snapshot_table(budget.snapshot()), refresh=True)
                n += 1
                if count and n >= count:
                    break
                time.sleep(max(0.05, interval))
    except FleetpoolError as exc:
        raise _fail(exc) from exc
    except KeyboardInterrupt:
        pass
