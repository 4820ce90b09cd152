"""The adapter to aws-lambda-powertools: fleetpool's metrics and logs in its formats.

Strategy: fleetpool's counters already become EMF records in one place
(:meth:`fleetpool.metrics.BudgetMetrics.emf_records`); this module only hands
those values to Powertools, so both writers publish the same facts.

* Metrics go through Powertools' EMF provider (``EphemeralMetrics``), one blob
  per budget and function, flushed once per invocation by ``@db.handler``. Not
  through the application's ``Metrics``: its metric set is shared by every
  instance in the process, so fleetpool's ``Budget``/``Function`` dimensions
  would be stamped on the application's metrics, and whether fleetpool's values
  made it into the application's blob would depend on the order of the
  decorators. With a blob of its own, ``@db.handler`` stacks with
  ``@metrics.log_metrics`` in either order and nothing is flushed twice.
* Logs: :func:`share_logger` gives fleetpool's stdlib loggers the handler and
  formatter of the application's Powertools ``Logger``, so their lines are the
  same JSON and carry the same keys (correlation id, request id, cold start).

Imported only when Powertools is installed and used.
"""

from __future__ import annotations

import logging
from typing import Any

_shared_logger: Any = None


def emit(records: list[dict[str, Any]], request_id: str | None = None) -> int:
    """Publish EMF records (from ``emf_records``) through Powertools; returns how many."""
    from aws_lambda_powertools.metrics import EphemeralMetrics

    written = 0
    for record in records:
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        dimension_sets: list[list[str]] = directive["Dimensions"]
        # service="" keeps Powertools from adding a "service" dimension taken from
        # POWERTOOLS_SERVICE_NAME: fleetpool's dimensions must not depend on it
        # (the dashboard and alarms name them).
        metrics = EphemeralMetrics(namespace=directive["Namespace"], service="")
        for name in dimension_sets[0]:
            metrics.add_dimension(name=name, value=str(record[name]))
        for extra in dimension_sets[1:]:
            metrics.add_dimensions(**{name: str(record[name]) for name in extra})
        for definition in directive["Metrics"]:
            name, unit = definition["Name"], definition["Unit"]
            value = record[name]
            for v in value if isinstance(value, list) else [value]:
                metrics.add_metric(name=name, unit=unit, value=v)
        metrics.set_timestamp(int(record["_aws"]["Timestamp"]))
        if request_id:
            metrics.add_metadata(key="function_request_id", value=request_id)
        correlation_id = _correlation_id()
        if correlation_id:
            metrics.add_metadata(key="correlation_id", value=correlation_id)
        metrics.flush_metrics()
        written += 1
    return written


def share_logger(logger: Any) -> None:
    """Send fleetpool's log lines through a Powertools ``Logger``'s handler and format.

    Call once in the global section, after creating the Logger::

        logger = Logger()
        fleetpool.aws.powertools.share_logger(logger)

    fleetpool's warnings (fail-open grants, reconnects, lost leases) then come out
    as the application's JSON lines, with its correlation id and Lambda context
    keys; the EMF blobs carry the correlation id as metadata too.
    """
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    global _shared_logger
    logging.getLogger("fleetpool")  # registered, so the copy finds it
    copy_config_to_registered_loggers(source_logger=logger, include={"fleetpool"})
    _shared_logger = logger


def _correlation_id() -> str | None:
    if _shared_logger is None:
        return None
    try:
        value = _shared_logger.get_correlation_id()
    except Exception:
        return None
    return value if isinstance(value, str) and value else None
