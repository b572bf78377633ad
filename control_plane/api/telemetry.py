"""The API's structured logger and EMF metrics, shared by the routes and the Lambda entry point.

Metrics go to CloudWatch as Embedded Metric Format lines on stdout (no API call, no cost
beyond the log line). :func:`flush_metrics` only writes when a route added one: powertools
warns about an empty flush, and tests turn warnings into errors. Where powertools metrics are
disabled (``POWERTOOLS_METRICS_DISABLED``, set by ``squall server``), what was added is dropped.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

__all__ = ["flush_metrics", "logger", "metrics"]

# RFC 3339 timestamps: with the function's log format set to JSON, Lambda takes the level of a
# line from its JSON only when the timestamp is RFC 3339; otherwise it files the line as INFO,
# and an application log level of WARN or above would drop the API's errors.
logger = Logger(service="squall", use_rfc3339=True)
metrics = Metrics(namespace="Squall", service="squall")


def flush_metrics() -> None:
    """Write the metrics added during this request, if any, and forget them."""
    if not metrics.metric_set:
        return
    if is_metrics_disabled():
        metrics.clear_metrics()
        return
    metrics.flush_metrics()
