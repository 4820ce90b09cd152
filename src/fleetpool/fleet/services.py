"""The processes a strategy run starts beside the fleet: fleetpool's proxy, the Data API.

Strategy: each listens on port 0 and the port is read back from its "listening
on" line, so no other process can take a port picked in advance; stopping is a
SIGTERM, a bounded drain, then SIGKILL. Kept apart from the run so the process
management is one module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .._lifetime import die_with_parent
from ..errors import ConfigError
from .strategies._workload import engine_of

PROXY_READY_TIMEOUT = 15.0  # seconds the proxy may take to listen
PROXY_STOP_TIMEOUT = 5.0  # seconds of graceful drain before SIGKILL


class ProxyProcess:
    """``python -m fleetpool.proxy`` in front of the target, for one strategy run.

    It listens on port 0 and the port is read back from its "listening on"
    line: no window in which another process could take a port picked in
    advance. Its output goes to ``log`` (kept with ``--logs``).
    """

    marker = "fleetpool proxy listening on "

    def __init__(self, upstream: str, pool_size: int, log: Path) -> None:
        self.upstream = upstream
        self.pool_size = pool_size
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        # A MySQL server user without a password: the containers log in to the proxy
        # with this one-run secret instead (MySQL logins have no "trust").
        self.client_password = ""
        if engine_of(upstream) == "mysql" and not urlsplit(upstream).password:
            self.client_password = uuid.uuid4().hex

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "fleetpool.proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            self.upstream,
            "--pool-size",
            str(self.pool_size),
        ]
        if self.client_password:
            # The proxy logs in to the server as the URL's user, without a password.
            cmd += ["--set", "server_login=upstream"]
        elif not urlsplit(self.upstream).password:
            # The server trusts this user without a password (the embedded one
            # does), so SCRAM at the proxy would only lock out the clients; it
            # listens on loopback only, for the length of one strategy run.
            cmd += ["--auth-method", "trust"]
        return cmd

    def _server_user(self) -> str:
        """The user the proxy logs in to the server as (the URL's, or the default)."""
        from ..proxy.config import parse_upstream  # the proxy's own package, on demand

        return parse_upstream(self.upstream).user

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.client_password:
            from ..proxy.config import ENV_USER_PREFIX

            env[f"{ENV_USER_PREFIX}{self._server_user()}"] = self.client_password
        return env

    def start(self, timeout: float = PROXY_READY_TIMEOUT) -> ProxyProcess:
        cmd = self.command()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                # It must not outlive a demo killed with SIGKILL.
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=self.environment(),
                preexec_fn=die_with_parent,
            )
        try:
            self.port = self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self, timeout: float) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        marker = self.marker
        while True:
            with contextlib.suppress(OSError):
                for line in self.log.read_text(errors="replace").splitlines():
                    if line.startswith(marker):
                        port = int(line[len(marker) :].rsplit(":", 1)[1])
                        if _accepts(port):
                            return port
            if self.proc.poll() is not None:
                raise ConfigError(
                    f"the fleetpool proxy exited with status {self.proc.returncode} "
                    f"before listening: {_tail(self.log)}"
                )
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"the fleetpool proxy did not listen within {timeout:.0f} s: {_tail(self.log)}"
                )
            time.sleep(0.05)

    def client_dsn(self) -> str:
        """The target's DSN with the proxy's address (same user, password and database)."""
        parts = urlsplit(self.upstream)
        userinfo = parts.netloc.rpartition("@")[0]
        if self.client_password:
            userinfo = f"{quote(self._server_user(), safe='')}:{self.client_password}"
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))

    def stop(self, timeout: float = PROXY_STOP_TIMEOUT) -> int | None:
        """SIGTERM, a bounded wait for the drain, then SIGKILL; the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        return proc.returncode


class DataApiProcess(ProxyProcess):
    """``fleetpool data-api`` in front of the target, for the data-api strategy."""

    marker = "fleetpool data API listening on "
    key_id = "fleet-data-api"

    def __init__(self, upstream: str, pool_size: int, log: Path) -> None:
        super().__init__(upstream, pool_size, log)
        self.secret = uuid.uuid4().hex

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "fleetpool.cli", "data-api", "--listen", "127.0.0.1:0",
            "--upstream", self.upstream, "--pool-size", str(self.pool_size),
            "--access-key", f"{self.key_id}:{self.secret}", "--log-level", "warning",
        ]  # fmt: skip

    def client_env(self) -> dict[str, str]:
        return {
            "FLEET_DATA_API_URL": f"http://127.0.0.1:{self.port}",
            "FLEET_DATA_API_KEY": self.key_id,
            "FLEET_DATA_API_SECRET": self.secret,
        }


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def _tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "no output"
    return "no output"
