"""``fleetpool layer build``: a Lambda layer zip for a runtime and architecture."""

from __future__ import annotations

from typing import Annotated

import typer

from .layer import ARCHES, EXTRAS, RUNTIMES, build_layer

app = typer.Typer(help="Build a Lambda layer with fleetpool and its drivers.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Build a Lambda layer with fleetpool and its drivers."""


@app.command()
def build(
    out: Annotated[str, typer.Option("--out", help="The zip to write")] = "layer.zip",
    runtime: Annotated[
        str, typer.Option(help=f"Lambda runtime: {', '.join(RUNTIMES)}")
    ] = "python3.12",
    arch: Annotated[str, typer.Option(help=f"Architecture: {', '.join(ARCHES)}")] = "arm64",
    extras: Annotated[
        str, typer.Option(help=f"Comma-separated, from: {', '.join(EXTRAS)}")
    ] = "postgres,aws",
    exclude_boto3: Annotated[
        bool, typer.Option(help="Leave boto3 out and use the runtime's (smaller layer)")
    ] = False,
    compile_bytecode: Annotated[
        bool,
        typer.Option(
            "--compile/--no-compile",
            help="Ship bytecode for the runtime (needs its python here)",
        ),
    ] = True,
) -> None:
    """Build a layer zip (python/ layout) from manylinux wheels and print its size."""
    report = build_layer(
        out,
        runtime=runtime,
        arch=arch,
        extras=extras,
        exclude_boto3=exclude_boto3,
        compile_bytecode=compile_bytecode,
    )
    typer.echo(report.summary())
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
