"""What an attempt's Batch task is made of: its files, SAS URLs and task document (no I/O).

Batch moves a task's files itself: ``resourceFiles`` are downloaded to the node before the
command (each by an HTTP GET of a URL), ``outputFiles`` uploaded to a blob container after it.
So nothing is needed in the user's image, and the runner's part is to describe the transfers
with URLs the node can use: SAS URLs signed with the storage account's key, read-only on each
input blob, write/create-only on the output and log containers, valid for the task's limit
plus :data:`SAS_SLACK`. :func:`plan_task` returns the blobs to upload first and the task to
create; the runner does the calls::

    plan = plan_task(spec, opts, job=job, task_id=task_id, nonce=nonce, signer=signer, now=now)
    for (container, blob), data in plan.uploads.items(): upload(container, blob, data)
    client.create_task(job, plan.task)

In the task's working directory (``$AZ_BATCH_TASK_WORKING_DIR``)::

    .squall/run.sh       the wrapper (runners/wrapper.py), the argv set inside it
    .squall/in/<rel>     inputs, which the wrapper copies into its working directory
    .squall/out/<rel>    outputs the wrapper kept, uploaded to the output prefix (blob metadata
                         ``squalltask=<nonce>``: the runner lists exactly what this task uploaded)
    ../stdout.txt        the node's log files, uploaded to <staging>/log/ at completion
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from runners.azure_batch.options import AzureBatchOptions
from runners.base import JobSpec
from runners.wrapper import check_relative, sentinel_token, wrapper_script

__all__ = ["COMMAND_LINE", "SAS_SLACK", "SQUALL_DIR", "Signer", "TaskPlan", "plan_task", "run_limit"]

SQUALL_DIR = ".squall"
COMMAND_LINE = shlex.join(["/bin/sh", "-c", f'exec /bin/sh "$AZ_BATCH_TASK_WORKING_DIR/{SQUALL_DIR}/run.sh"'])
"""Short and the same for every task: the command, of any size, is inside run.sh."""
SAS_SLACK = timedelta(days=7)
"""How long SAS URLs stay valid beyond the task's own limit: a task may wait that long for a node."""
NO_LIMIT_VALIDITY = timedelta(days=7)


class _TaskDirStaging:
    """The wrapper's copy backend: Batch put the inputs under ``.squall/in`` of the task's working
    directory; outputs go to ``.squall/out``, which Batch uploads after the command."""

    def __init__(self) -> None:
        self.tools: tuple[str, ...] = ()

    def fetch(self, uri: str, rel: str) -> str:
        return (
            f'cp -- "$AZ_BATCH_TASK_WORKING_DIR"/{shlex.quote(f"{SQUALL_DIR}/in/{rel}")} {shlex.quote(rel)}'
        )

    def put(self) -> str:
        out = f'"$AZ_BATCH_TASK_WORKING_DIR"/{SQUALL_DIR}/out'
        mkdir = f'case "$f" in */*) mkdir -p -- {out}/"${{f%/*}}" ;; *) mkdir -p -- {out} ;; esac'
        return f'{mkdir} && cp -- "$f" {out}/"$f"'


@dataclass(frozen=True)
class Signer:
    """Signs SAS URLs for one storage account (its key) at its blob endpoint."""

    account: str
    key: str
    blob_endpoint: str

    def blob_url(self, container: str, blob: str, expiry: datetime) -> str:
        """A read-only URL of one blob (a resource file)."""
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        sas = generate_blob_sas(
            self.account,
            container,
            blob,
            account_key=self.key,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
        )
        return f"{self.blob_endpoint.rstrip('/')}/{container}/{quote(blob)}?{sas}"

    def container_url(self, container: str, expiry: datetime) -> str:
        """A write/create-only URL of a container (an output destination)."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        sas = generate_container_sas(
            self.account,
            container,
            account_key=self.key,
            permission=ContainerSasPermissions(write=True, create=True),
            expiry=expiry,
        )
        return f"{self.blob_endpoint.rstrip('/')}/{container}?{sas}"

    def locate(self, uri: str, what: str) -> tuple[str, str]:
        """(container, blob name) of an ``az://`` URI of this account (ValueError otherwise)."""
        if not uri.startswith("az://"):
            raise ValueError(f"{what} {uri} is not in Azure Blob Storage (az://)")
        account, _, path = uri.removeprefix("az://").partition("/")
        container, _, name = path.partition("/")
        if account != self.account or not container:
            raise ValueError(
                f"{what} {uri} is not in the storage account {self.account} the runner signs for"
            )
        return container, name


@dataclass(frozen=True)
class TaskPlan:
    """The blobs to upload before the task, by (container, name), and the task to create."""

    uploads: Mapping[tuple[str, str], bytes]
    task: Any
    out_uri: str


def run_limit(*limits: timedelta | None) -> timedelta | None:
    """The shortest of the limits given, in whole seconds (at least one), as Batch takes it."""
    given = [limit for limit in limits if limit is not None]
    return timedelta(seconds=max(1, int(min(given).total_seconds() + 0.999))) if given else None


def _output(models: Any, pattern: str, url: str, path: str, headers: list[Any] | None = None) -> Any:
    return models.OutputFile(
        file_pattern=pattern,
        destination=models.OutputFileDestination(
            container=models.OutputFileBlobContainerDestination(
                container_url=url, path=path, upload_headers=headers
            )
        ),
        upload_options=models.OutputFileUploadConfiguration(upload_condition="taskcompletion"),
    )


def plan_task(
    spec: JobSpec,
    opts: AzureBatchOptions,
    *,
    job: str,
    task_id: str,
    nonce: str,
    signer: Signer,
    now: datetime,
) -> TaskPlan:
    """The task of one attempt and the blobs it needs (ValueError for a spec that cannot be staged).

    Its files go under ``<stagingPrefix>/<job>/<task>/<nonce>/``: a racing submitter that loses
    the create never replaces the winner's files. The task's ``displayName`` records the nonce,
    the staging folder and the output prefix, so a handle can be rebuilt from the task alone.
    """
    from azure.batch import models

    for rel in (*spec.input_files, *spec.input_uris):
        check_relative(rel, "input file")
    for glob in spec.output_files:
        check_relative(glob, "output file pattern")
    container = opts.blob_storage.container_name
    staging = f"{opts.staging_prefix}/{job}/{task_id}"
    limit = run_limit(spec.timeout, opts.max_wall_clock_time)
    expiry = now + (limit or NO_LIMIT_VALIDITY) + SAS_SLACK
    uploads: dict[tuple[str, str], bytes] = {}
    files: list[Any] = []
    for rel, data in sorted(spec.input_files.items()):
        blob = f"{staging}/{nonce}/in/{rel}"
        uploads[(container, blob)] = data
        files.append(
            models.ResourceFile(
                http_url=signer.blob_url(container, blob, expiry), file_path=f"{SQUALL_DIR}/in/{rel}"
            )
        )
    for rel, uri in sorted(spec.input_uris.items()):
        source, name = signer.locate(uri, f"input {rel}")
        files.append(
            models.ResourceFile(
                http_url=signer.blob_url(source, name, expiry), file_path=f"{SQUALL_DIR}/in/{rel}"
            )
        )
    if spec.output_prefix is not None:
        out_uri = spec.output_prefix if spec.output_prefix.endswith("/") else spec.output_prefix + "/"
    elif spec.output_files:
        out_uri = f"az://{signer.account}/{container}/{staging}/out/"
    else:
        out_uri = ""
    script = "\n".join(
        [
            f"set -- {shlex.join(spec.command)}",
            wrapper_script(
                sentinel=sentinel_token(spec.name, nonce),
                inputs={rel: f"{SQUALL_DIR}/in/{rel}" for rel in [*spec.input_files, *spec.input_uris]},
                fetch=_TaskDirStaging(),
                output_globs=spec.output_files if out_uri else (),
                upload=_TaskDirStaging() if out_uri else None,
            ),
        ]
    )
    run_blob = f"{staging}/{nonce}/run.sh"
    uploads[(container, run_blob)] = script.encode()
    files.append(
        models.ResourceFile(
            http_url=signer.blob_url(container, run_blob, expiry), file_path=f"{SQUALL_DIR}/run.sh"
        )
    )
    logs_url = signer.container_url(container, expiry)
    outputs = [
        _output(models, f"../{stream}.txt", logs_url, f"{staging}/log/{stream}.txt")
        for stream in ("stdout", "stderr")
    ]
    if out_uri:
        out_container, out_path = signer.locate(out_uri, "output prefix")
        mark = [models.OutputFileUploadHeader(name="x-ms-meta-squalltask", value=nonce)]
        outputs.append(
            _output(
                models,
                f"{SQUALL_DIR}/out/**/*",
                signer.container_url(out_container, expiry),
                out_path.rstrip("/"),
                mark,
            )
        )
    settings = None
    if spec.image is not None:
        settings = models.BatchTaskContainerSettings(
            image_name=spec.image,
            container_run_options=opts.container_run_options,
            working_directory="taskWorkingDirectory",
        )
    about = {"name": spec.name, "nonce": nonce, "out": out_uri, "staging": staging}
    task = models.BatchTaskCreateOptions(
        id=task_id,
        display_name=json.dumps(about, separators=(",", ":")),
        command_line=COMMAND_LINE,
        container_settings=settings,
        resource_files=files,
        output_files=outputs,
        environment_settings=[
            models.EnvironmentSetting(name=k, value=v)
            for k, v in {**spec.env, "SQUALL_JOB_NAME": spec.name}.items()
        ],
        constraints=models.BatchTaskConstraints(
            max_wall_clock_time=limit, retention_time=opts.retention_time, max_task_retry_count=0
        ),
        required_slots=opts.resources.required_slots,
    )
    return TaskPlan(uploads, task, out_uri)
