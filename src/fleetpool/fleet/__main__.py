"""``python -m fleetpool.fleet demo | simulate`` -- the fleet commands without the main CLI."""

from __future__ import annotations

from .cli import app

if __name__ == "__main__":
    app()()
