"""``fleetpool reap``: run the reaper once from a shell, a cron job or a scheduled function.

Strategy: a thin typer front over :func:`fleetpool.reap`; the
report is printed as one line (or JSON with ``--json``) so it reads well in a
terminal and in CloudWatch alike. Exit status 0 whatever was killed; errors follow
fleetpool's scheme (2 for a configuration error, 1 when the database cannot be reached).
"""

from __future__ import annotations

import json

import typer


def reap(
    dsn: str = typer.Argument(..., help="Database URL, as the functions use it."),
    budget: str | None = typer.Option(
        None,
        help="Budget store URL (redis://, sqlite:///...); none: no budget.",
        show_default=False,
    ),
    budget_name: str | None = typer.Option(
        None,
        help="Budget name  \\[default: derived from the database URL, see `fleetpool budget name`]",
        show_default=False,
    ),
    idle_after: float | None = typer.Option(
        None,
        help="Also end the fleet's sessions idle at least this many seconds  \\[default: off]",
        show_default=False,
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report only; kill nothing."),
    rds: bool = typer.Option(False, "--rds", help="MySQL on RDS: use CALL mysql.rds_kill."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """End the fleet's sessions whose leases expired (and, optionally, idle ones)."""
    from .database import reap as run

    report = run(
        dsn,
        budget=budget,
        idle_after=idle_after,
        dry_run=dry_run,
        budget_name=budget_name,
        rds=rds,
    )
    print(json.dumps(report.as_dict()) if as_json else report.summary())


__all__ = ["reap"]
