"""Each benchmark run's figures, kept as a JSON file under ``benchmarks/results/``.

Strategy: the README quotes figures from named run files, so every figure can be
traced to the command, the commit and the machine (CPUs, load) that produced it,
and runs of the same sitting can be compared side by side. The folder is
git-ignored: the files are evidence for a write-up, not source.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def _commit() -> str | None:
    """HEAD of the repository, with ``-dirty`` when the worktree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def save(benchmark: str, figures: Any, started: datetime.datetime) -> Path:
    """Write ``figures`` (JSON-serialisable) for one run of ``benchmark``; return the path."""
    finished = datetime.datetime.now(datetime.UTC)
    record = {
        "benchmark": benchmark,
        "command": [f"python -m benchmarks.{benchmark}", *sys.argv[1:]],
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "commit": _commit(),
        "python": platform.python_version(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
        },
        "figures": figures,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{benchmark}-{started.strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


__all__ = ["RESULTS_DIR", "now", "save"]
