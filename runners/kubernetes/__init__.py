"""Kubernetes runner (``squall.runner.Kubernetes``; Kestra's ``...ee.kubernetes.runner.Kubernetes``).

Modules: ``runner`` (the protocol over the official ``kubernetes`` client), ``options`` (the
``taskRunner`` model), ``taxonomy`` (Job and Pod documents -> JobStatus, pure), ``tools`` (what
the tools image runs in the pod: staging inputs in, the log and outputs out).
"""

from runners.kubernetes.options import KubernetesOptions
from runners.kubernetes.runner import KubernetesRunner, job_name

__all__ = ["KubernetesOptions", "KubernetesRunner", "job_name"]
