# Strategy: find the SQL a program sends without running it. Python files are read
# with ``ast`` (never imported): the first argument of an execute-like call -- DB-API
# ``execute``/``executemany``, SQLAlchemy ``text()``/``exec_driver_sql``, Django
# ``raw``/``RawSQL``, asyncpg's ``fetch*`` -- when it is a string the source spells
# out: a literal, an f-string (each ``{...}`` read as a bare word), literals joined
# with ``+`` or ``%``, or a name assigned one such string in the same file. Anything
# computed at run time is out of reach (the proxy's pin log covers it). ``.sql`` files
# are read whole. Each piece of SQL keeps the line of its literal, so a report points
# at the code to change.
#
# The engine of a Python file is guessed from the drivers it imports; a file that
# imports none (Django, SQLAlchemy) or both, and a ``.sql`` file, is judged for both
# engines unless the caller names one or the file says ``fleetpool-lint:
# engine=postgresql`` (or mysql) in a comment in its first lines. A line with
# ``fleetpool-lint: ignore`` is not reported (a pin accepted on purpose).
from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

ENGINES = ("postgresql", "mysql")

#: Calls whose first argument is SQL (matched on the function's or method's name).
EXECUTE_CALLS = frozenset(
    {
        "execute",
        "executemany",
        "executescript",
        "exec_driver_sql",
        "text",
        "raw",
        "RawSQL",
        "fetch",
        "fetchrow",
        "fetchval",
    }
)
#: Keyword names that carry the SQL when it is not passed positionally.
SQL_KEYWORDS = ("sql", "query", "statement", "raw_query", "operation")

#: Top-level modules that tell a file's engine.
DRIVER_ENGINES = {
    "psycopg": "postgresql",
    "psycopg2": "postgresql",
    "asyncpg": "postgresql",
    "pg8000": "postgresql",
    "pymysql": "mysql",
    "MySQLdb": "mysql",
    "mysql": "mysql",  # mysql.connector
    "aiomysql": "mysql",
    "asyncmy": "mysql",
    "mariadb": "mysql",
}
#: Directories never walked into.
SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", "site-packages", ".tox"}
)


@dataclass(frozen=True)
class Snippet:
    """A piece of SQL found in a file: ``line`` is where its text starts (1-based).

    ``ignored``: lines of the file marked ``fleetpool-lint: ignore``.
    """

    path: str
    line: int
    sql: str
    engines: tuple[str, ...]
    ignored: frozenset[int] = frozenset()


_ENGINE_HINT = re.compile(r"fleetpool-lint:\s*engine\s*=\s*([A-Za-z]+)")
_IGNORE = "fleetpool-lint: ignore"
_HINT_LINES = 5


@dataclass(frozen=True)
class Skipped:
    """A file that could not be read, and why."""

    path: str
    error: str


def iter_files(paths: list[str]) -> Iterator[Path]:
    """The ``.py`` and ``.sql`` files named by ``paths`` (directories are walked)."""
    for name in paths:
        path = Path(name)
        if path.is_file():
            yield path
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
                for file in sorted(files):
                    if file.endswith((".py", ".sql")):
                        yield Path(root) / file
        else:
            raise ConfigError(f"{name}: no such file or directory (give .py/.sql files or dirs)")


def snippets(path: Path, engine: str | None = None) -> list[Snippet]:
    """The SQL in ``path`` (``engine``: judge it for this one, else guess)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    ignored = frozenset(i for i, line in enumerate(lines, 1) if _IGNORE in line)
    if engine is None:
        hint = _ENGINE_HINT.search("\n".join(lines[:_HINT_LINES]))
        if hint is not None:
            engine = hint.group(1).lower()
            if engine not in ENGINES:
                raise ConfigError(
                    f"{path}: fleetpool-lint: engine={engine}: expected one of {', '.join(ENGINES)}"
                )
    if path.suffix == ".sql":
        return [Snippet(str(path), 1, text, (engine,) if engine else ENGINES, ignored)]
    tree = ast.parse(text, str(path))
    engines = (engine,) if engine else guess_engines(tree)
    return [Snippet(str(path), line, sql, engines, ignored) for line, sql in python_sql(tree)]


def guess_engines(tree: ast.AST) -> tuple[str, ...]:
    """The engines of the drivers ``tree`` imports (both when none or both)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for name in names:
            engine = DRIVER_ENGINES.get(name.split(".", 1)[0])
            if engine is not None:
                found.add(engine)
    return tuple(e for e in ENGINES if e in found) if len(found) == 1 else ENGINES


def python_sql(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, sql)`` for each string passed to an execute-like call in ``tree``."""
    assigned = _string_assignments(tree)
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (
            func.attr
            if isinstance(func, ast.Attribute)
            else func.id
            if isinstance(func, ast.Name)
            else None
        )
        if name not in EXECUTE_CALLS:
            continue
        arg = node.args[0] if node.args else None
        if arg is None:
            arg = next((k.value for k in node.keywords if k.arg in SQL_KEYWORDS), None)
        if arg is None:
            continue
        if isinstance(arg, ast.Name) and arg.id in assigned:
            out.append(assigned[arg.id])
            continue
        sql = string_value(arg)
        if sql is not None:
            out.append((arg.lineno, sql))
    return sorted(set(out))


def _string_assignments(tree: ast.AST) -> dict[str, tuple[int, str]]:
    """Names assigned exactly one spelled-out string in the file (``SQL = "..."``)."""
    seen: dict[str, list[tuple[int, str] | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            sql = string_value(value)
            seen.setdefault(target.id, []).append((value.lineno, sql) if sql is not None else None)
    return {
        name: values[0]
        for name, values in seen.items()
        if len(values) == 1 and values[0] is not None
    }


def string_value(node: ast.AST) -> str | None:
    """The text of a string the source spells out, or None (see the module comment)."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            else:
                parts.append("x")  # an interpolated value: a bare word keeps the shape
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = string_value(node.left), string_value(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return string_value(node.left)  # "... %s" % (values,): the template
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    ):
        return string_value(node.func.value)  # "...{}".format(values): the template
    return None
