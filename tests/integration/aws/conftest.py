"""Fixtures for the AWS tests: the arm64 / python3.12 layer, built once per session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def arm64_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's layer, built through the command line (pip's cache keeps it quick)."""
    out = tmp_path_factory.mktemp("arm64-layer") / "fleetpool-layer.zip"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetpool.cli",
            "layer",
            "build",
            "--runtime",
            "python3.12",
            "--arch",
            "arm64",
            "--extras",
            "postgres,aws",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MB zipped" in done.stdout and "MB unzipped" in done.stdout
    return out
