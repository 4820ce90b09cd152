"""Containers import the test handlers (``fleet_test_handlers``) by module name.

pytest's importlib mode does not put this folder on ``sys.path``; the containers
inherit the parent's ``sys.path``, so adding it here reaches them too.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
