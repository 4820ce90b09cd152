# Strategy: decide from SQL text alone whether a statement leaves state in the server
# session that outlives its transaction (and so must pin the client to its server
# connection). A cheap byte-regex pre-check runs on every query; only texts that
# mention a suspicious keyword get the slower pass, which blanks out comments and
# literals, splits statements on ``;`` and looks at each statement's leading words.
# False positives only cost multiplexing (a pinned client); false negatives would
# leak state between clients, so when in doubt we pin.
from __future__ import annotations

import re
from dataclasses import dataclass

_SUSPECT = re.compile(
    rb"(?i)\b(?:set|reset|listen|load|discard|prepare|deallocate|temp|temporary|hold)\b"
    rb"|advisory_lock|set_config"
)
# Pre-filter for the hot path: lower-cased text, one leading character class, no
# IGNORECASE and no word boundaries -- about three times faster than _SUSPECT on
# typical OLTP statements. Spurious matches only cost a call to session_effect().
_FAST = re.compile(rb"[adhlpst](?:et|emp|isten|oad|iscard|repare|ealloc|old|dvisory)")


# Even _FAST costs about 0.6 µs on a typical statement, a large share of the proxy's
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
    """Cheap check on ``data[start:end]``: False means session_effect() is None."""
    folded = data[start:end].translate(_FOLD)
    verdict = _memo.get(folded)
    if verdict is None:
        verdict = _FAST.search(folded) is not None
        if end - start <= _MEMO_TEXT:
            if len(_memo) >= _MEMO_SIZE:
                _memo.clear()  # a workload of ever-new shapes: start over, stay bounded
            _memo[folded] = verdict
    return verdict


_LITERALS = re.compile(
    r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$([A-Za-z_]*)\$.*?\$\1\$",
    re.S,
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_ADVISORY = re.compile(r"(?i)\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(")
_SET_CONFIG = re.compile(r"(?i)\bset_config\s*\(([^()]*)\)")
_DEALLOCATE = re.compile(
    rb"(?is)^\s*deallocate\s+(?:prepare\s+)?(\"(?:[^\"]|\"\")+\"|[a-z_][a-z_0-9$]*)\s*;?\s*$"
)


@dataclass(frozen=True, slots=True)
class SessionEffect:
    """What a statement does to the session.

    ``pins``: it leaves state behind (the client must keep its server connection).
    RESET and DISCARD do not pin -- they restore defaults -- but the proxy must forget
    what it knew: ``resets_params`` (settings it applied) and ``drops_prepared``
    (statements it prepared on that connection).
    """

    reason: str
    is_variable_set: bool = False
    drops_prepared: bool = False
    resets_params: bool = False
    pins: bool = True


def _blank(text: str) -> str:
    # Keep identifiers in double quotes out of keyword matching, and literals too.
    return _LITERALS.sub(" ", text)


def _statement_effect(words: list[str], stmt: str) -> SessionEffect | None:
    if not words:
        return None
    first = words[0]
    second = words[1] if len(words) > 1 else ""
    if first == "set":
        if second in ("local", "transaction", "constraints"):
            return None
        return SessionEffect("SET", is_variable_set=True)
    if first == "reset":
        return SessionEffect("RESET", resets_params=True, pins=False)
    if first == "listen":
        return SessionEffect("LISTEN")
    if first == "load":
        return SessionEffect("LOAD")
    if first == "discard":
        everything = second == "all"
        return SessionEffect(
            "DISCARD", drops_prepared=everything, resets_params=everything, pins=False
        )
    if first == "prepare" and second != "transaction":
        return SessionEffect("PREPARE")
    if first == "declare" and "hold" in words and "with" in words:
        idx = words.index("hold")
        if idx > 0 and words[idx - 1] == "with":
            return SessionEffect("DECLARE WITH HOLD")
    if first == "create" and ("temp" in words[1:4] or "temporary" in words[1:4]):
        if "on commit drop" in " ".join(words):
            return None
        return SessionEffect("temporary object")
    if first == "select" and "into" in words:
        idx = words.index("into")
        if idx + 1 < len(words) and words[idx + 1] in ("temp", "temporary"):
            return SessionEffect("temporary object")
    if _ADVISORY.search(stmt):
        return SessionEffect("session advisory lock")
    for match in _SET_CONFIG.finditer(stmt):
        if "true" not in match.group(1).lower():
            return SessionEffect("set_config", is_variable_set=True)
    return None


def session_effect(sql: bytes, exclude_variable_sets: bool = False) -> SessionEffect | None:
    """The session-state effect of ``sql`` (one or more statements), or ``None``.

    A pinning effect wins over non-pinning ones; otherwise the flags of all
    non-pinning statements are merged.

    ``exclude_variable_sets`` ignores SET/RESET/set_config (RDS Proxy's
    ``EXCLUDE_VARIABLE_SETS`` filter): the caller accepts that such settings leak.
    """
    if not _SUSPECT.search(sql):
        return None
    text = _blank(sql.decode(errors="replace"))
    merged: SessionEffect | None = None
    for stmt in text.split(";"):
        words = [w.lower() for w in _WORD.findall(stmt[:2000])]
        effect = _statement_effect(words, stmt)
        if effect is None:
            # advisory locks may appear deep in a statement
            if _ADVISORY.search(stmt):
                effect = SessionEffect("session advisory lock")
            else:
                continue
        if exclude_variable_sets and effect.is_variable_set:
            continue
        if effect.pins:
            return effect
        if merged is None:
            merged = effect
        else:
            merged = SessionEffect(
                merged.reason,
                drops_prepared=merged.drops_prepared or effect.drops_prepared,
                resets_params=merged.resets_params or effect.resets_params,
                pins=False,
            )
    return merged


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
