# Strategy: the ONE PostgreSQL session-state classifier, shared by the client library
# (which resets a session that was left dirty) and the proxy (which replays settings
# and pins a client only for state it cannot replay). Both ask ``analyze(sql)``; the
# client reads ``Analysis.state`` (flags), the proxy the rest. One table of cases
# (tests/cases/pg_session.py) is checked against both readings.
#
# Decisions come from SQL text alone. A cheap byte pre-filter (``might_affect_session``,
# memoized) runs on every query the proxy relays; only texts that mention a suspicious
# keyword get the slower pass, which blanks out comments, literals and quoted
# identifiers (keeping every offset, so values can be sliced from the original text),
# splits statements on ``;`` and looks at each statement's words. False positives cost
# multiplexing or a reset; false negatives leak state between clients, so when in doubt
# the verdict is "pin" (proxy) or "dirty" (client).
#
# What cannot be seen from the text: state created inside a function or procedure body
# (a ``SELECT f()`` whose body runs ``CREATE TEMP TABLE``). ``DO`` blocks are treated as
# opaque (they pin and dirty); function calls are not -- the proxy's optional state probe
# (``state_probe``) and the client's ``reset="always"``/``mark_dirty()`` cover them.
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..engines import SessionState

_SUSPECT = re.compile(
    rb"(?i)\b(?:set|reset|listen|load|discard|prepare|deallocate|temp|temporary|hold|do)\b"
    rb"|advisory_lock|set_config"
)
# Pre-filter for the hot path: lower-cased text, no IGNORECASE and few word
# boundaries -- about three times faster than _SUSPECT on typical OLTP statements.
# Spurious matches only cost a call to analyze().
_FAST = re.compile(
    rb"[adhlpst](?:et|emp|isten|oad|iscard|repare|ealloc|old|dvisory)|(?:^|[\s;(])do[\s$']"
)

# Even _FAST costs about 0.6 us on a typical statement, a large share of the proxy's
# per-transaction work, and OLTP traffic repeats a few statement shapes that differ
# only in numeric literals. So verdicts are memoized on the text folded to lower case
# with every digit mapped to "0": _FAST has no digit in it and a digit can never
# stand where it needs a letter, so a folded text gets the verdict of the original.
# Long texts (rarely repeated, and the memo must stay small) skip the memo.
_FOLD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ123456789", b"abcdefghijklmnopqrstuvwxyz000000000"
)
_MEMO_TEXT = 512
_MEMO_SIZE = 2048
_memo: dict[bytes, bool] = {}


def might_affect_session(data: bytes, start: int, end: int) -> bool:
    """Cheap check on ``data[start:end]``: False means ``analyze()`` finds nothing."""
    folded = data[start:end].translate(_FOLD)
    verdict = _memo.get(folded)
    if verdict is None:
        verdict = _FAST.search(folded) is not None
        if end - start <= _MEMO_TEXT:
            if len(_memo) >= _MEMO_SIZE:
                _memo.clear()  # a workload of ever-new shapes: start over, stay bounded
            _memo[folded] = verdict
    return verdict


# Comments, string literals (standard, E'' escapes, dollar quotes) and quoted
# identifiers; each is replaced by spaces of the same length (offsets are kept).
_LITERALS = re.compile(
    r"--[^\n]*|/\*.*?\*/|[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\""
    r"|\$([A-Za-z_][A-Za-z_0-9]*|)\$.*?\$\1\$",
    re.S,
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9$]*(?:\.[A-Za-z_][A-Za-z_0-9$]*)*")
_ADVISORY = re.compile(r"(?i)\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(")
_SET_CONFIG = re.compile(r"(?i)\bset_config\s*\(")
_SET_CONFIG_NAME = re.compile(r"\s*'((?:[^']|'')*)'\s*,")
_DEALLOCATE = re.compile(
    rb"(?is)^\s*deallocate\s+(?:prepare\s+)?(\"(?:[^\"]|\"\")+\"|[a-z_][a-z_0-9$]*)\s*;?\s*$"
)
# SET forms whose setting name is spelt with keywords.
_SPECIAL_NAMES = {
    ("time", "zone"): "timezone",
    ("names",): "client_encoding",
    ("schema",): "search_path",
    ("xml", "option"): "xmloption",
}
# SET SESSION CHARACTERISTICS AS TRANSACTION ... sets these three defaults.
_CHARACTERISTICS = (
    "default_transaction_isolation",
    "default_transaction_read_only",
    "default_transaction_deferrable",
)


@dataclass(frozen=True, slots=True)
class SettingChange:
    """A session setting changed by a SET or RESET the proxy can replay.

    ``statement`` is the SQL that reproduces the new value on another server
    connection (the client's own SET, verbatim), or ``None`` for a RESET (back to the
    session default).
    """

    name: str
    statement: str | None


@dataclass(frozen=True, slots=True)
class Analysis:
    """What some SQL does to the session it runs in.

    * ``state`` -- kinds of state left behind (the client library resets a session
      that has any);
    * ``pin`` -- why the proxy must keep the client on its server connection (state
      it cannot replay), or ``None``;
    * ``changes`` -- settings changed by plain SET/RESET statements, in order;
    * ``learn`` -- settings changed in ways only the server can tell the value of
      (``set_config``, ``SET SESSION CHARACTERISTICS``): the proxy reads them back
      with ``current_setting`` once the transaction has ended;
    * ``reset_all`` -- every setting back to its default (RESET ALL, DISCARD ALL);
    * ``drops_prepared`` -- every prepared statement dropped (DISCARD ALL);
    * ``statements`` -- how many statements the text holds;
    * ``tx_control`` -- a statement opens, ends or rolls back part of a transaction
      (then a change's fate depends on the outcome, which the text cannot tell).

    ``changes`` and ``learn`` hold only what follows the last RESET ALL / DISCARD ALL.
    """

    state: SessionState = SessionState.NONE
    pin: str | None = None
    changes: tuple[SettingChange, ...] = ()
    learn: tuple[str, ...] = ()
    reset_all: bool = False
    drops_prepared: bool = False
    statements: int = 1
    tx_control: bool = False

    @property
    def settings_only(self) -> bool:
        """One plain SET or RESET and nothing else: replayable without asking the server."""
        return (
            self.statements == 1
            and len(self.changes) == 1
            and not self.learn
            and self.pin is None
            and not self.reset_all
        )


NOTHING = Analysis()


def blank(text: str) -> str:
    """``text`` with comments, literals and quoted identifiers turned to spaces.

    Same length as ``text``, so an offset in the result is an offset in ``text``.
    """
    return _LITERALS.sub(lambda m: " " * (m.end() - m.start()), text)


def _split(blanked: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for piece in blanked.split(";"):
        end = start + len(piece)
        if piece.strip():
            spans.append((start, end))
        start = end + 1
    return spans


def statement_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each statement in ``text`` (split on ``;`` outside literals).

    The same split :func:`analyze` judges by, for tools that report per statement.
    """
    return _split(blank(text))


@dataclass(slots=True)
class _Acc:
    state: SessionState = SessionState.NONE
    pin: str | None = None
    changes: list[SettingChange] = field(default_factory=list)
    learn: list[str] = field(default_factory=list)
    reset_all: bool = False
    drops_prepared: bool = False
    tx_control: bool = False

    def reset(self) -> None:
        """RESET ALL: whatever the text changed before is undone."""
        self.reset_all = True
        self.changes.clear()
        self.learn.clear()

    def pins(self, reason: str, state: SessionState) -> None:
        self.state |= state
        if self.pin is None:
            self.pin = reason


def _setting_name(words: list[str], i: int) -> tuple[str | None, int]:
    """The setting named from ``words[i]`` on (keyword spellings included)."""
    for spelling, name in _SPECIAL_NAMES.items():
        if tuple(words[i : i + len(spelling)]) == spelling:
            return name, i + len(spelling)
    if i < len(words):
        return words[i], i + 1
    return None, i


def _set_statement(acc: _Acc, words: list[str], stmt: str) -> None:
    second = words[1] if len(words) > 1 else ""
    if second in ("local", "transaction", "constraints"):
        return  # ends with the transaction
    if words[1:3] == ["session", "authorization"] or words[2:4] == ["session", "authorization"]:
        acc.pins("SET SESSION AUTHORIZATION", _SETTING)
        return
    i = 2 if second == "session" else 1
    rest = words[i : i + 2]
    if rest[:1] == ["role"]:
        acc.pins("SET ROLE", _SETTING)
        return
    if rest == ["characteristics", "as"]:
        acc.state |= _SETTING
        acc.learn.extend(_CHARACTERISTICS)
        return
    name, j = _setting_name(words, i)
    acc.state |= _SETTING
    if name is None:
        acc.pins("SET", _SETTING)
        return
    value = words[j + 1 :] if words[j : j + 1] == ["to"] else words[j:]
    # ``SET x TO DEFAULT`` is a RESET; any other value is replayed verbatim.
    acc.changes.append(SettingChange(name, None if value == ["default"] else stmt.strip()))


def _reset_statement(acc: _Acc, words: list[str]) -> None:
    second = words[1:2]
    if second == ["all"]:
        acc.state |= _SETTING
        acc.reset()
        return
    if second == ["role"] or words[1:3] == ["session", "authorization"]:
        acc.state |= _SETTING
        return  # back to the login role: nothing new to keep
    name, _ = _setting_name(words, 1)
    acc.state |= _SETTING
    if name is not None:
        acc.changes.append(SettingChange(name, None))


def _statement(acc: _Acc, blanked: str, original: str) -> None:
    words = [w.lower() for w in _WORD.findall(blanked[:4000])]
    if not words:
        return
    first = words[0]
    second = words[1] if len(words) > 1 else ""
    if first in _TX_CONTROL or (first == "prepare" and second == "transaction"):
        acc.tx_control = True
    if first == "set":
        _set_statement(acc, words, original)
    elif first == "reset":
        _reset_statement(acc, words)
    elif first == "listen":
        acc.pins("LISTEN", SessionState.OTHER)
    elif first == "load":
        acc.pins("LOAD", SessionState.OTHER)
    elif first == "do":
        acc.pins("DO block", SessionState.OTHER)
    elif first == "discard":
        if second == "all":
            acc.reset()
            acc.drops_prepared = True
            acc.state |= _SETTING
    elif first == "prepare" and second != "transaction":
        acc.pins("PREPARE", SessionState.PREPARED)
    elif first == "declare" and _with_hold(words):
        acc.pins("DECLARE WITH HOLD", SessionState.OTHER)
    elif (
        first == "create"
        and ("temp" in words[1:4] or "temporary" in words[1:4])
        and not _on_commit_drop(words)
    ):
        acc.pins("temporary object", SessionState.TEMP)
    if _into_temp(words):
        acc.pins("temporary object", SessionState.TEMP)
    if _ADVISORY.search(blanked):
        acc.pins("session advisory lock", SessionState.LOCK)
    for match in _SET_CONFIG.finditer(blanked):
        _set_config(acc, original, match.end())


def _with_hold(words: list[str]) -> bool:
    return any(words[i] == "with" and words[i + 1] == "hold" for i in range(len(words) - 1))


def _on_commit_drop(words: list[str]) -> bool:
    return any(words[i : i + 3] == ["on", "commit", "drop"] for i in range(len(words) - 2))


def _into_temp(words: list[str]) -> bool:
    return any(
        words[i] == "into" and words[i + 1] in ("temp", "temporary") for i in range(len(words) - 1)
    )


def _set_config(acc: _Acc, original: str, args: int) -> None:
    match = _SET_CONFIG_NAME.match(original, args)
    if match is None:
        acc.pins("set_config with a computed name", _SETTING)
        return
    # set_config(name, value, true) is transaction-local. Anything else (false, or a
    # parameter) may change the session: read the value back after the transaction.
    rest = original[match.end() : match.end() + 400].lower()
    close = rest.find(")")
    if re.search(r",\s*true\s*$", rest[:close] if close >= 0 else rest):
        return
    acc.state |= _SETTING
    acc.learn.append(match.group(1).replace("''", "'").lower())


_SETTING = SessionState.SETTING
_TX_CONTROL = frozenset(
    ("begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release")
)


def analyze(sql: bytes | str) -> Analysis:
    """What ``sql`` (one or more statements) does to its session; see :class:`Analysis`."""
    raw = sql if isinstance(sql, bytes) else sql.encode()
    if not _SUSPECT.search(raw):
        return NOTHING
    text = raw.decode(errors="replace") if isinstance(sql, bytes) else sql
    blanked = blank(text)
    acc = _Acc()
    spans = _split(blanked)
    for start, end in spans:
        _statement(acc, blanked[start:end], text[start:end])
    count = len(spans)
    if (
        acc.state is SessionState.NONE
        and acc.pin is None
        and not acc.reset_all
        and not acc.changes
        and not acc.learn
    ):
        return NOTHING  # (a transaction-control statement alone changes no setting)
    return Analysis(
        state=acc.state,
        pin=acc.pin,
        changes=tuple(acc.changes),
        learn=tuple(dict.fromkeys(acc.learn)),
        reset_all=acc.reset_all,
        drops_prepared=acc.drops_prepared,
        statements=max(count, 1),
        tx_control=acc.tx_control,
    )


def classify_statement(sql: str) -> SessionState:
    """The kinds of session state ``sql`` may leave behind (the client library's view)."""
    return analyze(sql).state


def deallocate_target(sql: bytes) -> bytes | None:
    """The statement name of a lone ``DEALLOCATE [PREPARE] name`` (``b"ALL"`` for all)."""
    if b"eallocate" not in sql and b"EALLOCATE" not in sql:
        return None
    match = _DEALLOCATE.match(sql)
    if match is None:
        return None
    name = match.group(1)
    if name.startswith(b'"'):
        return name[1:-1].replace(b'""', b'"')
    if name.lower() == b"all":
        return b"ALL"
    return name.lower()
