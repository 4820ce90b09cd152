# Strategy: run one Proxy per worker process. With ``workers > 1`` the parent forks
# children that each bind the same port with SO_REUSEPORT (the kernel spreads
# connections) and own a share of the server pool, so the total never exceeds
# pool_size. uvloop is used when installed. SIGTERM/SIGINT drain gracefully.
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from .._lifetime import die_with_parent
from .config import ProxyConfig
from .events import record_fields
from .worker import Proxy


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": os.getpid(),
        }
        for key, value in record_fields(record).items():
            out.setdefault(key, value)  # an event's fields: "event", "user", ...
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(cfg: ProxyConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if cfg.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("fleetpool")
    root.handlers[:] = [handler]
    root.setLevel(cfg.log_level.upper())


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is optional
        loop = asyncio.new_event_loop()
    return loop


async def serve(
    cfg: ProxyConfig,
    worker_index: int = 0,
    workers: int = 1,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> None:
    proxy = Proxy(cfg, worker_index, workers, config_path, overrides)
    await proxy.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        try:
            proxy.reload_local()
        except Exception as exc:
            logging.getLogger("fleetpool.proxy").error("reload failed: %s", exc)

    loop.add_signal_handler(signal.SIGHUP, reload)
    print(f"fleetpool proxy listening on {cfg.listen[0]}:{proxy.port}", file=sys.stderr, flush=True)
    await stop.wait()
    logging.getLogger("fleetpool.proxy").info(
        "draining (shutdown_timeout=%ss)", cfg.shutdown_timeout
    )
    await proxy.stop()


def run(
    cfg: ProxyConfig, config_path: str | None = None, overrides: dict[str, Any] | None = None
) -> int:
    """Run the proxy until SIGTERM/SIGINT (SIGHUP reloads); returns the exit code."""
    setup_logging(cfg)
    workers = cfg.workers
    if workers <= 1:
        loop = new_event_loop()
        try:
            loop.run_until_complete(serve(cfg, 0, 1, config_path, overrides))
        finally:
            loop.close()
        return 0
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # child
            die_with_parent()  # a worker drains (SIGTERM) if the parent dies
            code = 0
            try:
                loop = new_event_loop()
                loop.run_until_complete(serve(cfg, index, workers, config_path, overrides))
            except BaseException:
                logging.getLogger("fleetpool.proxy").exception("worker %d failed", index)
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
    status = 0
    for child in children:
        while True:
            try:
                _, st = os.waitpid(child, 0)
                status = status or os.waitstatus_to_exitcode(st)
                break
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover
                time.sleep(0.01)
    return status
