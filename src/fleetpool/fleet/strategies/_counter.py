"""The counter strategy's SQLite table: created and read by the emulator, updated by containers."""

from __future__ import annotations

import sqlite3


def init_counter(path: str, name: str, limit: int) -> None:
    """Create (or reset) the counter row: remaining = max = ``limit``."""
    with sqlite3.connect(path, timeout=10) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS counter "
            "(name TEXT PRIMARY KEY, remaining INTEGER NOT NULL, max INTEGER NOT NULL)"
        )
        db.execute("INSERT OR REPLACE INTO counter VALUES (?, ?, ?)", (name, limit, limit))


def read_counter(path: str, name: str) -> int | None:
    try:
        with sqlite3.connect(path, timeout=2) as db:
            row = db.execute("SELECT remaining FROM counter WHERE name = ?", (name,)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else int(row[0])
