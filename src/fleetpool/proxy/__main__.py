"""``python -m fleetpool.proxy --listen HOST:PORT --upstream postgresql://...``"""

from __future__ import annotations

from .cli import app


def main() -> None:
    app(prog_name="python -m fleetpool.proxy")


if __name__ == "__main__":
    main()
