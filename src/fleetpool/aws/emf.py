"""The metrics blob ``@db.handler`` writes at the end of each invocation.

Strategy: on Lambda a JSON line on stdout *is* a metric (CloudWatch Embedded
Metric Format), but only if someone writes it before the invocation ends: a
container may be frozen or reclaimed right after, and whatever was counted but
not written is lost. So ``@db.handler`` flushes its budget's counters once,
after the connection is checked in, whatever the handler did (returned or
raised). With aws-lambda-powertools installed the blob goes through its
metrics provider (:mod:`fleetpool.aws.powertools`), so Powertools' settings
(``POWERTOOLS_METRICS_DISABLED``, validation) apply; without it fleetpool's own
writer (:func:`fleetpool.cloudwatch.write_emf`) prints the same record.

Only on Lambda by default (``metrics="auto"`` looks for
``AWS_LAMBDA_FUNCTION_NAME``): elsewhere stdout belongs to the program. A
failure to write metrics is logged and never fails the invocation.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..metrics import BudgetMetrics
from ..cloudwatch import emf_namespace, write_emf

log = logging.getLogger(__name__)

MetricsMode = Literal["auto", "emf", "powertools", "off"]
MODES = ("auto", "emf", "powertools", "off")


def on_lambda() -> bool:
    """True inside a Lambda runtime (or anything that sets its variables, like SAM local)."""
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


def powertools_installed() -> bool:
    # find_spec locates the package without importing it (cold start stays cheap).
    return importlib.util.find_spec("aws_lambda_powertools") is not None


class InvocationMetrics:
    """Writes one budget's counters as EMF at the end of each invocation.

    ``mode``: ``"auto"`` (on Lambda only; Powertools when installed, else
    fleetpool's writer), ``"emf"`` (fleetpool's writer, anywhere),
    ``"powertools"`` (Powertools, anywhere; it must be installed) or ``"off"``.
    ``namespace``: default ``$FLEETPOOL_METRICS_NAMESPACE``, else ``fleetpool``.
    """

    def __init__(self, mode: str = "auto", namespace: str | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"metrics must be one of {', '.join(MODES)}; got {mode!r}")
        if mode == "powertools" and not powertools_installed():
            raise ConfigError(
                "metrics='powertools' needs aws-lambda-powertools: "
                "pip install 'fleetpool[powertools]'"
            )
        self.mode = mode
        # Resolved now so a bad FLEETPOOL_METRICS_NAMESPACE fails at construction.
        self.namespace = emf_namespace(namespace)

    def writer(self) -> str | None:
        """``"powertools"``, ``"emf"`` or None (nothing is written)."""
        if self.mode == "off" or (self.mode == "auto" and not on_lambda()):
            return None
        if self.mode == "powertools" or (self.mode == "auto" and powertools_installed()):
            return "powertools"
        return "emf"

    def flush(self, metrics: BudgetMetrics | None, context: Any = None) -> int:
        """Write what ``metrics`` counted since the last flush; returns the records written."""
        if self.writer() is None or metrics is None:
            return 0
        return self.write(metrics.emf_records(namespace=self.namespace), context)

    def write(self, records: list[dict[str, Any]], context: Any = None) -> int:
        """Write EMF records with the chosen writer; returns how many were written."""
        writer = self.writer()
        if writer is None or not records:
            return 0
        try:
            request_id = getattr(context, "aws_request_id", None)
            if writer == "powertools":
                from .powertools import emit

                return emit(records, request_id=request_id)
            if isinstance(request_id, str):
                for record in records:
                    record["function_request_id"] = request_id
            return write_emf(records)
        except Exception:
            log.warning("could not write fleetpool's metrics", exc_info=True)
            return 0
