"""``fleetpool budget``: set, list, inspect and watch fleet-wide connection budgets.

Strategy: ``set`` is the only command that writes (and the only one that may create a
store); ``list``, ``status`` and ``watch`` open the store read-only, so a typo in a path
or a table name is reported instead of leaving an empty store behind, and asking for a
budget nobody configured is an error naming it (exit status 3), not a table of zeros.
``set`` changes only what it is given: per-function limits not repeated are kept
(``--replace`` drops them), and the result is printed. ``name`` prints the budget name
``fleetpool.Database`` derives from a database URL when none is given. Errors are
raised; fleetpool's command line prints them (one line on stderr, one exit status).
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ..errors import BudgetNotConfigured, ConfigError
from . import Budget, Snapshot, list_budgets, open_budget

app = typer.Typer(
    help="Set, list, inspect and watch fleet-wide connection budgets.", no_args_is_help=True
)
console = Console()

StoreOpt = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="FLEETPOOL_BUDGET_STORE",
        help="Store URL: memory://, sqlite:///path.db, redis://host:port/db, dynamodb://table",
        show_default=False,
    ),
]
NameArg = Annotated[
    str,
    typer.Argument(
        help="Budget name. fleetpool.Database's default is derived from the database "
        "URL: see `fleetpool budget name URL`"
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


def configured_snapshot(budget: Budget) -> Snapshot:
    """The budget's snapshot; BudgetNotConfigured when its store has no limit for it."""
    snap = budget.snapshot()
    if not snap.config.configured:
        raise BudgetNotConfigured(budget.name, budget.backend.store)
    return snap


@app.command("set")
def set_(
    name: NameArg,
    store: StoreOpt,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            help="Connections the fleet may hold  \\[default: unchanged; required the first time]",
            show_default=False,
        ),
    ] = None,
    function: Annotated[
        list[str] | None,
        typer.Option(
            "--function",
            "-f",
            help="Per-function reserve and cap, NAME=MIN:MAX (repeatable); others are kept",
            show_default=False,
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Drop the per-function limits not given here")
    ] = False,
) -> None:
    """Set a budget's limit and per-function reserves/caps (creates the store if needed)."""
    given = dict(parse_function_limit(spec) for spec in function or [])
    with open_budget(store, name, on_unavailable="fail_closed") as budget:
        current = budget.config()
        if limit is None and not current.configured:
            raise ConfigError(f"budget {name!r} is new: give its --limit")
        functions: dict[str, tuple[int, int | None]] = {}
        if not replace:
            functions = {n: (f.min, f.max) for n, f in current.functions.items()}
        functions.update(given)
        budget.configure(limit=current.limit if limit is None else limit, functions=functions)
        console.print(snapshot_table(budget.snapshot()))


@app.command("list")
def list_(
    store: StoreOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List the budgets the store holds, with their limit and leases in use."""
    snaps = []
    for name in list_budgets(store):
        with open_budget(store, name, on_unavailable="fail_closed", create=False) as budget:
            snaps.append(budget.snapshot())
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in snaps], indent=2))
        return
    if not snaps:
        console.print("no budgets in this store ('fleetpool budget set NAME --limit N' adds one)")
        return
    table = Table("budget", "limit", "in use", "remaining", "waiting", "functions")
    for s in snaps:
        table.add_row(
            s.budget,
            str(s.limit),
            str(s.in_use),
            str(s.remaining),
            str(s.waiting),
            ", ".join(sorted(set(s.config.functions) | set(s.functions))) or "-",
        )
    console.print(table)


@app.command()
def status(
    name: NameArg,
    store: StoreOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    show_leases: Annotated[bool, typer.Option("--leases", help="List live leases")] = False,
) -> None:
    """Show limit, in use, remaining and waiting, per function."""
    with open_budget(store, name, on_unavailable="fail_closed", create=False) as budget:
        snap = configured_snapshot(budget)
        leases = budget.leases() if show_leases else []
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
    name: NameArg,
    store: StoreOpt,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes")] = 0.5,
    count: Annotated[int, typer.Option(help="Stop after this many refreshes (0: forever)")] = 0,
) -> None:
    """Watch a budget live (Ctrl-C to stop)."""
    with open_budget(store, name, on_unavailable="fail_closed", create=False) as budget:
        snap = configured_snapshot(budget)
        with Live(console=console, auto_refresh=False) as live:
            n = 0
            try:
                while True:
                    live.update(snapshot_table(snap), refresh=True)
                    n += 1
                    if count and n >= count:
                        break
                    time.sleep(max(0.05, interval))
                    snap = budget.snapshot()
            except KeyboardInterrupt:
                pass


@app.command("name")
def name_(
    database_url: Annotated[
        str, typer.Argument(metavar="DATABASE_URL", help="The URL the functions connect with")
    ],
) -> None:
    """Print the budget name fleetpool.Database uses for DATABASE_URL when given none."""
    from ..client.dsn import default_budget_name, parse_dsn

    typer.echo(default_budget_name(parse_dsn(database_url)))
