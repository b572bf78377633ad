"""Azure Batch runner (``squall.runner.azure.Batch``, Kestra's ``...ee.azure.runner.Batch``).

Modules: ``runner`` (the protocol over azure-batch's ``BatchClient`` and azure-storage-blob),
``options`` (the ``taskRunner`` model), ``taxonomy`` (a task document -> JobStatus, pure),
``staging`` (the task document, its files and SAS URLs, no I/O), ``cost`` (a task run's share
of its node's price, pure). Errors: :mod:`runners.azure_errors`.
"""

from runners.azure_batch.options import AzureBatchOptions
from runners.azure_batch.runner import AzureBatchRunner, azure_job_id, azure_task_id

__all__ = ["AzureBatchOptions", "AzureBatchRunner", "azure_job_id", "azure_task_id"]
