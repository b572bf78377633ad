"""Where a person finds a job in its cloud's console: the id they search for and a link.

The web UI and the API show both beside each task-run attempt. Everything comes from the
job's :class:`~runners.base.JobHandle` (its id and the backend detail each runner keeps), so
nothing is asked of the cloud. Where a console needs what no handle carries, there is no link
and the id alone is shown:

* Azure Batch's portal addresses a Batch account by subscription and resource group, which a
  runner never needs (it talks to the account's endpoint), so an Azure job has no link;
* Kubernetes has no console every cluster shares (dashboards are per deployment), so the id
  is ``namespace/job``, what ``kubectl -n NAMESPACE get job JOB`` takes.

A runner this module does not know (a third party's, the local process) shows its handle's id.
"""

from __future__ import annotations

from urllib.parse import quote

from runners.base import JobHandle

__all__ = ["JobLink", "job_link"]


class JobLink(tuple[str, str | None]):
    """``(job id as its console shows it, console URL or None)``."""

    __slots__ = ()

    @property
    def job_id(self) -> str:
        return self[0]

    @property
    def url(self) -> str | None:
        return self[1]


def _q(value: object) -> str:
    return quote(str(value), safe="")


def _aws_batch(handle: JobHandle) -> JobLink:
    region = handle.data.get("region")
    if not isinstance(region, str) or not region or "endpoint" in handle.data:
        return JobLink((handle.id, None))  # an emulator's or a private endpoint's job: no console
    url = (
        f"https://{region}.console.aws.amazon.com/batch/home?region={_q(region)}#jobs/detail/{_q(handle.id)}"
    )
    return JobLink((handle.id, url))


def _google(handle: JobHandle, kind: str) -> JobLink:
    """``data['job']`` is ``projects/P/locations/L/jobs/J``; Cloud Run's run is ``data['execution']``."""
    parts = str(handle.data.get("job") or "").split("/")
    if len(parts) != 6 or parts[0] != "projects" or parts[2] != "locations" or parts[4] != "jobs":
        return JobLink((handle.id, None))
    project, location, job = parts[1], parts[3], parts[5]
    if kind == "batch":
        url = (
            f"https://console.cloud.google.com/batch/jobsDetail/regions/{_q(location)}/jobs/{_q(job)}"
            f"/details?project={_q(project)}"
        )
        return JobLink((job, url))
    run = str(handle.data.get("execution") or "").rpartition("/")[2] or job
    url = (
        f"https://console.cloud.google.com/run/jobs/executions/details/{_q(location)}/{_q(run)}"
        f"/tasks?project={_q(project)}"
    )
    return JobLink((run, url))


def _azure_batch(handle: JobHandle) -> JobLink:
    job, task = handle.data.get("job"), handle.data.get("task")
    return JobLink((f"{job}/{task}" if job and task else handle.id, None))


def _kubernetes(handle: JobHandle) -> JobLink:
    namespace, job = handle.data.get("namespace"), handle.data.get("job")
    return JobLink((f"{namespace}/{job}" if namespace and job else handle.id, None))


def job_link(handle: JobHandle) -> JobLink:
    """The job's id as its console shows it, and a link to it there when one can be built."""
    runner = handle.runner
    if runner.startswith("aws-batch"):
        return _aws_batch(handle)
    if runner.startswith("google-batch"):
        return _google(handle, "batch")
    if runner.startswith("cloud-run"):
        return _google(handle, "run")
    if runner.startswith("azure-batch"):
        return _azure_batch(handle)
    if runner.startswith("kubernetes"):
        return _kubernetes(handle)
    return JobLink((handle.id, None))
