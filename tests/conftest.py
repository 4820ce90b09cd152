"""The root conftest: fixture plugins for every test, and the ``integration`` marker.

Fixtures live in plugin modules listed below (``tests/fix_servers.py``: throwaway
PostgreSQL, MariaDB, Redis and moto servers). Tests import the server classes from
the ``fleetpool_testing`` package and their helpers as modules of the ``tests``
package (the repository root is on ``sys.path`` through pytest's ``pythonpath``).
Tests under tests/integration are marked ``integration`` automatically.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.fix_servers"]

INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)
