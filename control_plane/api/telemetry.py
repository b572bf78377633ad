"""The API's structured logger and EMF metrics, shared by the routes and the Lambda entry point.

Metrics go to CloudWatch as Embedded Metric Format lines on stdout (no API call, no cost
beyond the log line). :func:`flush_metrics` only writes when a route added one: powertools
warns about an empty flush, and tests turn warnings into errors. Where powertools metrics are
disabled (``POWERTOOLS_METRICS_DISABLED``, set by ``squall server``), what was added is dropped.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

__all__ = ["flush_metrics", "keys", "logger", "metrics", "new_request"]

# RFC 3339 timestamps: with the function's log format set to JSON, Lambda takes the level of a
# line from its JSON only when the timestamp is RFC 3339; otherwise it files the line as INFO,
# and an application log level of WARN or above would drop the API's errors.
logger = Logger(service="squall", use_rfc3339=True)
metrics = Metrics(namespace="Squall", service="squall")


def new_request(**request_keys: object) -> None:
    """Start a request's log keys afresh: this thread's keys only (``squall server`` serves reads
    on several threads at once; powertools' plain ``append_keys`` are shared by all of them)."""
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(**request_keys)


def keys(**request_keys: object) -> None:
    """Add keys to every log line of the current request (``execution_id``, ``flow_id``...)."""
    logger.thread_safe_append_keys(**request_keys)


def flush_metrics() -> None:
    """Write the metrics added during this request, if any, and forget them."""
    if not metrics.metric_set:
        return
    if is_metrics_disabled():
        metrics.clear_metrics()
        return
    metrics.flush_metrics()
