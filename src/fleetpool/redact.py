# Strategy: secrets leave the process only by mistake, so every place that shows a URL,
# a DSN or a setting passes it through here first. One function per shape of text:
# URLs (a password in the netloc, secret-named query parameters), mappings of
# settings (values of secret-named keys), and the head of a SQL statement (its
# literals, which may hold a password or a token). What is hidden is replaced, never dropped,
# so the reader still sees that a secret is set.
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HIDDEN = "***"
# Parameter and setting names whose values are secrets (matched as substrings).
SECRET_WORDS = ("password", "passwd", "secret", "token", "access_key", "credential", "pwd")


def is_secret_name(name: str) -> bool:
    low = name.lower()
    return any(word in low for word in SECRET_WORDS)


def redact_url(url: str) -> str:
    """``url`` with its password and secret-named query values replaced by ``***``.

    Text that is not a URL comes back unchanged; a URL that cannot be parsed comes
    back as ``***`` entirely (it might hold a secret in a shape we do not know).
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return HIDDEN
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{HIDDEN}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, HIDDEN if is_secret_name(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing to hide (and urlunsplit would normalise sqlite:/// URLs)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` (nested) with secret-named values hidden and URLs redacted."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if is_secret_name(str(key)) and value not in ("", None, {}, []):
            out[key] = HIDDEN
        elif isinstance(value, Mapping):
            out[key] = redact_mapping(value)
        elif isinstance(value, str):
            out[key] = redact_url(value)
        elif isinstance(value, list | tuple):
            out[key] = [redact_url(v) if isinstance(v, str) else v for v in value]
        else:
            out[key] = value
    return out


# Quoted text of either engine ('...', "...", $tag$...$tag$), also when cut short by
# a truncation: the unterminated rest is hidden too. A backslash escape may end a
# literal early; the rest then reads as another literal, so more is hidden, not less.
_SQL_QUOTED = re.compile(
    r"'(?:[^']|'')*(?:'|$)|\"(?:[^\"]|\"\")*(?:\"|$)|\$([A-Za-z_]\w*|)\$.*?(?:\$\1\$|$)",
    re.S,
)


def sql_head(sql: str | bytes, words: int = 6, limit: int = 80) -> str:
    """The first ``words`` words of ``sql`` for a log line or a report, literals as ``'?'``.

    Enough to find the statement in the code that sent it (``SET search_path TO '?'``,
    ``SELECT pg_advisory_lock(42)``) without copying values, which may be secrets.
    Whitespace is folded; longer results are cut to ``limit`` characters.
    """
    text = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else sql
    text = _SQL_QUOTED.sub("'?'", text[: limit * 8])
    head = " ".join(text.split()[:words])
    return head if len(head) <= limit else head[: limit - 1] + "…"
