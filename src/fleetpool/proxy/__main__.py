"""``python -m fleetpool.proxy --listen HOST:PORT --upstream postgresql://...``"""

from __future__ import annotations

import sys

from .cli import app


def main() -> None:
    from ..cli import run, split_debug

    args, debug = split_debug(sys.argv[1:])
    raise SystemExit(run(app, args, "python -m fleetpool.proxy", debug))


if __name__ == "__main__":
    main()
