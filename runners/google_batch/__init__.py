"""Google Cloud Batch runner (``squall.runner.gcp.Batch``, Kestra's ``io.kestra.plugin.ee.gcp.runner.Batch``).

Modules: ``runner`` (the protocol over google-cloud-batch's REST client), ``options`` (the
``taskRunner`` model), ``taxonomy`` (job document -> JobStatus, pure). The Google pieces
Cloud Run shares live beside: ``runners.google_auth``, ``runners.google_errors``.
"""

from runners.google_batch.options import GoogleBatchOptions, Pricing
from runners.google_batch.runner import MOUNT, GoogleBatchRunner, batch_job_id, google_classifier

__all__ = ["MOUNT", "GoogleBatchOptions", "GoogleBatchRunner", "Pricing", "batch_job_id", "google_classifier"]
