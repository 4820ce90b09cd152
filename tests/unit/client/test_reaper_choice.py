"""The reaper's pure choice of sessions: only the fleet's own, idle, and expired or idle long."""

from __future__ import annotations

from fleetpool.client.reaper import choose_victims
from fleetpool.engines import SessionRow

P = "fp:abcd1234:"


def row(
    i: int,
    tag: str,
    *,
    me: bool = True,
    busy: bool = False,
    trx: bool = False,
    idle: float | None = 100.0,
) -> SessionRow:
    return SessionRow(i, me, tag, busy, trx, idle)


def pick(
    rows: list[SessionRow], live: set[str] | None, idle_after: float | None = None, **kw: bool
) -> tuple[dict[int, str], dict[str, int]]:
    skipped: dict[str, int] = {}
    out = choose_victims(
        rows, tag_prefix=P, live_tags=live, idle_after=idle_after, skipped=skipped, **kw
    )
    return {v.row.id: v.reason for v in out}, skipped


def test_expired_lease_sessions_are_chosen() -> None:
    chosen, _ = pick([row(1, P + "dead:f"), row(2, P + "live:f")], {P + "live:f"})
    assert chosen == {1: "expired_lease"}


def test_never_other_users_running_or_in_transaction() -> None:
    rows = [
        row(1, P + "dead:f", me=False),
        row(2, P + "dead:f", busy=True),
        row(3, P + "dead:f", trx=True),
        row(4, P + "dead:f", idle=0.2),  # just finished a statement: grace period
    ]
    chosen, skipped = pick(rows, set(), idle_after=1.0)
    assert chosen == {}
    assert skipped == {"other_user": 1, "running": 1, "in_transaction": 1, "just_active": 1}


def test_never_sessions_without_our_tag() -> None:
    rows = [row(1, ""), row(2, "psql"), row(3, "fp:otherbud:x:f"), row(4, "fp:-:x:f")]
    chosen, skipped = pick(rows, set(), idle_after=0.0)
    assert chosen == {} and skipped == {"not_ours": 4}


def test_idle_after_reaps_live_sessions_too() -> None:
    rows = [row(1, P + "a:f", idle=30.0), row(2, P + "b:f", idle=5.0)]
    chosen, _ = pick(rows, {P + "a:f", P + "b:f"}, idle_after=10.0)
    assert chosen == {1: "idle"}


def test_without_budget_only_idle_counts() -> None:
    chosen, _ = pick([row(1, P + "a:f", idle=30.0)], None)
    assert chosen == {}
    chosen, _ = pick([row(1, P + "a:f", idle=30.0)], None, idle_after=10.0)
    assert chosen == {1: "idle"}


def test_untagged_matching_is_opt_in_and_idle_only() -> None:
    rows = [row(1, "", idle=30.0), row(2, "fp:other:x:f", idle=30.0)]
    assert pick(rows, set(), idle_after=10.0)[0] == {}
    chosen, _ = pick(rows, set(), idle_after=10.0, match_untagged=True)
    assert chosen == {1: "idle"}
