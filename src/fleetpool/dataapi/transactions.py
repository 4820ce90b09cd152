# Strategy: a transaction is a held connection with an owner (the access key that began
# it), a last-use time and an expiry, like every connection in fleetpool. The table is a
# plain dict; deciding which transactions are over (idle too long, alive too long) is a
# pure function of the table and ``now``, run by the server's janitor, so tests need no
# clock. Ended ids are remembered (bounded) so a late commit gets a reason, not a shrug.
from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .protocol import api_error

if TYPE_CHECKING:
    from ..errors import DataApiError
    from .sources import ConnectionSource, Session

_REMEMBER = 10_000  # ended transaction ids kept for error messages


@dataclass(eq=False)
class Transaction:
    id: str
    owner: str
    database: int  # index of the configured database
    source: ConnectionSource
    session: Session
    started: float
    last_used: float
    busy: int = 0  # statements in flight: never expired while > 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def expired(
    transactions: dict[str, Transaction], now: float, idle_timeout: float, max_lifetime: float
) -> list[tuple[str, str]]:
    """(id, reason) of every transaction to roll back at ``now``."""
    out = []
    for tx in transactions.values():
        if tx.busy:
            continue
        if now - tx.last_used > idle_timeout:
            out.append((tx.id, f"was rolled back after {idle_timeout:g} s without a statement"))
        elif now - tx.started > max_lifetime:
            out.append((tx.id, f"was rolled back after its maximum lifetime of {max_lifetime:g} s"))
    return out


class TransactionTable:
    def __init__(self) -> None:
        self.live: dict[str, Transaction] = {}
        self.ended: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(32)

    def add(self, tx: Transaction) -> None:
        self.live[tx.id] = tx

    def get(self, tx_id: str, owner: str) -> Transaction:
        tx = self.live.get(tx_id)
        if tx is None or tx.owner != owner:
            raise self.not_found(tx_id)
        return tx

    def end(self, tx_id: str, reason: str) -> Transaction | None:
        tx = self.live.pop(tx_id, None)
        self.ended[tx_id] = reason
        while len(self.ended) > _REMEMBER:
            self.ended.popitem(last=False)
        return tx

    def not_found(self, tx_id: str) -> DataApiError:
        reason = self.ended.get(tx_id)
        if reason is not None:
            return api_error("TransactionNotFoundException", f"Transaction {tx_id} {reason}")
        return api_error("TransactionNotFoundException", f"Transaction {tx_id} is not found")
