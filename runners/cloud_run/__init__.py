"""Cloud Run jobs runner (``squall.runner.gcp.CloudRun``, Kestra's ``...ee.gcp.runner.CloudRun``).

Modules: ``runner`` (the protocol over google-cloud-run's REST clients), ``options`` (the
``taskRunner`` model), ``taxonomy`` (execution and task documents -> JobStatus, pure). The
plumbing it shares with Google Batch: ``runners.google_runner``, ``runners.gcs_folder``.
"""

from runners.cloud_run.options import CloudRunOptions
from runners.cloud_run.runner import MOUNT, CloudRunRunner, cloud_run_job_id

__all__ = ["MOUNT", "CloudRunOptions", "CloudRunRunner", "cloud_run_job_id"]
