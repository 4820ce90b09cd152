# Strategy: login abuse is handled per source address by one pure policy object
# (time is passed in; the caller sleeps and refuses), shared by every wire-protocol
# plug-in. A failed login is answered only after a delay that doubles with each recent
# failure of its address (capped), and the connection keeps its "login in progress"
# slot while it waits: with the per-address cap on logins in progress, an attacker's
# rate is bounded by cap / delay. Enough failures within the window ban the address
# for a while: its logins are then refused before any password is checked -- answered
# only after the longest delay, holding a slot meanwhile (a tarpit: a banned address
# gets at most max_per_address refusals per login_delay_max, so hammering costs the
# proxy little). Other addresses are never slowed: nothing here waits, and a busy
# address only uses its own slots (plus the global cap, sized generously).
#
# Successful logins are never delayed and do not wipe the failure count (an attacker
# holding one valid password could otherwise reset its penalty); failures are
# forgotten when the address has had none for a whole window. Memory is bounded: idle
# entries are pruned, and at the bound the oldest idle ones go first.
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .stats import Stats

BANNED = "banned"
BUSY = "busy"  # too many logins in progress (from this address, or in all)


@dataclass(frozen=True, slots=True)
class ThrottleRules:
    delay: float = 0.1  # the first failure's delay; doubles per recent failure
    delay_max: float = 3.0
    ban_after: int = 30  # failures within ban_time that ban the address (0: never)
    ban_time: float = 300.0  # the window, and how long a ban lasts
    max_in_progress: int = 1000
    max_per_address: int = 200

    @classmethod
    def from_config(cls, cfg: Any) -> ThrottleRules:
        return cls(
            delay=cfg.login_delay,
            delay_max=cfg.login_delay_max,
            ban_after=cfg.login_ban_after,
            ban_time=cfg.login_ban_time,
            max_in_progress=cfg.max_logins_in_progress,
            max_per_address=cfg.max_logins_per_address,
        )


@dataclass(slots=True)
class _Address:
    failures: int = 0
    last_failure: float = float("-inf")
    banned_until: float = float("-inf")
    in_progress: int = 0


class LoginThrottle:
    """Admission and penalties of logins by source address.

    ``admit`` before checking credentials: None (go on, a slot is taken), BANNED (a
    slot is taken: refuse after ``ban_delay``, then ``release``) or BUSY (no slot:
    refuse now). After None, exactly one of ``succeeded``, ``failed`` (returns the
    delay before the failure may be answered; call ``release`` once answered) or
    ``release`` (the client went away mid-login).
    """

    def __init__(
        self, rules: ThrottleRules, stats: Stats | None = None, max_addresses: int = 100_000
    ) -> None:
        self.rules = rules
        self.stats = stats if stats is not None else Stats()
        self.max_addresses = max_addresses
        self._addresses: dict[str, _Address] = {}
        self.in_progress = 0

    def __len__(self) -> int:
        return len(self._addresses)

    def banned(self, address: str, now: float) -> bool:
        entry = self._addresses.get(address)
        return entry is not None and entry.banned_until > now

    @property
    def ban_delay(self) -> float:
        """How long a banned address waits for its refusal."""
        return self.rules.delay_max

    def admit(self, address: str, now: float) -> str | None:
        rules = self.rules
        entry = self._addresses.get(address)
        if self.in_progress >= rules.max_in_progress or (
            entry is not None and entry.in_progress >= rules.max_per_address
        ):
            self.stats.logins_refused_busy += 1
            return BUSY
        if entry is None:
            if len(self._addresses) >= self.max_addresses:
                self._prune(now)
            entry = self._addresses[address] = _Address()
        entry.in_progress += 1
        self.in_progress += 1
        self.stats.logins_in_progress = self.in_progress
        if entry.banned_until > now:
            self.stats.logins_refused_banned += 1
            return BANNED
        return None

    def succeeded(self, address: str, now: float) -> None:
        self.release(address)

    def failed(self, address: str, now: float) -> float:
        """Count a failure; the seconds to wait before answering it."""
        rules = self.rules
        entry = self._addresses.get(address)
        if entry is None:  # pragma: no cover - admit() made it; pruning spares busy ones
            entry = self._addresses[address] = _Address(in_progress=1)
            self.in_progress += 1
        if now - entry.last_failure > rules.ban_time:
            entry.failures = 0
        entry.failures += 1
        entry.last_failure = now
        if rules.ban_after and entry.failures >= rules.ban_after and entry.banned_until <= now:
            entry.banned_until = now + rules.ban_time
            entry.failures = 0  # after the ban, a fresh start (and a fresh ban if need be)
            self.stats.login_bans += 1
        delay = min(rules.delay * 2.0 ** min(entry.failures - 1, 60), rules.delay_max)
        if entry.banned_until > now:
            delay = rules.delay_max
        if delay > 0:
            self.stats.logins_delayed += 1
        return max(delay, 0.0)

    def release(self, address: str) -> None:
        """The login's slot is free (answered, or abandoned by the client)."""
        entry = self._addresses.get(address)
        if entry is None or entry.in_progress <= 0:
            return
        entry.in_progress -= 1
        self.in_progress -= 1
        self.stats.logins_in_progress = self.in_progress

    def _prune(self, now: float) -> None:
        """Forget addresses with nothing to remember; at the bound, the oldest of those
        without a login in progress (bans included: the bound wins over memory)."""
        window = self.rules.ban_time
        entries = self._addresses
        for addr in [
            a
            for a, e in entries.items()
            if e.in_progress == 0 and e.banned_until <= now and now - e.last_failure > window
        ]:
            del entries[addr]
        if len(entries) >= self.max_addresses:
            idle = sorted((e.last_failure, a) for a, e in entries.items() if e.in_progress == 0)
            for _, addr in idle[: max(1, len(idle) // 2)]:
                del entries[addr]
