"""AWS Batch runner (``squall.runner.aws.Batch``, Kestra's ``io.kestra.plugin.ee.aws.runner.Batch``).

Modules: ``runner`` (the protocol over boto3), ``options`` (the ``taskRunner`` model),
``taxonomy`` (job document -> JobStatus, pure), ``staging`` (the container's wrapper
command), ``cost`` (billed resources and their price).
"""

from runners.aws_batch.cost import billed_resources, estimate_cost
from runners.aws_batch.options import BatchOptions, BatchResources, Pricing
from runners.aws_batch.runner import AwsBatchRunner, batch_job_name, botocore_classifier
from runners.pacing import TokenBucket

__all__ = [
    "AwsBatchRunner",
    "BatchOptions",
    "BatchResources",
    "Pricing",
    "TokenBucket",
    "batch_job_name",
    "billed_resources",
    "botocore_classifier",
    "estimate_cost",
]
