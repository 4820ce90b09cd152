"""``python -m fleetpool.proxy --listen HOST:PORT --upstream postgresql://...``"""

from __future__ import annotations

import typer

from .cli import proxy_command


def main() -> None:
    typer.run(proxy_command)


if __name__ == "__main__":
    main()
