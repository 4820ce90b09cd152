"""Validate CloudWatch Embedded Metric Format records the way CloudWatch reads them.

The rules of the EMF specification that a writer can get wrong: ``_aws`` with an
integer millisecond ``Timestamp`` and a non-empty ``CloudWatchMetrics`` list; each
directive has a ``Namespace`` (1-255 characters), ``Dimensions`` (lists of at most
30 names, each a string member of the record) and ``Metrics`` (at most 100, each a
``Name`` with an optional known ``Unit``) whose values are members of the record:
a number, or a non-empty list of at most 100 numbers.
"""

from __future__ import annotations

import json
import math
from typing import Any

UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
    "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
    "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
    "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
    "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def check_emf(record: dict[str, Any]) -> dict[str, Any]:
    """Raise AssertionError naming the first violation; return the record."""
    aws = record.get("_aws")
    assert isinstance(aws, dict), "no _aws object"
    assert isinstance(aws.get("Timestamp"), int) and aws["Timestamp"] > 0, "bad Timestamp"
    directives = aws.get("CloudWatchMetrics")
    assert isinstance(directives, list) and directives, "CloudWatchMetrics must be non-empty"
    for d in directives:
        ns = d.get("Namespace")
        assert isinstance(ns, str) and 1 <= len(ns) <= 255, f"bad Namespace {ns!r}"
        dims = d.get("Dimensions")
        assert isinstance(dims, list), "Dimensions must be a list"
        for dim_set in dims:
            assert isinstance(dim_set, list) and len(dim_set) <= 30, f"bad dimension set {dim_set}"
            for name in dim_set:
                assert isinstance(record.get(name), str), f"dimension {name!r} not a string member"
        metrics = d.get("Metrics")
        assert isinstance(metrics, list) and 0 < len(metrics) <= 100, "Metrics: 1..100 entries"
        for m in metrics:
            name = m.get("Name")
            assert isinstance(name, str) and name, f"bad metric {m}"
            assert m.get("Unit", "None") in UNITS, f"unknown unit {m.get('Unit')!r}"
            assert name in record, f"metric {name!r} has no value"
            value = record[name]
            if isinstance(value, list):
                assert 0 < len(value) <= 100, f"metric {name!r}: 1..100 values, got {len(value)}"
                assert all(_number(v) for v in value), f"metric {name!r}: non-numeric values"
            else:
                assert _number(value), f"metric {name!r}: not a number: {value!r}"
    return record


def emf_lines(text: str) -> list[dict[str, Any]]:
    """Every EMF record among the JSON lines of ``text`` (other lines are skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        if isinstance(obj, dict) and "_aws" in obj:
            out.append(check_emf(obj))
    return out
