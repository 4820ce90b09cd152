"""DynamoDB budget backend: a fleet on AWS shares one item per budget.

Strategy: the whole budget -- config, a map of leases, a map of waiters and a
``version`` number -- is one item (``pk = <budget name>``). An acquire is a
strongly consistent GetItem, the shared pure step
(:func:`fleetpool.budget._state.acquire_step`, exactly as the memory and SQLite
backends use it) decided in Python, and one UpdateItem that writes only what
changed under ``ConditionExpression version = :v``. If anyone wrote in between,
the condition fails and the attempt is re-read and re-decided, a bounded
number of times within the store timeout, with jitter. Release, renew and
cancel are single conditional UpdateItems that also bump ``version``, so a
concurrent acquire can never write back state it read before them. The
admission rule is therefore literally the pure function, and "never more than
the limit" rests on DynamoDB's conditional writes only.

Expired leases are ignored on read and removed by the next write; DynamoDB's own
TTL deletion is never needed (and not used). Time is the caller's wall clock:
hosts in a fleet are NTP-synchronised to milliseconds, far below lease TTLs.

Limits: an item holds at most 400 KB, so a budget holds at most a few thousand
leases (about 100 bytes each plus metadata). A write that would come near that
raises :class:`ConfigError` naming the budget instead of a cryptic service error.
There is no push notification (``notifies = False``): waiters poll with jitter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from ..backoff import FullJitterBackoff
from ..errors import BudgetUnavailable, ConfigError, LeaseLost, NotConfigured
from ._base import AcquireRequest, AcquireResult, BudgetBackend, Lease, Snapshot
from ._policy import GRANTED, UNCONFIGURED, BudgetConfig
from ._state import Step, Waiter, acquire_step, in_use_by_function

T = TypeVar("T")
Item = dict[str, Any]

#: DynamoDB's item size limit is 400 KB; refuse to write past this estimate.
MAX_ITEM_BYTES = 380_000
#: Upper bound on waiting for a table this backend created to become ACTIVE.
TABLE_WAIT = 30.0
#: Conditional-write retries per call (also bounded by the timeout).
MAX_CONFLICT_RETRIES = 50
_MAX_SCAN_PAGES = 100  # `budget list`: 1 MB pages, far more budgets than a table holds
#: A waiter ticket is not rewritten when its expiry would move by less than this.
WAITER_SLACK = 0.25
#: The refusal reason when every conditional write of a call collided.
WRITE_CONTENTION = "write_contention"


def _n(x: float) -> dict[str, str]:
    return {"N": repr(float(x))}


def _lease_av(lease: Lease) -> dict[str, Any]:
    return {
        "M": {
            "f": {"S": lease.function},
            "h": {"S": lease.holder},
            "a": _n(lease.acquired_at),
            "e": _n(lease.expires_at),
            "m": {"S": json.dumps(dict(lease.meta), separators=(",", ":"))},
        }
    }


def _waiter_av(w: Waiter) -> dict[str, Any]:
    return {"M": {"f": {"S": w.function}, "q": _n(w.enqueued_at), "e": _n(w.expires_at)}}


class _State:
    """The budget item, parsed."""

    def __init__(self, budget: str, item: Item | None) -> None:
        self.exists = item is not None
        item = item or {}
        self.version = int(item["version"]["N"]) if "version" in item else 0
        raw = item.get("config", {}).get("S")
        self.config = BudgetConfig.from_json(raw) if raw else UNCONFIGURED
        self.has_maps = "leases" in item and "waiters" in item
        self.leases: list[Lease] = []
        self.size = 200 + len(raw or "")
        for lease_id, av in item.get("leases", {}).get("M", {}).items():
            m = av["M"]
            meta = m["m"]["S"]
            self.size += len(lease_id) + len(m["f"]["S"]) + len(m["h"]["S"]) + len(meta) + 60
            self.leases.append(
                Lease(
                    id=lease_id,
                    budget=budget,
                    function=m["f"]["S"],
                    holder=m["h"]["S"],
                    acquired_at=float(m["a"]["N"]),
                    expires_at=float(m["e"]["N"]),
                    meta=json.loads(meta),
                )
            )
        self.waiters: list[Waiter] = []
        for ticket, av in item.get("waiters", {}).get("M", {}).items():
            m = av["M"]
            self.size += len(ticket) + len(m["f"]["S"]) + 50
            self.waiters.append(
                Waiter(
                    ticket=ticket,
                    function=m["f"]["S"],
                    enqueued_at=float(m["q"]["N"]),
                    expires_at=float(m["e"]["N"]),
                )
            )


class _Conflict(Exception):
    """Someone else wrote the item between our read and our write."""


class DynamoDBBackend(BudgetBackend):
    kind = "dynamodb"
    notifies = False

    def __init__(
        self,
        name: str,
        table: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        timeout: float = 2.0,
        create_table: bool = True,
    ) -> None:
        super().__init__(name)
        if importlib.util.find_spec("boto3") is None:
            raise ConfigError(
                "the dynamodb budget backend needs boto3: pip install 'fleetpool[aws]'"
            )
        self.table = table
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if self.region is None and endpoint_url:
            self.region = "us-east-1"  # a local stand-in (moto, DynamoDB Local) ignores it
        if self.region is None:
            raise ConfigError(
                f"dynamodb budget {name!r} needs a region: dynamodb://{table}?region=eu-west-1 "
                "or AWS_REGION in the environment"
            )
        self.endpoint_url = endpoint_url
        self.timeout = float(timeout)
        self.create_table = create_table
        self._key = {"pk": {"S": name}}
        self._client_obj: Any = None
        self._client_pid = 0
        self._lock = threading.Lock()
        # Write conflicts: full jitter from 4 ms, doubling, capped at 100 ms.
        self._conflict_backoff = FullJitterBackoff(base=0.004, cap=0.1, rng=random.Random())

    # -- calling the service ---------------------------------------------------------

    def _client(self) -> Any:
        client = self._client_obj
        if client is not None and self._client_pid == os.getpid():
            return client
        with self._lock:
            if self._client_obj is None or self._client_pid != os.getpid():
                import boto3
                from botocore.config import Config

                session = boto3.session.Session()
                self._client_obj = session.client(
                    "dynamodb",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=Config(
                        connect_timeout=self.timeout,
                        read_timeout=self.timeout,
                        retries={"max_attempts": 2, "mode": "standard"},
                    ),
                )
                self._client_pid = os.getpid()
            return self._client_obj

    def _unavailable(self, exc: Exception) -> BudgetUnavailable:
        return BudgetUnavailable(
            f"dynamodb budget {self.name!r} in table {self.table!r} unavailable: "
            f"{type(exc).__name__}: {exc}"
        )

    def _call(self, op: str, **kwargs: Any) -> Any:
        """One API call; ConditionalCheckFailed -> _Conflict, anything else translated."""
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(2):
            try:
                return getattr(self._client(), op)(TableName=self.table, **kwargs)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "ConditionalCheckFailedException":
                    raise _Conflict() from exc
                if code == "ResourceNotFoundException" and attempt == 0 and self.create_table:
                    self._create_table()
                    continue
                if code == "ResourceNotFoundException":
                    raise NotConfigured(
                        f"dynamodb table {self.table!r} does not exist (and create=false): "
                        "'fleetpool budget set' creates it, or deploy it with your stack"
                    ) from exc
                if code == "ValidationException" and "size" in str(exc).lower():
                    raise self._too_big() from exc
                raise self._unavailable(exc) from exc
            except BotoCoreError as exc:
                raise self._unavailable(exc) from exc
        raise BudgetUnavailable(f"dynamodb table {self.table!r} does not exist")  # pragma: no cover

    def _too_big(self) -> ConfigError:
        return ConfigError(
            f"dynamodb budget {self.name!r} would exceed DynamoDB's 400 KB item limit; "
            "lower the budget limit or keep lease metadata small"
        )

    def _create_table(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client()
        try:
            client.create_table(
                TableName=self.table,
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise self._unavailable(exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable(exc) from exc
        deadline = time.monotonic() + max(self.timeout, TABLE_WAIT)
        while True:
            try:
                status = client.describe_table(TableName=self.table)["Table"]["TableStatus"]
            except (ClientError, BotoCoreError) as exc:
                status = type(exc).__name__
            if status == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise BudgetUnavailable(
                    f"dynamodb table {self.table!r} not ACTIVE after {TABLE_WAIT:.0f}s ({status})"
                )
            time.sleep(0.5)

    def budget_names(self) -> list[str]:
        names: list[str] = []
        start: dict[str, Any] | None = None
        for _ in range(_MAX_SCAN_PAGES):
            page = self._call(
                "scan",
                ProjectionExpression="pk, config",
                ConsistentRead=True,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            names.extend(item["pk"]["S"] for item in page.get("Items", ()) if "config" in item)
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return sorted(names)

    def _read(self) -> _State:
        res = self._call("get_item", Key=self._key, ConsistentRead=True)
        return _State(self.name, res.get("Item"))

    # -- the interface -------------------------------------------------------------------

    def configure(self, config: BudgetConfig) -> None:
        self._call(
            "update_item",
            Key=self._key,
            UpdateExpression=(
                "SET config = :c, version = if_not_exists(version, :zero) + :one, "
                "leases = if_not_exists(leases, :empty), waiters = if_not_exists(waiters, :empty)"
            ),
            ExpressionAttributeValues={
                ":c": {"S": config.to_json()},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":empty": {"M": {}},
            },
        )

    def get_config(self) -> BudgetConfig:
        return self._read().config

    def try_acquire(self, request: AcquireRequest) -> AcquireResult:
        deadline = time.monotonic() + self.timeout
        result: AcquireResult | None = None
        for attempt in range(MAX_CONFLICT_RETRIES):
            state = self._read()
            now = time.time()
            mine = next((x for x in state.leases if x.id == request.lease_id), None)
            if mine is not None and mine.expires_at > now:
                # botocore retried a write whose first reply was lost: already granted.
                live = sum(1 for x in state.leases if x.expires_at > now)
                return AcquireResult(mine, GRANTED, state.config.limit, live - 1)
            step = acquire_step(
                self.name, state.config, state.leases, state.waiters, request, now, request.lease_id
            )
            result = AcquireResult(
                lease=step.lease,
                reason=step.decision.reason,
                limit=state.config.limit,
                in_use=step.in_use,
                ticket=step.waiter.ticket if step.waiter else None,
                reclaimed=len(step.expired),
            )
            try:
                self._write_step(state, step, request, now)
                return result
            except _Conflict:
                if time.monotonic() >= deadline:
                    break
                # Spread the retries of a crowd that collided on the same version.
                time.sleep(self._conflict_backoff.compute(attempt + 1))
        # The item was busy for the whole timeout. That is no capacity *now*, not an
        # unreachable store: refusing (the front waits and retries) keeps the limit,
        # where BudgetUnavailable would grant unrecorded leases to a busy fleet.
        assert result is not None
        return replace(result, lease=None, reason=WRITE_CONTENTION, ticket=request.ticket)

    def _write_step(self, state: _State, step: Step, request: AcquireRequest, now: float) -> None:
        lease, waiter = step.lease, step.waiter
        existing_tickets = {w.ticket for w in state.waiters}
        drop_tickets = set(step.expired_waiters)
        if (lease is not None or waiter is None) and request.ticket in existing_tickets:
            drop_tickets.add(request.ticket)
        if waiter is not None:
            drop_tickets.discard(waiter.ticket)
            old = next((w for w in state.waiters if w.ticket == waiter.ticket), None)
            if (
                old is not None
                and old.expires_at > now
                and (waiter.expires_at <= old.expires_at + WAITER_SLACK)
            ):
                # The front asks for the same deadline on every poll: refreshing
                # the ticket would only make the item busier.
                waiter = None
        if lease is None and waiter is None and not step.expired and not drop_tickets:
            return  # a refusal that changes nothing: no write
        grow = 0
        if lease is not None:
            grow += len(json.dumps(dict(lease.meta))) + len(lease.holder) + 200
        if waiter is not None:
            grow += 150
        if state.size + grow > MAX_ITEM_BYTES:
            raise self._too_big()
        names: dict[str, str] = {}
        values: dict[str, Any] = {":v1": {"N": str(state.version + 1)}}
        sets = ["version = :v1"]
        removes: list[str] = []
        if state.exists and state.has_maps:
            for i, lease_id in enumerate(step.expired):
                names[f"#x{i}"] = lease_id
                removes.append(f"leases.#x{i}")
            for i, ticket in enumerate(sorted(drop_tickets)):
                names[f"#y{i}"] = ticket
                removes.append(f"waiters.#y{i}")
            if lease is not None:
                names["#l"] = lease.id
                values[":l"] = _lease_av(lease)
                sets.append("leases.#l = :l")
            if waiter is not None:
                names["#w"] = waiter.ticket
                values[":w"] = _waiter_av(waiter)
                sets.append("waiters.#w = :w")
        else:
            # First write of a budget never configured: write both maps whole.
            leases = {x.id: _lease_av(x) for x in state.leases if x.expires_at > now}
            waiters = {
                w.ticket: _waiter_av(w)
                for w in state.waiters
                if w.expires_at > now and w.ticket not in drop_tickets
            }
            if lease is not None:
                leases[lease.id] = _lease_av(lease)
            if waiter is not None:
                waiters[waiter.ticket] = _waiter_av(waiter)
            values[":lm"] = {"M": leases}
            values[":wm"] = {"M": waiters}
            sets += ["leases = :lm", "waiters = :wm"]
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        if state.exists:
            condition = "version = :v"
            values[":v"] = {"N": str(state.version)}
        else:
            condition = "attribute_not_exists(pk)"
        kwargs: dict[str, Any] = {
            "Key": self._key,
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        self._call("update_item", **kwargs)

    def _set_on_live_lease(self, lease: Lease, field: str, value: dict[str, str]) -> None:
        """Set one attribute of ``lease`` if it is still live, else raise LeaseLost."""
        try:
            self._call(
                "update_item",
                Key=self._key,
                UpdateExpression=f"SET leases.#id.{field} = :v, version = version + :one",
                ConditionExpression="attribute_exists(leases.#id) AND leases.#id.e > :now",
                ExpressionAttributeNames={"#id": lease.id},
                ExpressionAttributeValues={
                    ":v": value,
                    ":now": _n(time.time()),
                    ":one": {"N": "1"},
                },
            )
        except _Conflict:
            raise LeaseLost.of(lease) from None

    def renew(self, lease: Lease, ttl: float) -> Lease:
        expires_at = time.time() + ttl
        self._set_on_live_lease(lease, "e", _n(expires_at))
        return replace(lease, expires_at=expires_at)

    def annotate(self, lease: Lease, meta: Mapping[str, Any]) -> Lease:
        # The holder merges (it owns the lease) and the item keeps the whole text.
        merged = {**lease.meta, **meta}
        try:
            text = json.dumps(merged, separators=(",", ":"))
        except TypeError as exc:
            raise ConfigError(f"lease meta must be JSON-serialisable: {exc}") from exc
        self._set_on_live_lease(lease, "m", {"S": text})
        return replace(lease, meta=merged)

    def release(self, lease: Lease) -> bool:
        try:
            res = self._call(
                "update_item",
                Key=self._key,
                UpdateExpression="REMOVE leases.#id SET version = version + :one",
                ConditionExpression="attribute_exists(leases.#id)",
                ExpressionAttributeNames={"#id": lease.id},
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="UPDATED_OLD",
            )
        except _Conflict:
            return False
        old = res.get("Attributes", {}).get("leases", {}).get("M", {}).get(lease.id)
        if old is None:
            return True
        return float(old["M"]["e"]["N"]) > time.time()

    def cancel_wait(self, ticket: str) -> None:
        try:
            self._call(
                "update_item",
                Key=self._key,
                UpdateExpression="REMOVE waiters.#t SET version = version + :one",
                ConditionExpression="attribute_exists(waiters.#t)",
                ExpressionAttributeNames={"#t": ticket},
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        except _Conflict:
            pass

    def leases(self) -> list[Lease]:
        now = time.time()
        return sorted(
            (x for x in self._read().leases if x.expires_at > now),
            key=lambda x: (x.acquired_at, x.id),
        )

    def snapshot(self) -> Snapshot:
        state = self._read()
        now = time.time()
        current = [x for x in state.leases if x.expires_at > now]
        config = state.config
        return Snapshot.from_counts(
            self.name,
            config,
            in_use_by_function(current),
            sum(1 for w in state.waiters if w.expires_at > now),
        )

    def close(self) -> None:
        with self._lock:
            client, self._client_obj = self._client_obj, None
        if client is not None and self._client_pid == os.getpid():
            close: Callable[[], None] | None = getattr(client, "close", None)
            if close is not None:
                close()


__all__ = ["DynamoDBBackend"]
