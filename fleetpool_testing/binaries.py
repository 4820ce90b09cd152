"""Finding the server binaries: Debian packages, the ``pgserver`` wheel, PATH and sbin.

Strategy: a missing binary is an explanation, not a crash: ``MissingBinary`` names the
Debian package to install, and the fixtures turn it into a skip. Nothing is installed
from here (``scripts/test`` installs the system packages, as root, before pytest runs).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .processes import run_user, user_kwargs

# Which Debian package provides each binary we may need.
DEBIAN_PACKAGES: dict[str, str] = {
    "initdb": "postgresql",
    "postgres": "postgresql",
    "pg_ctl": "postgresql",
    "pg_basebackup": "postgresql",
    "psql": "postgresql-client",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "redis-server": "redis-server",
    "pgbouncer": "pgbouncer",
    "chromium": "chromium",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "systemd-analyze": "systemd",
}
_PG_BINARIES = {"initdb", "postgres", "pg_ctl", "pg_basebackup", "psql"}
# Daemons live in sbin, which a non-root PATH often lacks.
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class MissingBinary(RuntimeError):
    """A server binary is not installed; the message says which Debian package to install."""

    def __init__(self, binary: str, package: str, detail: str = "") -> None:
        self.binary = binary
        self.package = package
        msg = (
            f"`{binary}` not found: install the Debian package {package!r} "
            f"(sudo apt-get install -y {package})"
        )
        super().__init__(msg + (f"; {detail}" if detail else ""))


def which(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_PATH])
    return shutil.which(name, path=path)


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path)) or (0,)


def _pg_candidates() -> Iterator[Path]:
    if env := os.environ.get("FLEETPOOL_PG_BINDIR"):
        yield Path(env)
    if pg_config := which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            yield Path(out.stdout.strip())
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        yield Path(d)
    spec = importlib.util.find_spec("pgserver")  # locate only: importing it has side effects
    if spec is not None and spec.origin:
        yield Path(spec.origin).parent / "pginstall" / "bin"
    if initdb := which("initdb"):
        yield Path(initdb).resolve().parent


@functools.cache
def pg_bindir() -> Path:
    """The newest usable PostgreSQL bin folder (one with initdb and postgres that run).

    Order: $FLEETPOOL_PG_BINDIR, ``pg_config --bindir``, /usr/lib/postgresql/*/bin (newest
    first), the ``pgserver`` wheel's ``pginstall/bin``, ``initdb`` on PATH.
    """
    user = run_user("postgres")
    seen: set[Path] = set()
    for cand in _pg_candidates():
        if cand in seen:
            continue
        seen.add(cand)
        if not all(os.access(cand / b, os.X_OK) for b in ("initdb", "postgres")):
            continue
        # The unprivileged user must be able to run it (e.g. not inside /root).
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [str(cand / "postgres"), "-V"],
                capture_output=True,
                timeout=10,
                check=True,
                cwd="/",
                **user_kwargs(user),
            )
            return cand
    raise MissingBinary("initdb", "postgresql", "nor a usable pgserver wheel")


def require_binary(name: str) -> str:
    """Absolute path of ``name``, or ``MissingBinary`` naming the Debian package to install.

    Nothing is installed from here: ``scripts/test`` installs the system packages.
    """
    package = DEBIAN_PACKAGES.get(name, name)
    if name in _PG_BINARIES:
        with contextlib.suppress(MissingBinary):
            path = pg_bindir() / name
            if os.access(path, os.X_OK):
                return str(path)
    elif found := which(name):
        return found
    raise MissingBinary(name, package)


def first_binary(*names: str) -> str:
    for name in names:  # preferred name first, then older aliases
        if found := which(name):
            return found
    return require_binary(names[0])
