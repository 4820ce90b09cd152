# Strategy: session settings follow the client, not the server connection (PgBouncer's
# varcache.c, extended to every SET).
#
# A client's settings are what it asked for in its startup packet plus every SET/RESET
# it ran since, kept as the SQL that reproduces each value ("SET search_path TO a, b",
# the client's own text). A server connection remembers which of those statements the
# proxy (or a client) applied to it. When a client lands on a server connection whose
# applied settings differ, one injected batch brings it in line -- lazily, only when
# they differ, and nothing when the same client comes back. A plain autocommit SET
# updates both sides directly; anything subtler (SET inside a transaction, set_config,
# RESET ALL in a transaction) is learnt from the server itself with current_setting()
# once the transaction has ended, so the bookkeeping never guesses.
#
# Identity compares keep the hot path cheap: equal settings share one interned key
# object, and a server connection remembers the key it was last synced for.
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .sql import SettingChange

# Startup parameters that are not settings.
_NOT_SETTINGS = frozenset(("user", "database", "replication", "options"))
SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_name(name: str) -> str:
    """A setting's name for RESET: each dotted part quoted (``myapp.user`` has a keyword)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def set_statement(name: str, value: str) -> str:
    """SQL that gives setting ``name`` the (already normalised) string ``value``.

    ``set_config`` parses the string the way the server parses a startup option or
    ``current_setting``'s output -- list-valued settings such as search_path included,
    which ``SET name = 'a, b'`` would take as one element -- and takes any name.
    """
    return f"SELECT pg_catalog.set_config({quote_literal(name)}, {quote_literal(value)}, false)"


def options_settings(options: str) -> dict[str, str]:
    """Settings from a startup packet's ``options`` (``-c name=value``, ``--name=value``)."""
    out: dict[str, str] = {}
    tokens = options.replace("\\ ", "\x00").split()
    i = 0
    while i < len(tokens):
        tok = tokens[i].replace("\x00", " ")
        if tok == "-c" and i + 1 < len(tokens):
            tok = "--" + tokens[i + 1].replace("\x00", " ")
            i += 1
        if tok.startswith("-c"):
            tok = "--" + tok[2:]
        if tok.startswith("--") and "=" in tok:
            name, _, value = tok[2:].partition("=")
            out[name.replace("-", "_").lower()] = value
        i += 1
    return out


def startup_settings(params: Mapping[str, str]) -> dict[str, str]:
    """The settings a client's startup packet asks for (lower-case names)."""
    wanted = {
        k.lower(): v
        for k, v in params.items()
        if k.lower() not in _NOT_SETTINGS and not k.startswith("_pq_.")
    }
    wanted.update(options_settings(params.get("options", "")))
    fallback = wanted.pop("fallback_application_name", None)
    if "application_name" not in wanted and fallback is not None:
        wanted["application_name"] = fallback
    return {k: v for k, v in wanted.items() if SAFE_NAME.match(k)}


class Interner:
    """One shared key object per distinct set of settings (bounded)."""

    __slots__ = ("_keys", "limit")

    def __init__(self, limit: int = 10_000) -> None:
        self._keys: dict[tuple[tuple[str, str], ...], object] = {}
        self.limit = limit

    def key(self, statements: Mapping[str, str]) -> object:
        key = tuple(sorted(statements.items()))
        found = self._keys.get(key)
        if found is None:
            if len(self._keys) >= self.limit:
                # Forgetting only costs a redundant (empty) sync check later.
                self._keys.clear()
            found = self._keys[key] = key
        return found


class ServerSettings:
    """What one server connection has: reported parameters and applied statements."""

    __slots__ = ("applied", "params", "synced_for")

    def __init__(self) -> None:
        self.params: dict[str, str] = {}  # ParameterStatus values, names as reported
        self.applied: dict[str, str] = {}  # lower-case name -> statement applied
        self.synced_for: object = None  # the key of the settings last brought in line

    def reported(self, name: str) -> str | None:
        value = self.params.get(name)
        if value is None:
            for key, val in self.params.items():
                if key.lower() == name:
                    return val
        return value

    def forget(self) -> None:
        """Every setting is back to the server connection's default (RESET ALL)."""
        self.applied.clear()
        self.synced_for = None


class ClientSettings:
    """What one client asked for: startup values plus the SETs it ran."""

    __slots__ = ("_initial", "_interner", "key", "learn", "startup", "wanted")

    def __init__(self, startup: Mapping[str, str], interner: Interner) -> None:
        self.startup = dict(startup)
        self._interner = interner
        self._initial = {name: set_statement(name, value) for name, value in startup.items()}
        self.wanted = dict(self._initial)
        self.key = interner.key(self.wanted)
        self.learn: set[str] = set()  # settings to read back once the transaction ends

    def _changed(self) -> None:
        self.key = self._interner.key(self.wanted)

    def _default(self, name: str) -> None:
        stmt = self._initial.get(name)
        if stmt is None:
            self.wanted.pop(name, None)
        else:
            self.wanted[name] = stmt

    def apply(self, changes: Iterable[SettingChange], server: ServerSettings) -> None:
        """Plain SET/RESET statements succeeded on ``server`` outside a transaction."""
        in_line = server.synced_for is self.key
        for change in changes:
            if change.statement is None:  # RESET: the server has its own default now
                server.applied.pop(change.name, None)
                self._default(change.name)
                in_line = in_line and change.name not in self._initial
            else:
                server.applied[change.name] = self.wanted[change.name] = change.statement
        self._changed()
        # If the server was in line before, it still is -- unless a RESET took it back
        # to a default this client does not want.
        server.synced_for = self.key if in_line else None

    def reset_all(self, server: ServerSettings) -> None:
        """RESET ALL / DISCARD ALL succeeded on ``server`` outside a transaction."""
        server.forget()
        self.wanted = dict(self._initial)
        self._changed()

    def to_learn(self, names: Iterable[str]) -> None:
        """Settings changed in ways only the server can tell: read them back later."""
        self.learn.update(names)

    def learn_all(self, server: ServerSettings) -> None:
        """Every setting may have changed (RESET ALL inside a transaction)."""
        self.learn.update(self.wanted, server.applied, self.startup)

    def learnt(self, values: Mapping[str, str | None], server: ServerSettings) -> None:
        """The current values of the settings being learnt, as ``server`` reports them."""
        for name, value in values.items():
            if value is None:
                self.wanted.pop(name, None)
                server.applied.pop(name, None)
            else:
                server.applied[name] = self.wanted[name] = set_statement(name, value)
        in_line = server.synced_for is self.key
        self.learn.clear()
        self._changed()
        server.synced_for = self.key if in_line else None

    def sync_sql(self, server: ServerSettings) -> str:
        """SQL that brings ``server`` in line with this client ("" if it already is).

        Also records the result in ``server`` (the caller sends the SQL at once).
        """
        stmts: list[str] = []
        applied = server.applied
        initial = self._initial
        for name, stmt in self.wanted.items():
            current = applied.get(name)
            if current == stmt:
                continue
            if (
                current is None
                and initial.get(name) == stmt
                and server.reported(name) == self.startup[name]
            ):
                continue  # the connection's own default already has the value
            stmts.append(stmt)
            applied[name] = stmt
        for name in [n for n in applied if n not in self.wanted]:
            stmts.append(f"RESET {quote_name(name)}")
            del applied[name]
        server.synced_for = self.key
        return "; ".join(stmts)


def learn_sql(names: Iterable[str]) -> tuple[list[str], str]:
    """A query reading the current value of each setting (NULL if it does not exist)."""
    ordered = sorted(set(names))
    cols = ", ".join(f"pg_catalog.current_setting({quote_literal(n)}, true)" for n in ordered)
    return ordered, f"SELECT {cols}"
