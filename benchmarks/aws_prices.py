"""The AWS prices the cost benchmark uses: us-east-1, on-demand, every one with its source.

One table, so a price is changed in one place and every figure of ``benchmarks/cost.py``
follows. Each entry says the page it comes from and when it was read; ``inferred`` says
where the page read did not show the figure itself and it was taken from a secondary
source or from how AWS documents the billing (say so in any figure built on it).
Free tiers are left out: the figures are for a deployment past them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRICES", "Price"]

READ = "2026-12-04"


@dataclass(frozen=True)
class Price:
    """``dollars`` per ``unit``; ``source`` is the page, ``read`` the date it was read."""

    dollars: float
    unit: str
    source: str
    read: str = READ
    inferred: str = ""


PRICES: dict[str, Price] = {
    "lambda.request": Price(0.20 / 1e6, "request", "https://aws.amazon.com/lambda/pricing/"),
    "lambda.gb_second.arm64": Price(
        0.0000133334,
        "GB-second (arm64, first 7.5 billion GB-s a month)",
        "https://aws.amazon.com/lambda/pricing/",
        inferred="figure as quoted from the pricing page by cloudchipr.com/blog/aws-lambda-pricing",
    ),
    "dynamodb.wru": Price(
        0.625 / 1e6, "write request unit (on-demand)", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
    "dynamodb.rru": Price(
        0.125 / 1e6, "read request unit (on-demand)", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
    "apigateway.http_request": Price(
        1.00 / 1e6,
        "HTTP API request (first 300 million a month)",
        "https://aws.amazon.com/api-gateway/pricing/",
    ),
    "scheduler.invocation": Price(
        1.00 / 1e6,
        "EventBridge Scheduler invocation (after 14 million free)",
        "https://aws.amazon.com/eventbridge/pricing/",
    ),
    "eventbridge.aws_service_event": Price(
        0.0,
        "AWS service event on the default bus (Batch Job State Change)",
        "https://aws.amazon.com/eventbridge/pricing/",
        inferred="state-change events of AWS services on the default bus are not charged; "
        "CloudWatch pricing: 'Events: all events except custom events are included'",
    ),
    "s3.put_list": Price(
        0.005 / 1000, "PUT, COPY, POST or LIST request (S3 Standard)", "https://aws.amazon.com/s3/pricing/"
    ),
    "s3.get": Price(
        0.0004 / 1000, "GET, SELECT and other request (S3 Standard)", "https://aws.amazon.com/s3/pricing/"
    ),
    "batch.api": Price(
        0.0,
        "AWS Batch API call (SubmitJob, DescribeJobs, ...)",
        "https://aws.amazon.com/batch/pricing/",
        inferred="Batch has no charge of its own; its compute is the runner's, not the control plane's",
    ),
    "logs.ingest_gb": Price(
        0.50, "GB of CloudWatch Logs ingested (standard class)", "https://aws.amazon.com/cloudwatch/pricing/"
    ),
    "logs.api": Price(
        0.0,
        "CloudWatch Logs read API request (GetLogEvents)",
        "https://aws.amazon.com/cloudwatch/pricing/",
        inferred="not billed per request: the page bills log ingestion, storage and Logs Insights "
        "scans, and per-request API charges only for the metric and dashboard APIs it lists "
        "(GetMetricData, GetMetricStatistics, ListMetrics, PutMetricData, dashboards), as "
        "remembered, not shown in the excerpt read; at that $0.01 per 1,000 it would add $10 "
        "per 1M tasks to (b) (one GetLogEvents per task)",
    ),
}
