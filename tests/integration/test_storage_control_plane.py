"""The control plane on a cloud deployment storage (S3 on moto's server), end to end.

What issue 19 was about: a later task's ``inputFiles`` naming an earlier task's output URI
(``s3://...``, written by the AWS Batch runner) must get the file, not the URI's text; an
API upload must land in the deployment storage, where a task submitted from another
container reads it. Nothing is mocked: moto serves S3 (and Batch, whose jobs really run),
the process runner runs local jobs, the API is called through its Lambda handler.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from control_plane.api import app
from control_plane.engine.states import State
from control_plane.runtime import Runtime, load_settings, local_settings, open_local, open_runtime
from control_plane.service.scripts import ScriptError, build_job_spec
from control_plane.service.storage import TaskStorage, open_task_storage
from runners.process import ProcessRunner
from tests.integration.api_events import LambdaContext, event, multipart_body
from tests.integration.service_helpers import deploy_and_run, messages, run_of
from tests.integration.test_aws_batch_runner import BatchEnv, batch_env  # noqa: F401  (a fixture)

REGION = "us-east-1"
SHELL = "io.kestra.plugin.scripts.shell.Commands"
_buckets = itertools.count()


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the control plane's default boto3 chain finds (moto accepts any)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def s3(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION)


@pytest.fixture
def bucket(moto_server: str) -> str:
    name = f"squall-cp-{os.getpid()}-{next(_buckets)}"
    s3(moto_server).create_bucket(Bucket=name)
    return name


def s3_storage(moto_server: str, root: str, read: tuple[str, ...] = ()) -> TaskStorage:
    return open_task_storage(root, read=read, options={"s3": {"endpoint_url": moto_server, "region": REGION}})


def input_files(storage: TaskStorage, files: dict[str, str]) -> dict[str, bytes]:
    _, spec = build_job_spec(
        name="job-1",
        task_type=SHELL,
        properties={"commands": ["true"], "inputFiles": files},
        timeout=None,
        output_prefix=storage.prefix("t", "f", "e2", "tr2", 1),
        labels={},
        storage=storage,
    )
    return dict(spec.input_files)


# ------------------------------------------------------------------ scripts on an s3 root


def test_a_later_task_gets_the_bytes_of_an_earlier_tasks_s3_output_uri(moto_server: str, bucket: str) -> None:
    storage = s3_storage(moto_server, f"s3://{bucket}/deploy")
    prefix = storage.prefix("t", "f", "e1", "tr1", 1)
    assert prefix == f"s3://{bucket}/deploy/t/f/e1/tr1/1/"
    # What the AWS Batch runner does with an output file: `aws s3 cp` under the prefix, and
    # it reports s3://<bucket>/<key> as the file's URI.
    s3(moto_server).put_object(Bucket=bucket, Key="deploy/t/f/e1/tr1/1/out.txt", Body=b"from a\n")
    got = input_files(
        storage,
        {"by-s3.txt": f"{prefix}out.txt", "by-kestra.txt": "kestra:///t/f/e1/tr1/1/out.txt"},
    )
    assert got == {"by-s3.txt": b"from a\n", "by-kestra.txt": b"from a\n"}


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("s3://{other}/deploy/t/f/e1/tr1/1/out.txt", "is outside the storage root"),
        ("s3://{bucket}/deployed/x.txt", "is outside the storage root"),
        ("file:///etc/passwd", "has the scheme 'file'"),
        ("kestra:///../x", "is outside the storage root"),
        ("s3://{bucket}/deploy/t/f/e1/tr1/1/missing.txt", "does not exist"),
    ],
)
def test_an_s3_root_refuses_what_is_not_its_own_and_names_the_file_the_uri_and_why(
    moto_server: str, bucket: str, uri: str, why: str
) -> None:
    other = f"{bucket}-other"
    s3(moto_server).create_bucket(Bucket=other)
    s3(moto_server).put_object(Bucket=other, Key="deploy/t/f/e1/tr1/1/out.txt", Body=b"another tenant's")
    storage = s3_storage(moto_server, f"s3://{bucket}/deploy")
    value = uri.format(bucket=bucket, other=other)
    with pytest.raises(ScriptError) as caught:
        input_files(storage, {"in.txt": value})
    assert str(caught.value).startswith(f"inputFiles.in.txt: {value!r} ")
    assert why in str(caught.value)


def test_a_prefix_on_the_read_allowlist_is_readable(moto_server: str, bucket: str) -> None:
    shared = f"{bucket}-shared"
    s3(moto_server).create_bucket(Bucket=shared)
    s3(moto_server).put_object(Bucket=shared, Key="public/ref.csv", Body=b"id\n1\n")
    s3(moto_server).put_object(Bucket=shared, Key="private/key.pem", Body=b"secret")
    storage = s3_storage(moto_server, f"s3://{bucket}/deploy", read=(f"s3://{shared}/public/",))
    assert input_files(storage, {"ref.csv": f"s3://{shared}/public/ref.csv"}) == {"ref.csv": b"id\n1\n"}
    with pytest.raises(ScriptError, match="outside the storage root"):
        input_files(storage, {"key.pem": f"s3://{shared}/private/key.pem"})


# ------------------------------------------------------------------ end to end


def test_a_flow_on_aws_batch_passes_an_output_file_to_the_next_task_through_s3(
    batch_env: BatchEnv,  # noqa: F811
    tmp_path: Path,
) -> None:
    source = f"""
id: chain
namespace: t
tasks:
  - id: a
    type: {SHELL}
    containerImage: python:3.12-slim
    taskRunner: {{type: io.kestra.plugin.ee.aws.runner.Batch}}
    outputFiles: [out.txt]
    commands: ["echo 'made by a' > out.txt"]
  - id: b
    type: {SHELL}
    containerImage: python:3.12-slim
    taskRunner: {{type: io.kestra.plugin.ee.aws.runner.Batch}}
    inputFiles:
      got.txt: "{{{{ outputs.a.outputFiles['out.txt'] }}}}"
    commands: ["echo \\"b read: $(cat got.txt)\\""]
"""
    root = f"s3://{batch_env.bucket}/deploy-{tmp_path.name}"
    settings = local_settings(
        tmp_path / "squall.db",
        data_dir=str(tmp_path),
        storage=root,
        storage_endpoint=batch_env.endpoint,
        region=REGION,
    )
    with open_local(settings, runners={"aws-batch": batch_env.runner()}) as rt:
        final = deploy_and_run(rt, source)
        assert final.state is State.SUCCESS, [(tr.task_id, tr.error) for tr in final.ordered_taskruns()]
        uri = run_of(final, "a").outputs["outputFiles"]["out.txt"]
        assert uri.startswith(f"{root}/t/chain/{final.id}/")
        assert "b read: made by a" in messages(rt, final.id, "b")


def test_a_local_jobs_output_files_are_copied_into_an_s3_storage(
    moto_server: str, bucket: str, tmp_path: Path
) -> None:
    source = f"""
id: local
namespace: t
tasks:
  - id: a
    type: {SHELL}
    outputFiles: [out.txt]
    commands: ["echo x > out.txt"]
"""
    with _process_runtime(moto_server, f"s3://{bucket}/deploy", tmp_path) as rt:
        final = deploy_and_run(rt, source)
        a = run_of(final, "a")
        assert a.state is State.SUCCESS, a.error
        assert a.outputs is not None
        uri = a.outputs["outputFiles"]["out.txt"]
        assert uri.startswith(f"s3://{bucket}/deploy/t/local/") and uri.endswith("/out.txt")
        assert rt.service.storage.read(uri) == b"x\n"


def _process_runtime(moto_server: str, root: str, tmp_path: Path, **settings: Any) -> Runtime:
    options = {
        "db": str(tmp_path / "squall.db"),
        "data_dir": str(tmp_path / "data"),
        "auth": "none",
        "storage": root,
        "storage_endpoint": moto_server,
        "region": REGION,
        **settings,
    }
    runner = ProcessRunner(tmp_path / "jobs")
    return open_runtime(load_settings({}, **options), runners={"process": runner}, submit_budget=None)


UPLOAD = f"""
id: upload
namespace: squall.api
inputs:
  - id: who
    type: STRING
  - id: data
    type: FILE
tasks:
  - id: show
    type: {SHELL}
    inputFiles:
      data.bin: "{{{{ inputs.data }}}}"
    commands: ["echo \\"{{{{ inputs.who }}}} sent $(sha256sum data.bin | cut -c1-64)\\""]
"""


def _start(rt: Runtime, fields: dict[str, str], content: bytes) -> dict[str, Any]:
    body, content_type = multipart_body(fields, {"data": ("report.bin", content)})
    raw = app.Api(rt).handle(
        event("POST", "/api/v1/main/executions/squall.api/upload", body=body, content_type=content_type),
        LambdaContext(),
    )
    return {"status": raw["statusCode"], **json.loads(raw["body"])}


def test_an_api_upload_is_stored_in_s3_and_read_by_the_task(
    moto_server: str, bucket: str, tmp_path: Path
) -> None:
    content = os.urandom(300_000)
    with _process_runtime(moto_server, f"s3://{bucket}/deploy", tmp_path) as rt:
        rt.service.deploy(UPLOAD, "upload.yaml")
        view = _start(rt, {"who": "Ada"}, content)
        assert view["status"] == 200, view
        uri = view["inputs"]["data"]
        assert uri == f"kestra:///squall.api/upload/{view['id']}/inputs/data/report.bin"
        key = f"deploy/squall.api/upload/{view['id']}/inputs/data/report.bin"
        assert s3(moto_server).get_object(Bucket=bucket, Key=key)["Body"].read() == content
        final = rt.service.run(view["id"], deadline=time.monotonic() + 60)
        assert final.state is State.SUCCESS, [(tr.task_id, tr.error) for tr in final.ordered_taskruns()]
        assert f"Ada sent {hashlib.sha256(content).hexdigest()}" in messages(rt, final.id, "show")
    # Another container (its own disk, the same settings) reads the upload by the same URI.
    with _process_runtime(moto_server, f"s3://{bucket}/deploy", tmp_path / "other") as other:
        assert other.service.storage.read(uri) == content


def test_a_refused_upload_leaves_nothing_in_s3(moto_server: str, bucket: str, tmp_path: Path) -> None:
    with _process_runtime(moto_server, f"s3://{bucket}/deploy", tmp_path) as rt:
        rt.service.deploy(UPLOAD, "upload.yaml")
        view = _start(rt, {}, b"hello")  # `who` is required: 422
        assert view["status"] == 422, view
        assert s3(moto_server).list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def _start_with_text(rt: Runtime, fields: dict[str, str], flow: str = "upload") -> dict[str, Any]:
    """A start whose FILE input is given as text (a URI), as a client may send it."""
    body, content_type = multipart_body(fields, {})
    raw = app.Api(rt).handle(
        event("POST", f"/api/v1/main/executions/squall.api/{flow}", body=body, content_type=content_type),
        LambdaContext(),
    )
    return {"status": raw["statusCode"], **json.loads(raw["body"])}


CALLER = """
id: caller
namespace: squall.api
inputs:
  - id: data
    type: FILE
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: squall.api
    flowId: upload
    wait: true
    transmitFailed: true
    inputs:
      who: child
      data: "{{ inputs.data }}"
"""


def test_a_file_input_given_as_text_must_belong_to_the_execution_its_caller_or_the_namespace(
    moto_server: str, bucket: str, tmp_path: Path
) -> None:
    """Whoever may start an execution must not read another execution's files through a FILE
    input given as a URI; a Subflow still hands its own files to its child, and a namespace
    file or the operator's allowlisted area may be named (control_plane/service/file_scope.py)."""
    shared = f"s3://{bucket}/deploy/shared/"
    with _process_runtime(moto_server, f"s3://{bucket}/deploy", tmp_path, storage_read=shared) as rt:
        rt.service.deploy(UPLOAD, "upload.yaml")
        rt.service.deploy(CALLER, "caller.yaml")
        first = _start(rt, {"who": "Ada"}, b"Ada's private report")
        assert first["status"] == 200, first
        before = s3(moto_server).list_objects_v2(Bucket=bucket)["KeyCount"]

        for uri in (first["inputs"]["data"], f"s3://{bucket}/deploy/other.ns/flow/x/inputs/data/f.bin"):
            refused = _start_with_text(rt, {"who": "Eve", "data": uri})
            assert refused["status"] == 422, refused
            assert "Invalid input for `data`" in refused["message"], refused
            assert "does not belong to this execution" in refused["message"], refused
        assert s3(moto_server).list_objects_v2(Bucket=bucket)["KeyCount"] == before  # nothing stored

        rt.service.storage.write("kestra:///_files/squall.api/report.bin", b"namespace file")
        rt.service.storage.write(f"{shared}drop.bin", b"operator's file")
        for uri, content in (
            ("kestra:///_files/squall.api/report.bin", b"namespace file"),
            (f"{shared}drop.bin", b"operator's file"),
        ):
            view = _start_with_text(rt, {"who": "Bo", "data": uri})
            assert view["status"] == 200, view
            final = rt.service.run(view["id"], deadline=time.monotonic() + 60)
            assert final.state is State.SUCCESS, [(tr.task_id, tr.error) for tr in final.ordered_taskruns()]
            assert f"Bo sent {hashlib.sha256(content).hexdigest()}" in messages(rt, final.id, "show")

        # A caller's upload, handed to a child execution as its FILE input: the child may read it.
        body, content_type = multipart_body({}, {"data": ("r.bin", b"for my child")})
        raw = app.Api(rt).handle(
            event("POST", "/api/v1/main/executions/squall.api/caller", body=body, content_type=content_type),
            LambdaContext(),
        )
        assert raw["statusCode"] == 200, raw
        caller = rt.service.run(json.loads(raw["body"])["id"], deadline=time.monotonic() + 60)
        assert caller.state is State.SUCCESS, [(tr.task_id, tr.error) for tr in caller.ordered_taskruns()]
