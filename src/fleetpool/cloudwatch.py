"""CloudWatch Embedded Metric Format: the namespace, one record, the writer.

Strategy: on Lambda a JSON line on stdout *is* a metric -- no API call, no extra
latency. This module only knows the format; the budget's counters
(:mod:`fleetpool.metrics`), a function's per-invocation flush
(:mod:`fleetpool.aws.emf`), the helper and the proxy build their records with
it. It imports nothing heavy, so a Database built in a function's global section
can check its namespace without loading the metrics machinery.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

NAMESPACE = "fleetpool"

#: Units of the metrics fleetpool writes as EMF (anything else is a plain count).
EMF_UNITS = {"LeaseWaitTime": "Milliseconds"}


def emf_namespace(namespace: str | None = None) -> str:
    """The CloudWatch namespace: the argument, else ``$FLEETPOOL_METRICS_NAMESPACE``, else
    ``fleetpool``."""
    ns = namespace if namespace is not None else os.environ.get("FLEETPOOL_METRICS_NAMESPACE")
    if ns is None:
        return NAMESPACE
    ns = ns.strip()
    if not ns or len(ns) > 255:
        from .errors import ConfigError

        raise ConfigError(
            f"metrics namespace must be 1 to 255 characters, got {namespace!r}"
            " (argument or FLEETPOOL_METRICS_NAMESPACE)"
        )
    return ns


def emf_record(
    namespace: str,
    timestamp_ms: int,
    dimensions: dict[str, str],
    values: dict[str, Any],
    extra_dimension_sets: list[list[str]] | None = None,
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One EMF record: every name in ``values`` is a metric under every dimension set.

    ``values`` holds only known numbers (or non-empty lists of them): the caller leaves
    out what it does not know instead of writing a 0.
    """
    record: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions), *(extra_dimension_sets or [])],
                    "Metrics": [
                        {"Name": name, "Unit": EMF_UNITS.get(name, "Count")} for name in values
                    ],
                }
            ],
        },
        **(properties or {}),
        **dimensions,
        **values,
    }
    return record


def write_emf(records: list[dict[str, Any]], stream: TextIO | None = None) -> int:
    """Write each record as one JSON line (stdout by default); returns the number written."""
    out = stream or sys.stdout
    for record in records:
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
    if records:
        out.flush()
    return len(records)


__all__ = ["EMF_UNITS", "NAMESPACE", "emf_namespace", "emf_record", "write_emf"]
