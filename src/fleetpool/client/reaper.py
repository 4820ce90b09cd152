"""The reaper: end the fleet's own sessions whose leases expired, or that idle too long.

Strategy: the server-side idle timeout already ends most abandoned sessions by
itself; the reaper is the backstop for the rest (servers without
``idle_session_timeout``, sessions of containers killed mid-invocation, a fleet
that needs capacity now). It works in three steps:

1. read who is connected (one query) and the budget's live leases;
2. decide, in the pure :func:`choose_victims`, which sessions to end: only
   sessions of the current user, carrying this budget's tag prefix, idle (no
   statement running, no transaction open), and either tagged with a lease that
   is no longer live or -- with ``idle_after`` -- idle that long;
3. kill them with the conditions re-checked by the server at kill time
   (PostgreSQL: inside the terminate statement itself; MySQL: a re-read of the
   session immediately before ``KILL``).

Sessions are read *before* leases, so a session whose lease is granted while
the reaper runs is always seen with its lease. ``Database`` runs the reaper
when server utilisation passes a threshold (the pure :func:`should_reap`), at
most once per interval across the fleet (:class:`ReapToken`: a lease on the
budget's ``__reaper__`` function). This module is mechanism and policy only;
the entry point that owns a connection (``fleetpool.reap``) sits above it in
:mod:`fleetpool.client.database`. The engines' SQL modules are imported when the
reaper runs, not with ``Database``: a MySQL function never loads the PostgreSQL
wire codec.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..budget import Budget
from ..engines import SessionRow
from ..errors import NoConnectionsLeft


class Driver(Protocol):
    """What the reaper needs of a driver: run a statement, read an error number.

    The blocking drivers are one; ``AsyncDatabase`` passes a bridge that runs
    its async driver's statements on the event loop from the reaper's thread.
    """

    @property
    def engine(self) -> str: ...

    @property
    def connect_errors(self) -> tuple[type[BaseException], ...]: ...

    def error_code(self, exc: BaseException) -> str | int | None: ...

    def fetch(self, conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...


#: Seconds a session must have been idle before an expired-lease kill: a margin
#: against clock skew between the budget store and the server.
EXPIRED_GRACE = 1.0
#: Function name under which containers take the fleet-wide reaper token.
REAPER_FUNCTION = "__reaper__"


@dataclass(frozen=True)
class Victim:
    row: SessionRow
    reason: str  # "expired_lease" or "idle"


@dataclass
class ReapReport:
    """What the reaper saw and did."""

    engine: str
    dry_run: bool
    seen: int = 0
    ours: int = 0
    live_leases: int = 0
    candidates: list[Victim] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    #: Candidates the server refused at kill time (their state changed).
    spared: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    duration: float = 0.0

    def summary(self) -> str:
        verb = "would kill" if self.dry_run else "killed"
        count = len(self.candidates) if self.dry_run else len(self.killed)
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
        notes = f"; {'; '.join(self.notes)}" if self.notes else ""
        return (
            f"{self.engine}: saw {self.seen} sessions ({self.ours} ours, "
            f"{self.live_leases} live leases); {verb} {count}; "
            f"spared at kill time {len(self.spared)}; skipped: {skipped}{notes}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "dry_run": self.dry_run,
            "seen": self.seen,
            "ours": self.ours,
            "live_leases": self.live_leases,
            "candidates": [
                {"id": v.row.id, "tag": v.row.tag, "reason": v.reason, "idle_for": v.row.idle_for}
                for v in self.candidates
            ],
            "killed": list(self.killed),
            "spared": list(self.spared),
            "skipped": dict(self.skipped),
            "notes": list(self.notes),
            "duration": self.duration,
        }


def choose_victims(
    rows: Iterable[SessionRow],
    *,
    tag_prefix: str,
    live_tags: set[str] | None,
    idle_after: float | None,
    match_untagged: bool = False,
    skipped: dict[str, int] | None = None,
) -> list[Victim]:
    """Pick the sessions to end. Pure: no I/O, no clock.

    Args:
        rows: the sessions the server reported.
        tag_prefix: the tag prefix of this fleet's budget (``fp:<key>:``).
        live_tags: tags of live leases; ``None`` when there is no budget (then
            no session can be proved expired, only idle).
        idle_after: also pick our sessions idle at least this long; None: only expired.
        match_untagged: treat untagged sessions of the same user as ours, for
            idle reaping only (serverless-mysql parity where tags are invisible).
        skipped: if given, counts of why sessions were left alone are added to it.
    """
    out: list[Victim] = []

    def skip(reason: str) -> None:
        if skipped is not None:
            skipped[reason] = skipped.get(reason, 0) + 1

    for row in rows:
        if not row.user_is_me:
            skip("other_user")
            continue
        tagged = row.tag.startswith(tag_prefix)
        if not tagged and not (match_untagged and not row.tag.startswith("fp:")):
            skip("not_ours")
            continue
        if row.busy:
            skip("running")
            continue
        if row.in_transaction:
            skip("in_transaction")
            continue
        idle = row.idle_for
        if tagged and live_tags is not None and row.tag not in live_tags:
            if idle is not None and idle >= EXPIRED_GRACE:
                out.append(Victim(row, "expired_lease"))
            else:
                skip("just_active")
            continue
        if idle_after is not None and idle is not None and idle >= idle_after:
            out.append(Victim(row, "idle"))
            continue
        skip("live")
    return out


def utilisation(driver: Driver, conn: Any) -> tuple[int, int]:
    """(sessions in use, sessions ordinary users may open) as the server sees them."""
    if driver.engine == "postgresql":
        from ..engines.postgres import UTILISATION_SQL
    else:
        from ..engines.mysql import UTILISATION_SQL
    used, limit = driver.fetch(conn, UTILISATION_SQL)[0]
    return int(used), int(limit)


def reap_check_due(now: float, next_check: float) -> bool:
    """Whether a container may look at utilisation now (at most once per interval)."""
    return now >= next_check


def should_reap(used: int, limit: int, threshold: float) -> bool:
    """Whether server utilisation ``used / limit`` calls for a reaper run."""
    return limit > 0 and used / limit >= threshold


@dataclass(frozen=True)
class ReapToken:
    """The fleet-wide "one reaper at a time" token: a lease of :data:`REAPER_FUNCTION`.

    The lease is never released: its TTL (``interval``) is the fleet-wide rate
    limit. Configured with max 1 (``functions={"__reaper__": (0, 1)}``) the store
    enforces "one at a time" atomically; otherwise a look at the live leases
    first keeps it to one in practice.
    """

    budget: Budget
    holder: str
    interval: float

    def take(self, reason: str) -> bool:
        """Try to take the token without waiting; False when another container holds it."""
        budget = self.budget
        if budget.config().limits_for(REAPER_FUNCTION).max != 1 and any(
            x.function == REAPER_FUNCTION for x in budget.leases()
        ):
            return False
        try:
            budget.acquire(
                function=REAPER_FUNCTION,
                holder=self.holder,
                ttl=self.interval,
                wait=0,
                meta={"reason": reason},
            )
        except NoConnectionsLeft:
            return False
        return True


def _live_tags(budget: Budget | None) -> set[str] | None:
    if budget is None:
        return None
    return {str(x.meta["tag"]) for x in budget.leases() if x.meta.get("tag")}


def reap_with(
    driver: Driver,
    conn: Any,
    *,
    budget: Budget | None,
    tag_prefix: str,
    idle_after: float | None = None,
    dry_run: bool = False,
    match_untagged: bool = False,
    rds: bool = False,
) -> ReapReport:
    """Run the reaper on an open connection (``Database`` passes its own)."""
    from ..engines import postgres as pg

    start = time.monotonic()
    report = ReapReport(engine=driver.engine, dry_run=dry_run)
    if driver.engine == "postgresql":
        rows = [_pg_row(r) for r in driver.fetch(conn, pg.SESSIONS_SQL)]
        with_tags = with_trx = True
    else:
        rows, with_tags, with_trx = _mysql_rows(driver, conn, report)
    live = _live_tags(budget)
    report.seen = len(rows)
    report.ours = sum(1 for r in rows if r.user_is_me and r.tag.startswith(tag_prefix))
    report.live_leases = len(live) if live is not None else 0
    report.candidates = choose_victims(
        rows,
        tag_prefix=tag_prefix,
        live_tags=live,
        idle_after=idle_after,
        match_untagged=match_untagged,
        skipped=report.skipped,
    )
    if dry_run or not report.candidates:
        report.duration = time.monotonic() - start
        return report
    if driver.engine == "postgresql":
        _pg_kill(driver, conn, report, tag_prefix, idle_after)
    else:
        _mysql_kill(driver, conn, report, idle_after, with_tags, with_trx, rds)
    report.duration = time.monotonic() - start
    return report


def run_if_needed(
    driver: Driver,
    conn: Any,
    *,
    budget: Budget | None,
    holder: str,
    threshold: float,
    interval: float,
    tag_prefix: str,
    idle_after: float | None,
) -> ReapReport | None:
    """A container's reaper turn: look at utilisation, take the fleet's token, reap.

    Returns None when utilisation is below ``threshold`` or another container
    holds the token. The caller rate-limits the look (:func:`reap_check_due`)
    and cleans its session afterwards.
    """
    used, limit = utilisation(driver, conn)
    if not should_reap(used, limit, threshold):
        return None
    token = None if budget is None else ReapToken(budget, holder, interval)
    if token is not None and not token.take(f"utilisation {used}/{limit}"):
        return None
    return reap_with(driver, conn, budget=budget, tag_prefix=tag_prefix, idle_after=idle_after)


def _pg_row(r: tuple[Any, ...]) -> SessionRow:
    pid, me, tag, busy, in_trx, idle = r
    return SessionRow(int(pid), bool(me), str(tag), bool(busy), bool(in_trx), idle)


def _pg_kill(
    driver: Driver, conn: Any, report: ReapReport, tag_prefix: str, idle_after: float | None
) -> None:
    from ..engines import postgres as pg

    # One statement per reason, so each carries its own minimum idle time.
    for reason, min_idle in (("expired_lease", EXPIRED_GRACE), ("idle", idle_after)):
        group = [v.row for v in report.candidates if v.reason == reason]
        if not group or min_idle is None:
            continue
        rows = driver.fetch(
            conn,
            pg.kill_sql(),
            ([r.id for r in group], [r.tag for r in group], tag_prefix, float(min_idle)),
        )
        done = {int(pid) for pid, ok in rows if ok}
        report.killed.extend(sorted(done))
        report.spared.extend(r.id for r in group if r.id not in done)


def _mysql_rows(
    driver: Driver, conn: Any, report: ReapReport
) -> tuple[list[SessionRow], bool, bool]:
    from ..engines import mysql as my

    with_tags = bool(driver.fetch(conn, my.TAGS_AVAILABLE_SQL)[0][0])
    if not with_tags:
        report.notes.append("performance_schema is off: session tags are not visible")
    try:
        raw = driver.fetch(conn, my.sessions_sql(with_tags=with_tags, with_transactions=True))
        with_trx = True
    except driver.connect_errors as exc:
        if driver.error_code(exc) not in my.PRIVILEGE_ERRNOS:
            raise
        report.notes.append("INNODB_TRX not readable (needs PROCESS): nothing is killed")
        raw = driver.fetch(conn, my.sessions_sql(with_tags=with_tags, with_transactions=False))
        with_trx = False
    rows = [
        SessionRow(int(i), bool(me), str(tag or ""), bool(busy), bool(trx), float(t or 0))
        for i, me, tag, busy, trx, t in raw
    ]
    return rows, with_tags, with_trx


def _mysql_kill(
    driver: Driver,
    conn: Any,
    report: ReapReport,
    idle_after: float | None,
    with_tags: bool,
    with_trx: bool,
    rds: bool,
) -> None:
    from ..engines import mysql as my

    recheck = my.recheck_sql(with_tags=with_tags, with_transactions=with_trx)
    for victim in report.candidates:
        row = victim.row
        min_idle = EXPIRED_GRACE if victim.reason == "expired_lease" else (idle_after or 0.0)
        # PROCESSLIST.TIME counts whole seconds.
        if not driver.fetch(conn, recheck, (row.id, row.tag, int(min_idle))):
            report.spared.append(row.id)
            continue
        try:
            driver.fetch(conn, my.kill_statement(row.id, rds=rds))
        except driver.connect_errors as exc:
            code = driver.error_code(exc)
            if code == 1094:  # ER_NO_SUCH_THREAD: it ended by itself meanwhile
                report.spared.append(row.id)
                continue
            if code == 1095 and not rds:  # ER_KILL_DENIED_ERROR: try the RDS procedure
                driver.fetch(conn, my.kill_statement(row.id, rds=True))
            else:
                raise
        report.killed.append(row.id)


__all__ = [
    "EXPIRED_GRACE",
    "REAPER_FUNCTION",
    "ReapReport",
    "ReapToken",
    "Victim",
    "choose_victims",
    "reap_check_due",
    "reap_with",
    "run_if_needed",
    "should_reap",
    "utilisation",
]
