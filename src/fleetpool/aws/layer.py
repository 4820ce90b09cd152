"""``fleetpool layer build``: a Lambda layer zip with fleetpool and the extras a function needs.

Strategy: pip already knows how to pick wheels for another platform (``pip
install --platform ... --only-binary=:all: --target``), so the builder only
decides *what* to ask for and packs the result the way Lambda reads it:

* third-party packages are the requirements of the chosen extras, read from
  fleetpool's installed metadata (pyproject.toml stays the one list), resolved
  for the runtime's CPython and the architecture's manylinux tags;
* fleetpool itself is copied from the installed package, without the parts a
  function never runs (the proxy, the fleet emulator and its HTML report, the linter);
* Lambda mounts a layer read-only under ``/opt``, where Python cannot write
  ``__pycache__``: without bytecode in the zip every cold start compiles every
  module again. pip's own compilation would use the build machine's Python, so
  it is turned off, and the layer is compiled with the runtime's version when
  that interpreter is available here (otherwise the layer is left without
  bytecode and the command says so);
* the zip is reproducible: sorted entries with a fixed timestamp, so an
  unchanged layer has the same bytes and ``sam deploy`` does not publish it again.
"""

from __future__ import annotations

import compileall
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

RUNTIMES = ("python3.11", "python3.12", "python3.13")
ARCHES = ("x86_64", "arm64")
#: Extras that make sense inside a function (the others are tools for a workstation).
EXTRAS = ("postgres", "mysql", "aws", "redis", "powertools")
#: python3.11 runs on Amazon Linux 2 (glibc 2.26); 3.12 and 3.13 on Amazon Linux 2023 (2.34).
GLIBC = {"python3.11": (2, 26), "python3.12": (2, 34), "python3.13": (2, 34)}
#: Packages of the ``fleetpool`` tree a function never imports.
LEFT_OUT = ("fleet", "lint", "proxy")
#: Lambda's limits: 50 MB for a zip uploaded directly, 250 MB unzipped (function + layers).
ZIP_LIMIT = 50 * 1024 * 1024
UNZIPPED_LIMIT = 250 * 1024 * 1024
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: pip may take this long to resolve and download (a cold cache on a slow link).
PIP_TIMEOUT = 900.0


@dataclass
class LayerReport:
    path: Path
    zip_bytes: int
    unzipped_bytes: int
    packages: list[str]
    compiled: bool
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        mb = 1024 * 1024
        return (
            f"{self.path}: {self.zip_bytes / mb:.1f} MB zipped, "
            f"{self.unzipped_bytes / mb:.1f} MB unzipped "
            f"(Lambda allows 50 MB / 250 MB); "
            f"{'with' if self.compiled else 'without'} bytecode; "
            f"packages: {', '.join(self.packages)}"
        )


def platforms(runtime: str, arch: str) -> list[str]:
    """The wheel platform tags that run on the runtime's Amazon Linux for ``arch``."""
    machine = "aarch64" if arch == "arm64" else "x86_64"
    major, top = GLIBC[runtime]
    tags = [f"manylinux2014_{machine}"]  # = manylinux_2_17
    tags += [f"manylinux_{major}_{minor}_{machine}" for minor in range(17, top + 1)]
    return tags


def parse_extras(extras: str | list[str]) -> list[str]:
    names = extras.split(",") if isinstance(extras, str) else list(extras)
    out = [n.strip() for n in names if n.strip()]
    bad = [n for n in out if n not in EXTRAS]
    if bad:
        raise ConfigError(
            f"unknown layer extra(s) {', '.join(map(repr, bad))}; choose from {', '.join(EXTRAS)}"
        )
    if "postgres" not in out and "mysql" not in out:
        raise ConfigError("a layer needs a driver: add postgres or mysql to --extras")
    return sorted(set(out), key=out.index)


_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def requirements(extras: list[str]) -> list[str]:
    """Third-party requirements of fleetpool's ``extras``, from its installed metadata."""
    try:
        declared = importlib.metadata.requires("fleetpool") or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError("fleetpool's metadata is missing: install it with pip first") from exc
    by_extra: dict[str, list[str]] = {}
    for line in declared:
        spec, _, marker = line.partition(";")
        m = _EXTRA_MARKER.search(marker)
        if m is None:
            continue
        # Keep any other marker (e.g. sys_platform); pip evaluates it for the target.
        rest = re.sub(r"\s*\band\s*$|^\s*and\b\s*", "", _EXTRA_MARKER.sub("", marker)).strip()
        if rest:
            spec = f"{spec.strip()}; {rest}"
        by_extra.setdefault(m.group(1), []).append(spec.strip())
    out: list[str] = []
    seen: set[str] = set()

    def add(extra: str) -> None:
        if extra in seen:
            return
        seen.add(extra)
        if extra not in by_extra:
            raise ConfigError(f"fleetpool has no extra {extra!r} in this installation")
        for spec in by_extra[extra]:
            nested = re.fullmatch(r"fleetpool\[([^\]]+)\]", spec)
            if nested:
                for name in nested.group(1).split(","):
                    add(name.strip())
            elif spec not in out:
                out.append(spec)

    for extra in extras:
        add(extra)
    return out


def _python_for(runtime: str) -> str | None:
    version = runtime.removeprefix("python")
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        return None
    try:  # a pyenv shim exists even when that version is not selected: ask it
        ok = subprocess.run(
            [found, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if ok.returncode == 0 else None


def _pip_install(reqs: list[str], target: Path, runtime: str, arch: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        runtime.removeprefix("python"),
        "--target",
        str(target),
        *[arg for tag in platforms(runtime, arch) for arg in ("--platform", tag)],
        *reqs,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"pip did not finish within {PIP_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        errors = [ln for ln in done.stderr.splitlines() if "WARNING: Location" not in ln]
        raise ConfigError(
            f"pip could not install {' '.join(reqs)} for {runtime} {arch}:\n"
            + "\n".join(errors[-15:])
        )


def _copy_fleetpool(dest: Path) -> None:
    source = Path(__file__).resolve().parent.parent
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")

    def ignore(directory: str, names: list[str]) -> set[str]:
        out = set(skip(directory, names))
        if Path(directory).resolve() == source:
            out.update(n for n in names if n in LEFT_OUT)
        return out

    shutil.copytree(source, dest / "fleetpool", ignore=ignore)


def _compile(root: Path, python: str) -> None:
    # Unchecked hashes: the .pyc is valid whatever the mtimes in the zip say.
    script = (
        "import compileall, py_compile, sys; "
        "ok = compileall.compile_dir(sys.argv[1], quiet=2, workers=1, legacy=False, "
        "invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH); "
        "sys.exit(0 if ok else 1)"
    )
    if python == sys.executable:
        import py_compile

        compileall.compile_dir(
            str(root),
            quiet=2,
            workers=1,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        return
    subprocess.run([python, "-c", script, str(root)], capture_output=True, timeout=600)


def _zip(root: Path, out: Path) -> tuple[int, int]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    unzipped = 0
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            data = path.read_bytes()
            unzipped += len(data)
            zf.writestr(info, data)
    tmp.replace(out)
    return out.stat().st_size, unzipped


def build_layer(
    out: str | Path,
    *,
    runtime: str = "python3.12",
    arch: str = "arm64",
    extras: str | list[str] = "postgres,aws",
    exclude_boto3: bool = False,
    compile_bytecode: bool = True,
) -> LayerReport:
    """Build the layer zip at ``out``; see the module's docstring for how.

    ``exclude_boto3`` leaves boto3/botocore out (the Lambda runtime has its own,
    of a version AWS chooses): a much smaller layer.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if arch not in ARCHES:
        raise ConfigError(f"arch must be one of {', '.join(ARCHES)}; got {arch!r}")
    names = parse_extras(extras)
    out_path = Path(out)
    if out_path.suffix != ".zip":
        raise ConfigError(f"--out must name a .zip file; got {str(out)!r}")
    if not out_path.parent.is_dir():
        raise ConfigError(f"--out: directory {str(out_path.parent)!r} does not exist")
    reqs = requirements(names)
    notes: list[str] = []
    if exclude_boto3:
        reqs = [r for r in reqs if not r.lower().startswith("boto3")]
        notes.append("boto3 left out: the function uses the runtime's boto3")
    with tempfile.TemporaryDirectory(prefix="fleetpool-layer-") as tmp:
        site = Path(tmp) / "python"
        site.mkdir()
        if reqs:
            _pip_install(reqs, site, runtime, arch)
        _copy_fleetpool(site)
        for junk in site.rglob("__pycache__"):
            shutil.rmtree(junk, ignore_errors=True)
        if (site / "bin").is_dir():  # console scripts of the dependencies: unusable in /opt
            shutil.rmtree(site / "bin")
        compiled = False
        if compile_bytecode:
            python = _python_for(runtime)
            if python is None:
                notes.append(
                    f"no {runtime} interpreter here: the layer has no bytecode, so Lambda "
                    "compiles its modules at every cold start"
                )
            else:
                _compile(site, python)
                compiled = True
        packages = sorted(
            "==".join(p.name.removesuffix(".dist-info").split("-", 1))
            for p in site.glob("*.dist-info")
        )
        zip_bytes, unzipped = _zip(Path(tmp), out_path)
    report = LayerReport(out_path, zip_bytes, unzipped, ["fleetpool", *packages], compiled, notes)
    if zip_bytes > ZIP_LIMIT:
        report.notes.append("over 50 MB zipped: upload it through S3 (sam deploy does)")
    if unzipped > UNZIPPED_LIMIT:
        report.notes.append("over Lambda's 250 MB unzipped limit: drop an extra")
    return report
