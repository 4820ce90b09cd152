"""Run the fuzz targets under atheris (coverage-guided), bounded in time.

Usage::

    .venv/bin/python -m tests.fuzz [--seconds 6] [--target NAME ...]
                                   [--update-corpus] [--seed-corpus]

Each target runs in its own process (libFuzzer runs once per process) for
``--seconds``, starting from its corpus in tests/fuzz/corpus/<target>/. A crash -- an
exception its parser does not promise -- fails the run and leaves the input under
``fuzz-artifacts/<target>/``: add it to the corpus (as ``crash-<what>``) once fixed, so
it stays a regression test (tests/fuzz/test_fuzz_targets.py replays the corpus).
``--update-corpus`` adds what the run found to the kept corpus (bounded per target);
``--seed-corpus`` (re)writes the hand-made seeds. Without atheris installed
the run says so and exits 0: the hypothesis half of the targets still runs in pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"
ARTIFACTS = ROOT / "fuzz-artifacts"
MAX_LEN = 4096
KEEP = 150  # inputs found by the fuzzer kept per target


def _worker(name: str, args: list[str]) -> None:
    """Inside the child: instrument fleetpool, then hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["fleetpool"]):
        from tests.fuzz.targets import TARGETS, run_one

        target = TARGETS[name]
        try:  # the targets import lazily: import their modules now, instrumented
            run_one(target, b"")
        except Exception:
            pass

    def test_one_input(data: bytes) -> None:
        run_one(target, data)

    atheris.Setup([sys.argv[0], *args], test_one_input)
    atheris.Fuzz()


def _keep(found: Path, corpus: Path) -> None:
    """Add what the run found to the kept corpus (named by content), bounded: past
    KEEP inputs the largest found ones go (seeds and crash inputs always stay)."""
    for path in found.iterdir():
        data = path.read_bytes()
        (corpus / f"found-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)
    kept = sorted(corpus.glob("found-*"), key=lambda p: (p.stat().st_size, p.name))
    for path in kept[KEEP:]:
        path.unlink()


def _run_target(name: str, seconds: float, update: bool) -> tuple[bool, str]:
    seeds = CORPUS / name
    seeds.mkdir(parents=True, exist_ok=True)
    artifacts = ARTIFACTS / name
    artifacts.mkdir(parents=True, exist_ok=True)
    found = Path(tempfile.mkdtemp(prefix=f"fleetpool-fuzz-{name}-"))
    try:
        cmd = [
            sys.executable,
            "-m",
            "tests.fuzz",
            "--worker",
            name,
            "--",
            f"-max_total_time={max(1, int(seconds))}",
            f"-max_len={MAX_LEN}",
            "-rss_limit_mb=2048",
            "-timeout=10",
            "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/",
            str(found),
            str(seeds),
        ]
        done = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120, check=False
        )
        log = done.stdout + done.stderr
        runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
        cov = re.findall(r"cov: (\d+)", log)
        summary = (
            f"{int(runs.group(1)) if runs else '?'} runs, "
            f"coverage {cov[-1] if cov else '?'} edges, "
            f"{sum(1 for _ in found.iterdir())} new inputs"
        )
        if done.returncode != 0:
            crash = [p for p in artifacts.iterdir() if p.is_file()]
            tail = "\n".join(log.strip().splitlines()[-40:])
            return False, f"{summary}; FAILED (exit {done.returncode}): {crash}\n{tail}"
        if update:
            _keep(found, seeds)
        return True, summary
    finally:
        shutil.rmtree(found, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="per target")
    ap.add_argument("--target", action="append", help="only these (repeatable)")
    ap.add_argument("--update-corpus", action="store_true")
    ap.add_argument("--seed-corpus", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.worker:
        _worker(args.worker, [a for a in rest if a != "--"])
        return 0
    from tests.fuzz.targets import TARGETS

    if args.seed_corpus:
        from tests.fuzz.seeds import write_seeds

        for name, count in write_seeds(CORPUS).items():
            print(f"{name}: {count} seeds")
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed (pip install atheris): coverage-guided fuzzing skipped")
        return 0
    names = args.target or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        print(f"unknown targets {unknown}; known: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONHASHSEED", "0")
    started = time.monotonic()
    failed = []
    for name in names:
        ok, summary = _run_target(name, args.seconds, args.update_corpus)
        print(f"{name:<18} {'ok' if ok else 'CRASH'}: {summary}", flush=True)
        if not ok:
            failed.append(name)
    print(
        f"{len(names)} targets in {time.monotonic() - started:.0f} s; crashes: {failed or 'none'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
