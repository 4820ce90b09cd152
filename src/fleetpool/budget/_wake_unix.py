"""Cross-process wake-ups on one host: AF_UNIX datagram sockets in a directory.

Strategy: each waiting thread binds a datagram socket in ``<db>.wake/`` (or a
short directory under the temp dir when that path would exceed the socket path
limit), named after the budget. A process that frees capacity sends one byte to
every socket of the budget; a socket whose owner died refuses the byte and is
unlinked, so the directory cleans itself. A byte is a hint, never a grant: the
woken thread re-reads the store. No daemon, no lock file, nothing to configure.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import socket
import tempfile
import threading

#: AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS), NUL included.
_SUN_PATH_MAX = 100
#: Length of a socket file name: "<budget hash 12>.<pid>.<thread id>.<random 6>".
_SOCK_NAME_MAX = 44


def wake_dir(db_path: str) -> str:
    """The directory holding the budget's wake-up sockets (same rule in every process)."""
    real = os.path.realpath(db_path)
    beside = real + ".wake"
    if len(beside) + 1 + _SOCK_NAME_MAX <= _SUN_PATH_MAX:
        return beside
    digest = hashlib.sha256(real.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"fleetpool-{os.getuid()}-{digest}.wake")


class Waker:
    """Cross-process wake-ups for one budget: datagram sockets in a directory."""

    def __init__(self, db_path: str, budget: str) -> None:
        self.dir = wake_dir(db_path)
        self.prefix = hashlib.sha256(budget.encode()).hexdigest()[:12] + "."
        self._sender: socket.socket | None = None
        self._sender_pid = 0
        self._lock = threading.Lock()

    def bind(self) -> tuple[socket.socket, str]:
        """A new socket for the calling thread to wait on, and its path."""
        os.makedirs(self.dir, exist_ok=True)
        name = f"{self.prefix}{os.getpid()}.{threading.get_native_id()}.{secrets.token_hex(3)}"
        path = os.path.join(self.dir, name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            raise
        return sock, path

    def notify(self) -> None:
        """Send one byte to every waiting socket of this budget (after a commit)."""
        try:
            names = [n for n in os.listdir(self.dir) if n.startswith(self.prefix)]
        except OSError:
            return
        if not names:
            return
        with self._lock:
            if self._sender is None or self._sender_pid != os.getpid():
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
                self._sender_pid = os.getpid()
            sender = self._sender
            for name in names:
                path = os.path.join(self.dir, name)
                try:
                    sender.sendto(b"!", path)
                except OSError as exc:
                    if exc.errno == errno.ECONNREFUSED:
                        # Nobody is bound there any more: its process died.
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                    # EAGAIN: that waiter already has wake-ups queued; ENOENT: gone.

    def close(self) -> None:
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None


def drain(sock: socket.socket) -> None:
    """Drop the wake-ups already queued on ``sock`` (their effect is about to be read)."""
    sock.setblocking(False)
    while True:
        try:
            sock.recv(64)
        except OSError:
            return


def wait(sock: socket.socket, timeout: float) -> None:
    """Block until a wake-up arrives on ``sock`` or ``timeout`` seconds pass."""
    if timeout <= 0:
        return
    sock.settimeout(timeout)
    try:
        sock.recv(64)
    except OSError:  # timeout
        return
    drain(sock)


def unbind(sock: socket.socket, path: str) -> None:
    """Close a socket made by :meth:`Waker.bind` and remove its file."""
    sock.close()
    with contextlib.suppress(OSError):
        os.unlink(path)


__all__ = ["Waker", "drain", "unbind", "wait", "wake_dir"]
