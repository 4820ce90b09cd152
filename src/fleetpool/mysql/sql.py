# Strategy: ONE reading of MySQL/MariaDB statement text for everything that cares what
# a statement leaves behind in its session: the client library (which resets its
# connection before the next invocation) and the proxy (which pins a client to its
# server connection, or tracks and replays settings instead).
#
# ``classify(sql)`` tokenizes the text the way the server does where it matters --
# string literals (with and without backslash escapes), backquoted identifiers,
# ``#``/``-- ``/``/* */`` comments, and ``/*! ... */`` / ``/*M! ... */`` version
# comments, whose content the server DOES execute -- splits it on ``;`` into
# statements, and judges each from its leading words plus a few things that count
# wherever they appear (user variables, GET_LOCK, SQL_CALC_FOUND_ROWS, FOUND_ROWS()...).
# The verdicts of all statements are merged. False positives only cost a reset or a
# pin; false negatives would leak state between clients, so when in doubt it pins.
# A stored routine's body (CALL) is invisible here; the proxy's second line of
# defence is the server's own report (session_track_state_change in OK packets).
#
# The hot path uses ``might_affect_session`` first: one translate + dict lookup for a
# statement shape seen before, else one regex scan. Verdicts are memoized on the text
# folded to lower case with every digit mapped to "0": keywords contain no digits, so
# two texts with the same fold get the same clean/not-clean verdict.
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from ..engines import SessionState

# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """A session setting the proxy can replay on another connection instead of pinning.

    ``name`` is a lower-case system variable name, or one of ``names``,
    ``character set``, ``transaction`` (SET SESSION TRANSACTION ...) and ``database``
    (USE); ``value`` is the text as written (an expression, or the rest of the clause).
    """

    name: str
    value: str

    def sql(self) -> str:
        """A statement that sets the same thing on another connection."""
        if self.name == "database":
            return "USE `" + self.value.replace("`", "``") + "`"
        if self.name == "names":
            return f"SET NAMES {self.value}"
        if self.name == "character set":
            return f"SET CHARACTER SET {self.value}"
        if self.name == "transaction":
            return f"SET SESSION TRANSACTION {self.value}"
        return f"SET SESSION {self.name} = {self.value}"


@dataclass(frozen=True, slots=True)
class StatementEffect:
    """What a statement text (one or more statements) does to its session.

    * ``state``: the kinds of state left behind (the client library resets on any).
    * ``pin``: why the proxy must keep the client on its server connection, or None.
    * ``settings``: session settings to track and replay (when nothing pins).
    * ``next_transaction``: SET TRANSACTION without SESSION -- characteristics of the
      next transaction only: keep the client on its connection until that
      transaction ends.
    * ``depends_on_previous``: the result depends on the previous statement of the
      same session (LAST_INSERT_ID(), ROW_COUNT(), FOUND_ROWS(), @@identity): run it
      on the connection the client used last, if it still can.
    """

    state: SessionState = SessionState.NONE
    pin: str | None = None
    settings: tuple[Setting, ...] = ()
    next_transaction: bool = False
    depends_on_previous: bool = False

    def __bool__(self) -> bool:
        return (
            bool(self.state or self.pin or self.settings or self.next_transaction)
            or self.depends_on_previous
        )


NO_EFFECT: Final = StatementEffect()

#: System variables whose value cannot simply be replayed on another connection:
#: setting them pins the client (reason "SET <name>").
UNREPLAYABLE_VARIABLES: Final = frozenset(
    {
        "sql_log_bin",
        "timestamp",
        "insert_id",
        "last_insert_id",
        "identity",
        "rand_seed1",
        "rand_seed2",
        "pseudo_thread_id",
        "pseudo_slave_mode",
        "pseudo_replica_mode",
        "gtid_next",
        "gtid_seq_no",
        "gtid_domain_id",
        "server_id",
        "session_track_system_variables",
        "session_track_schema",
        "session_track_state_change",
        "session_track_transaction_info",
        "session_track_gtids",
        "wsrep_on",
        "debug",
        "debug_sync",
    }
)

# -- tokenizer -------------------------------------------------------------------------------

_NAME = r"[A-Za-z0-9_$\u0080-\uffff]+"
_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<vc>/\*[Mm]?!\d*)
    | (?P<vce>\*/)
    | (?P<comment>/\*.*?\*/|\#[^\n]*|--(?:[ \t\r\f\v\x00-\x08][^\n]*|(?=\n)|$))
    | (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<ident>`(?:[^`]|``)*`)
    | (?P<sysvar>@@(?:`(?:[^`]|``)*`|"""
    + _NAME
    + r""")(?:\.(?:`(?:[^`]|``)*`|"""
    + _NAME
    + r"""))?)
    | (?P<uservar>@(?:`(?:[^`]|``)*`|'(?:[^']|'')*'|"(?:[^"]|"")*"|[A-Za-z0-9_$.\u0080-\uffff]+)?)
    | (?P<word>"""
    + _NAME
    + r""")
    | (?P<semi>;)
    | (?P<op>:=|<=>|[<>!]=|.)
    """,
    re.S | re.X,
)


@dataclass(slots=True)
class _Tok:
    kind: str  # word and sysvar (lower-cased), str, ident, uservar, op
    text: str
    start: int
    end: int


def _tokens(sql: str) -> list[list[_Tok]]:
    """Statements as token lists: comments dropped, version comments opened.

    Literals are read with backslash escapes; an unterminated one is read as code
    (more words visible, never fewer).
    """
    statements: list[list[_Tok]] = [[]]
    in_version_comment = False
    pos = 0
    n = len(sql)
    match = _TOKEN.match
    while pos < n:
        m = match(sql, pos)
        assert m is not None  # the last alternative matches any character
        kind = m.lastgroup or "op"
        pos = m.end()
        if kind == "ws" or kind == "comment":
            continue
        if kind == "vc":
            in_version_comment = True
            continue
        if kind == "vce":
            if in_version_comment:
                in_version_comment = False
                continue
            kind = "op"
        if kind == "semi":
            statements.append([])
            continue
        text = m.group()
        if kind == "word" or kind == "sysvar":
            text = text.lower()
        statements[-1].append(_Tok(kind, text, m.start(), pos))
    return [s for s in statements if s]


def _without_escapes(sql: str) -> str:
    """``sql`` with the backslashes inside NO_BACKSLASH_ESCAPES literals made harmless.

    Same length, so the escape-aware tokenizer then reads literals as a server in
    NO_BACKSLASH_ESCAPES mode does (a backslash does not escape the closing quote).
    """
    out: list[str] = []
    pos = 0
    for m in _RAW_LITERAL.finditer(sql):
        if m.group()[0] in "'\"":
            out.append(sql[pos : m.start()])
            out.append(m.group().replace("\\", "_"))
            pos = m.end()
    out.append(sql[pos:])
    return "".join(out)


_RAW_LITERAL = re.compile(
    r"/\*(?![Mm]?!).*?\*/|\#[^\n]*|--[ \t][^\n]*|`(?:[^`]|``)*`|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"",
    re.S,
)

# -- statement judgement ---------------------------------------------------------------------

_SCOPES: Final = {
    "global": "global",
    "persist": "global",
    "persist_only": "global",
    "session": "session",
    "local": "session",
}
_LOCK_FUNCTIONS: Final = frozenset({"get_lock", "release_lock", "release_all_locks"})
_PREVIOUS_FUNCTIONS: Final = frozenset({"found_rows", "row_count", "last_insert_id"})
_ACCOUNT_PARTS: Final = frozenset({"str", "ident", "word"})
_PREVIOUS_VARIABLES: Final = frozenset({"@@identity", "@@last_insert_id", "@@session.identity"})


@dataclass(slots=True)
class _Verdict:
    state: SessionState = SessionState.NONE
    pin: str | None = None
    settings: list[Setting] = field(default_factory=list)
    next_transaction: bool = False
    depends_on_previous: bool = False

    def pin_for(self, reason: str, state: SessionState = SessionState.NONE) -> None:
        self.state |= state
        if self.pin is None:
            self.pin = reason


def _unquote(tok: _Tok) -> str:
    if tok.kind == "ident":
        return tok.text[1:-1].replace("``", "`")
    if tok.kind == "str":
        return tok.text[1:-1]
    return tok.text


def _split_commas(toks: list[_Tok]) -> list[list[_Tok]]:
    parts: list[list[_Tok]] = [[]]
    depth = 0
    for t in toks:
        if t.kind == "op":
            if t.text == "(":
                depth += 1
            elif t.text == ")":
                depth -= 1
            elif t.text == "," and depth <= 0:
                parts.append([])
                continue
        parts[-1].append(t)
    return [p for p in parts if p]


def _span(sql: str, toks: list[_Tok]) -> str:
    return sql[toks[0].start : toks[-1].end].strip() if toks else ""


def _judge_set(sql: str, toks: list[_Tok], v: _Verdict) -> None:
    """``toks`` follow the SET keyword."""
    if not toks:
        return
    first = toks[0].text if toks[0].kind == "word" else ""
    second = toks[1].text if len(toks) > 1 and toks[1].kind == "word" else ""
    if first == "transaction":
        v.next_transaction = True
        v.state |= SessionState.SETTING
        return
    if first in _SCOPES and second == "transaction":
        if _SCOPES[first] == "session":
            v.state |= SessionState.SETTING
            v.settings.append(Setting("transaction", _span(sql, toks[2:])))
        return
    if first == "role":
        v.pin_for("SET ROLE", SessionState.SETTING)
        return
    if first in ("password", "default"):  # SET PASSWORD, SET DEFAULT ROLE: the account
        return
    if first == "resource" and second == "group":
        v.pin_for("SET RESOURCE GROUP", SessionState.SETTING)
        return
    if first == "statement":
        # MariaDB SET STATEMENT var=value[, ...] FOR <statement>: per statement only.
        depth = 0
        for i, t in enumerate(toks):
            if t.kind == "op" and t.text in "()":
                depth += 1 if t.text == "(" else -1
            elif t.kind == "word" and t.text == "for" and depth == 0:
                _judge(sql, toks[i + 1 :], v)
                return
        return
    scope = "session"
    for item in _split_commas(toks):
        head = item[0]
        if head.kind == "word" and head.text in _SCOPES and len(item) > 1:
            scope = _SCOPES[head.text]
            item = item[1:]
            head = item[0]
        if head.kind == "word" and head.text == "names":
            if scope == "session":
                v.state |= SessionState.SETTING
                v.settings.append(Setting("names", _span(sql, item[1:])))
            continue
        if head.kind == "word" and head.text in ("charset", "character"):
            rest = item[2:] if head.text == "character" else item[1:]
            v.state |= SessionState.SETTING
            v.settings.append(Setting("character set", _span(sql, rest)))
            continue
        if head.kind == "uservar":
            v.pin_for("user variable", SessionState.VARIABLE)
            continue
        # The variable name: @@[scope.]name, or name[.component], up to = or :=.
        eq = next((i for i, t in enumerate(item) if t.kind == "op" and t.text in ("=", ":=")), -1)
        if eq < 1:
            # Not an assignment we understand: keep the client where it is.
            v.pin_for("SET " + _span(sql, item)[:40], SessionState.SETTING)
            continue
        item_scope = scope
        if head.kind == "sysvar":
            name = head.text[2:]
            prefix, dot, unscoped = name.partition(".")
            if dot and prefix in _SCOPES:
                item_scope = _SCOPES[prefix]
                name = unscoped
            name = name.strip("`") + "".join(_unquote(t) for t in item[1:eq])
        else:
            name = "".join(_unquote(t) for t in item[:eq]).lower()
        if item_scope == "global":
            continue
        v.state |= SessionState.SETTING
        if name in UNREPLAYABLE_VARIABLES:
            v.pin_for(f"SET {name}")
            continue
        v.settings.append(Setting(name, _span(sql, item[eq + 1 :])))


def _assigns(toks: list[_Tok], i: int) -> bool:
    """Whether the user variable at ``toks[i]`` may be assigned (not only read).

    Reading one leaves nothing behind (a variable the client set earlier already pinned
    it); ``@v := ...``, ``INTO @a, @b``, a CALL's arguments (OUT parameters) and LOAD
    DATA's column list assign.
    """
    nxt = toks[i + 1] if i + 1 < len(toks) else None
    if nxt is not None and nxt.text == ":=":
        return True
    first = toks[0].text if toks[0].kind == "word" else ""
    if first in ("call", "load"):
        return True
    j = i - 1
    while j >= 0 and (toks[j].kind == "uservar" or toks[j].text == ","):
        j -= 1
    return j >= 0 and toks[j].kind == "word" and toks[j].text == "into"


def _judge(sql: str, toks: list[_Tok], v: _Verdict) -> None:
    """Judge one statement's tokens (from its first word), updating ``v``."""
    # Things that count wherever they appear.
    for i, t in enumerate(toks):
        kind = t.kind
        if kind == "uservar":
            prev = toks[i - 1] if i else None
            if prev is not None and prev.end == t.start and prev.kind in _ACCOUNT_PARTS:
                continue  # 'user'@'host', an account name, not a variable
            if _assigns(toks, i):
                v.pin_for("user variable", SessionState.VARIABLE)
        elif kind == "sysvar":
            if t.text in _PREVIOUS_VARIABLES:
                v.depends_on_previous = True
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if nxt is not None and nxt.text == ":=" and toks[0].text != "set":
                v.state |= SessionState.SETTING
                v.pin_for("system variable assignment")
        elif kind == "word":
            word = t.text
            called = i + 1 < len(toks) and toks[i + 1].text == "("
            if called and word in _LOCK_FUNCTIONS:
                v.pin_for("GET_LOCK", SessionState.LOCK)
            elif called and word in _PREVIOUS_FUNCTIONS:
                v.depends_on_previous = True
            elif word == "sql_calc_found_rows":
                v.pin_for("SQL_CALC_FOUND_ROWS")
    # Leading words; parentheses may open a statement: (SELECT ...) UNION ...
    start = 0
    while start < len(toks) and toks[start].kind == "op" and toks[start].text == "(":
        start += 1
    words = [t.text if t.kind == "word" else "" for t in toks[start : start + 8]]
    if not words or not words[0]:
        return
    w0 = words[0]
    w = words + [""] * 8
    if w0 == "set":
        _judge_set(sql, toks[start + 1 :], v)
    elif w0 == "use":
        if len(toks) > start + 1:
            v.state |= SessionState.DATABASE
            v.settings.append(Setting("database", _unquote(toks[start + 1])))
    elif w0 == "create":
        rest = w[1:5]
        if "temporary" in rest[:3]:
            v.pin_for("temporary table", SessionState.TEMP)
    elif w0 == "lock" and w[1] in ("table", "tables", "instance"):
        v.pin_for("LOCK TABLES", SessionState.LOCK)
    elif w0 == "flush":
        tail = [t.text for t in toks[start:] if t.kind == "word"]
        if ("lock" in tail and "read" in tail) or "export" in tail:
            v.pin_for("FLUSH TABLES WITH READ LOCK", SessionState.LOCK)
    elif w0 == "backup" and w[1] in ("lock", "stage"):
        v.pin_for("BACKUP " + w[1].upper(), SessionState.LOCK)
    elif w0 == "prepare":
        v.pin_for("PREPARE", SessionState.PREPARED)
    elif w0 == "execute":
        if w[1] == "immediate":
            v.pin_for("EXECUTE IMMEDIATE", SessionState.OTHER)
        else:
            v.pin_for("PREPARE", SessionState.PREPARED)
    elif w0 == "deallocate" or (w0 == "drop" and w[1] == "prepare"):
        v.pin_for("PREPARE")
    elif w0 == "xa":
        v.pin_for("XA", SessionState.OTHER)
    elif w0 == "handler":
        v.pin_for("HANDLER", SessionState.OTHER)
    elif w0 == "load" and w[1] in ("data", "xml") and "local" in w[2:5]:
        v.pin_for("LOAD DATA LOCAL")


def _classify_text(sql: str) -> _Verdict:
    v = _Verdict()
    for statement in _tokens(sql):
        _judge(sql, statement, v)
    return v


def classify(sql: str | bytes, backslash_escapes: bool | None = None) -> StatementEffect:
    """What ``sql`` (one or more statements) does to its session; NO_EFFECT if nothing.

    ``backslash_escapes``: whether the session reads ``\\`` in literals as an escape
    (False under sql_mode NO_BACKSLASH_ESCAPES, which OK packets report as
    SERVER_STATUS_NO_BACKSLASH_ESCAPES). None when unknown: a text whose literals
    contain a backslash is then judged both ways and the verdicts merged.
    """
    text = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else sql
    if not _FAST_STR.search(text.lower()):
        return NO_EFFECT
    if backslash_escapes is False:
        v = _classify_text(_without_escapes(text))
    else:
        v = _classify_text(text)
        if backslash_escapes is None and "\\" in text:
            other = _classify_text(_without_escapes(text))
            v.state |= other.state
            v.pin = v.pin or other.pin
            v.next_transaction |= other.next_transaction
            v.depends_on_previous |= other.depends_on_previous
            if [s.name for s in other.settings] != [s.name for s in v.settings]:
                v.pin_for("ambiguous string literal")
    if not (v.state or v.pin or v.settings or v.next_transaction or v.depends_on_previous):
        return NO_EFFECT
    return StatementEffect(
        v.state, v.pin, tuple(v.settings), v.next_transaction, v.depends_on_previous
    )


def statement_spans(sql: str, backslash_escapes: bool = True) -> list[tuple[int, int]]:
    """``(start, end)`` of each statement in ``sql``, split as :func:`classify` splits it.

    A statement runs from its first token to its last (leading comments excluded).
    ``backslash_escapes`` as for :func:`classify` (a text with a backslash in a
    literal may split differently under NO_BACKSLASH_ESCAPES).
    """
    text = sql if backslash_escapes else _without_escapes(sql)
    return [(toks[0].start, toks[-1].end) for toks in _tokens(text)]


def blank(sql: str, backslash_escapes: bool = True) -> str:
    """``sql`` with comments, string literals and backquoted identifiers as spaces.

    Same length as ``sql``; the content of ``/*! ... */`` version comments, which the
    server runs, is kept (only the comment markers go).
    """
    out = [" "] * len(sql)
    for toks in _tokens(sql if backslash_escapes else _without_escapes(sql)):
        for t in toks:
            if t.kind not in ("str", "ident"):
                out[t.start : t.end] = sql[t.start : t.end]
    return "".join(out)


def session_state(sql: str) -> SessionState:
    """The kinds of session state ``sql`` may leave behind (what the client library needs)."""
    return classify(sql).state


# -- hot-path pre-filter ---------------------------------------------------------------------

_SUSPECT_WORDS = (
    r"@|\b(?:set|use|temporary|lock|tables|get_lock|release_lock|release_all_locks|prepare"
    r"|execute|deallocate|handler|xa|load|sql_calc_found_rows|found_rows|row_count"
    r"|last_insert_id|backup|flush)\b"
)
_FAST: Final = re.compile(_SUSPECT_WORDS.encode())
_FAST_STR: Final = re.compile(_SUSPECT_WORDS)
_FOLD: Final = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ123456789", b"abcdefghijklmnopqrstuvwxyz000000000"
)
_MEMO_TEXT: Final = 512
_MEMO_SIZE: Final = 2048
_memo: dict[bytes, bool] = {}


def might_affect_session(data: bytes | bytearray | memoryview, start: int, end: int) -> bool:
    """Cheap check on ``data[start:end]`` (a COM_QUERY's SQL): False means classify() is NO_EFFECT.

    A shape seen before costs a translate and a dict lookup; a new one a regex scan,
    and a full classification when the scan finds a suspicious word (so ``UPDATE t
    SET ...`` is judged once per shape, not once per execution).
    """
    folded = bytes(data[start:end]).translate(_FOLD)
    verdict = _memo.get(folded)
    if verdict is not None:
        return verdict
    verdict = _FAST.search(folded) is not None and bool(classify(bytes(data[start:end])))
    if end - start <= _MEMO_TEXT:
        if len(_memo) >= _MEMO_SIZE:
            _memo.clear()  # a workload of ever-new shapes: start over, stay bounded
        _memo[folded] = verdict
    return verdict
