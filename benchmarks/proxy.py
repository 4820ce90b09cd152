"""Benchmark: pgbench through PostgreSQL directly, PgBouncer and the fleetpool proxy.

Usage::

    .venv/bin/python -m benchmarks.proxy [--seconds 5] [--rounds 3] [--clients 20,200]
                                         [--workers 1,2] [--baseline REF] [--state-probe]

Strategy: one throwaway PostgreSQL (max_connections=300) is started for the run, with
a scale-1 pgbench database. Each target gets the same select-only workload
(``pgbench -S``) at each client count, with 20 server connections for the poolers
(PgBouncer 1.18 in transaction mode, default_pool_size=20; fleetpool in transaction
mode, pool_size=20 split across its workers). TPS comes from pgbench's summary; p99
latency from its per-transaction log (``-l``, sampled). Targets run side by side
and each figure is the median of several interleaved runs, because background load on
a shared machine drifts. Next to TPS, each pooler's CPU time per transaction (user +
system of its whole process tree, from /proc, over pgbench's transaction count) is
printed: background load moves TPS a lot and that figure little, so it is the one to
compare when changing the proxy's hot path. A second table runs ``pgbench -M
prepared`` through both poolers: PgBouncer before 1.21 cannot keep named prepared
statements in transaction mode, fleetpool re-prepares them transparently.
``--baseline REF`` adds the proxy of another revision (its ``src/`` taken with
``git archive``, run with this checkout's virtualenv) to the same interleaved rounds,
so a change to the proxy is compared with what it replaces in one run;
``--state-probe`` adds this revision with ``state_probe`` on (one more round trip per
transaction) to show what the probe costs.
Nothing here asserts timings: it prints figures.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from fleetpool_testing import HOST, PostgresServer, free_port

from . import _results

ROOT = Path(__file__).resolve().parents[1]
POOL = 20


def process_tree_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by ``pid`` and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # Fields after the parenthesised command name (which may contain spaces).
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]), int(fields[12]))  # utime, stime
    tree = {pid}
    grew = True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    user = sum(times.get(p, (0, 0))[0] for p in tree) / tick
    system = sum(times.get(p, (0, 0))[1] for p in tree) / tick
    return user, system


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants.

    CPU per transaction is a noise-robust figure on a shared machine: background load
    lowers TPS but barely changes how much work the pooler does per transaction.
    """
    return sum(process_tree_times(pid))


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout}s")


@dataclass
class Result:
    target: str
    clients: int
    mode: str
    tps: float | None
    p99_ms: float | None
    failed: str = ""
    cpu_us: float | None = None  # pooler CPU per transaction (microseconds)


Run = tuple[float | None, float | None, str, float | None]


def run_pgbench(
    port: int,
    clients: int,
    seconds: int,
    mode: str,
    logdir: Path,
    extra: list[str] | None = None,
    pid: int | None = None,
) -> Run:
    """One pgbench run: (TPS, p99 ms, error, CPU µs per transaction of ``pid``'s tree)."""
    for old in logdir.glob("pgb*"):
        old.unlink()
    prefix = str(logdir / "pgb")
    args = [
        "pgbench", "-h", HOST, "-p", str(port), "-U", "postgres", "-n", "-S",
        "-M", mode, "-c", str(clients), "-j", "2", "-T", str(seconds),
        "-l", "--sampling-rate", "0.2", "--log-prefix", prefix,
        *(extra or []), "postgres",
    ]  # fmt: skip
    cpu_before = process_tree_cpu(pid) if pid else 0.0
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    except subprocess.TimeoutExpired:
        return None, None, "timed out", None
    cpu = process_tree_cpu(pid) - cpu_before if pid else 0.0
    out = proc.stdout + proc.stderr
    match = re.search(r"tps = ([\d.]+) \(without initial", out)
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    errors = [ln for ln in out.splitlines() if "error" in ln.lower()]
    if proc.returncode != 0 or match is None:
        return None, None, (errors[0] if errors else f"exit {proc.returncode}")[:90], None
    cpu_us = cpu / int(done.group(1)) * 1e6 if pid and done and int(done.group(1)) else None
    latencies: list[int] = []
    for path in glob.glob(prefix + "*"):
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    latencies.append(int(parts[2]))
    p99 = None
    if latencies:
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000.0
    return float(match.group(1)), p99, "", cpu_us


@contextlib.contextmanager
def pgbouncer(pg_port: int, workdir: Path) -> Iterator[tuple[int, int]]:
    """Run PgBouncer; yields (port, pid)."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        raise RuntimeError("pgbouncer not installed (apt-get install pgbouncer)")
    port = free_port()
    d = workdir / "pgbouncer"
    d.mkdir()
    (d / "users.txt").write_text('"postgres" ""\n')
    (d / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"postgres = host={HOST} port={pg_port} dbname=postgres user=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr = {HOST}\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {d / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 20\nmax_client_conn = 2000\n"
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {d / 'pgbouncer.log'}\npidfile = {d / 'pgbouncer.pid'}\n"
    )
    cmd = [binary, str(d / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        user = pwd.getpwnam("postgres")
        for path in [d, *d.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)
        cmd = [binary, "-u", "postgres", str(d / "pgbouncer.ini")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def fleetpool_proxy(
    pg_port: int,
    workers: int,
    src: Path | None = None,
    extra: list[str] | None = None,
    upstream: str = "",
    upstream_password: str = "",
) -> Iterator[tuple[int, int]]:
    """Run ``fleetpool proxy`` (from ``src``, default this checkout); yields (port, pid).
    ``upstream`` (a URL without its password) replaces the PostgreSQL at ``pg_port``."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "fleetpool.proxy",
        "--listen", f"{HOST}:{port}",
        "--upstream", upstream or f"postgresql://postgres@{HOST}:{pg_port}/postgres",
        "--pool-size", str(POOL), "--mode", "transaction",
        *([] if upstream else ["--auth-method", "trust"]),
        "--workers", str(workers), "--log-level", "WARNING", *(extra or []),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(src or ROOT / "src"))
    if upstream_password:
        env["FLEETPOOL_PROXY_UPSTREAM_PASSWORD"] = upstream_password
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        time.sleep(0.3 * workers)  # let every worker bind
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def checkout_src(ref: str, workdir: Path) -> Path:
    """The ``src/`` tree of git revision ``ref``, extracted under ``workdir``."""
    dest = workdir / f"baseline-{re.sub(r'[^A-Za-z0-9_.-]', '_', ref)}"
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


def summarize(target: str, clients: int, mode: str, runs: list[Run]) -> Result:
    """Median TPS, p99 and CPU over the rounds; a failure in any round is reported."""
    failures = [err for tps, _p99, err, _cpu in runs if tps is None]
    if failures:
        return Result(target, clients, mode, None, None, failures[0])
    tps = statistics.median(t for t, _p, _e, _c in runs if t is not None)
    p99s = [p for _t, p, _e, _c in runs if p is not None]
    cpus = [c for _t, _p, _e, c in runs if c is not None]
    return Result(
        target,
        clients,
        mode,
        tps,
        statistics.median(p99s) if p99s else None,
        cpu_us=statistics.median(cpus) if cpus else None,
    )


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(
    title: str, results: list[Result], clients: list[int], fallback: list[Result] | None = None
) -> None:
    print(f"\n{title}")
    print(
        f"{'target':<26}{'clients':>8}{'mode':>10}{'TPS':>11}{'p99 ms':>9}{'CPU µs/tx':>11}  note"
    )
    for r in results:
        note = r.failed
        print(
            f"{r.target:<26}{r.clients:>8}{r.mode:>10}{fmt(r.tps, ',.0f'):>11}"
            f"{fmt(r.p99_ms, '.2f'):>9}{fmt(r.cpu_us, '.1f'):>11}  {note}"
        )
    bouncer = {(r.clients, r.mode): r for r in results if r.target == "pgbouncer 1.18"}
    simple = {r.clients: r.tps for r in fallback or [] if r.target == "pgbouncer 1.18"}
    print("\nratio fleetpool / PgBouncer (TPS; CPU per transaction):")
    for r in results:
        if r.target.startswith("fleetpool"):
            other = bouncer.get((r.clients, r.mode))
            base = other.tps if other else None
            if base and r.tps:
                cpu = ""
                if other and other.cpu_us and r.cpu_us:
                    cpu = f"; {r.cpu_us / other.cpu_us:.2f}x the CPU per transaction"
                print(
                    f"  {r.target:<24} {r.clients:>4} clients {r.mode:>9}: {r.tps / base:.2f}x{cpu}"
                )
            elif r.tps and simple.get(r.clients):
                ratio = r.tps / simple[r.clients]  # type: ignore[operator]
                print(
                    f"  {r.target:<24} {r.clients:>4} clients {r.mode:>9}: PgBouncer failed; "
                    f"{ratio:.2f}x PgBouncer's simple-protocol TPS"
                )
            elif r.tps:
                print(f"  {r.target:<24} {r.clients:>4} clients {r.mode:>9}: PgBouncer failed")


def print_against(baseline: str, results: list[Result]) -> None:
    """This revision (1 worker) against ``baseline``, from the same interleaved rounds."""
    base = {(r.clients, r.mode): r for r in results if r.target == baseline}
    print(f"\nratio this revision / {baseline} (1 worker; TPS, CPU per transaction):")
    for r in results:
        other = base.get((r.clients, r.mode))
        if r.target != "fleetpool (1 worker)" or other is None or not (r.tps and other.tps):
            continue
        cpu = ""
        if r.cpu_us and other.cpu_us:
            cpu = f", {r.cpu_us / other.cpu_us:.2f}x the CPU per transaction"
        print(f"  {r.clients:>4} clients {r.mode:>9}: {r.tps / other.tps:.2f}x TPS{cpu}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5, help="per pgbench run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs; medians shown")
    ap.add_argument("--clients", default="20,200")
    ap.add_argument("--workers", default="1,2", help="fleetpool worker counts to try")
    ap.add_argument("--baseline", help="also run the proxy of this git revision (1 worker)")
    ap.add_argument(
        "--state-probe", action="store_true", help="also run with state_probe on (1 worker)"
    )
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    seconds = args.seconds
    rounds = args.rounds
    both = ("simple", "prepared")
    started = _results.now()

    server = PostgresServer(
        max_connections=300,
        settings={"shared_buffers": "128MB", "fsync": "off", "synchronous_commit": "off"},
    ).start()
    workdir = Path(tempfile.mkdtemp(prefix="fleetpool-bench-"))
    os.chmod(workdir, 0o755)
    logdir = workdir / "logs"
    logdir.mkdir()
    try:
        pg_port = server.port
        subprocess.run(
            ["pgbench", "-i", "-s", "1", "-q", "-h", HOST, "-p", str(pg_port), "-U", "postgres",
             "postgres"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        print(
            f"PostgreSQL on {HOST}:{pg_port} (max_connections=300), pgbench -S scale 1, "
            f"{rounds} interleaved runs of {seconds}s per figure (median), -j 2, "
            f"{os.cpu_count()} CPUs, pool {POOL} server connections"
        )
        results: list[Result] = []
        prepared: list[Result] = []
        with contextlib.ExitStack() as stack:
            # Every target runs for the whole benchmark (idle ones cost nothing), and
            # the rounds interleave them: background load on a shared machine drifts,
            # and interleaving spreads that drift over all targets alike.
            # (label, port, pid whose process tree is the pooler or None, modes)
            targets: list[tuple[str, int, int | None, tuple[str, ...]]] = [
                ("postgresql direct", pg_port, None, ("simple",)),
                ("pgbouncer 1.18", *stack.enter_context(pgbouncer(pg_port, workdir)), both),
            ]
            for workers in worker_counts:
                label = f"fleetpool ({workers} worker{'s' if workers > 1 else ''})"
                targets.append(
                    (label, *stack.enter_context(fleetpool_proxy(pg_port, workers)), both)
                )
            if args.baseline:
                src = checkout_src(args.baseline, workdir)
                label = f"fleetpool @{args.baseline[:10]}"
                targets.append(
                    (label, *stack.enter_context(fleetpool_proxy(pg_port, 1, src)), both)
                )
            if args.state_probe:
                probe = ["--set", "state_probe=true"]
                targets.append(
                    (
                        "fleetpool + state_probe",
                        *stack.enter_context(fleetpool_proxy(pg_port, 1, extra=probe)),
                        ("simple",),
                    )
                )
            for n in clients:
                for mode in both:
                    runs: dict[str, list[Run]] = {}
                    for _round in range(rounds):
                        for target, port, pid, modes in targets:
                            if mode in modes:
                                got = run_pgbench(port, n, seconds, mode, logdir, pid=pid)
                                runs.setdefault(target, []).append(got)
                    for target, got in runs.items():
                        r = summarize(target, n, mode, got)
                        (results if mode == "simple" else prepared).append(r)
                        print(f"  {target:<24} {n:>4} clients {mode:>9}: {fmt(r.tps, ',.0f')} tps "
                              f"p99 {fmt(r.p99_ms, '.2f')} ms, {fmt(r.cpu_us, '.1f')} µs CPU/tx "
                              f"{r.failed}", flush=True)  # fmt: skip
        print_table("pgbench -S, simple protocol", results, clients)
        print_table(
            "pgbench -S -M prepared (named prepared statements)", prepared, clients, results
        )
        if args.baseline:
            print_against(f"fleetpool @{args.baseline[:10]}", results + prepared)
        path = _results.save(
            "proxy",
            {
                "seconds": seconds,
                "rounds": rounds,
                "simple": [asdict(r) for r in results],
                "prepared": [asdict(r) for r in prepared],
            },
            started,
        )
        print(f"results: {path}")
    finally:
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
