"""Kestra's own Python client (``kestrapy``, pinned in the dev extra) against ``squall server``.

Every request here is made by ``kestrapy.KestraClient``; none is written by hand. The client
parses responses with strict pydantic models, but when one fails it quietly falls back to
``model_construct`` (``BaseApi._construct_model``), which accepts anything. The ``strict``
fixture turns that fallback into a test failure, so each response below is proven to parse
in the client's models as they are, not as the fallback would patch them.

Each test runs twice: against ``squall server`` over HTTP (bearer token), and against the
same API behind an API-Gateway-shaped adapter (:class:`GatewayAdapter`: payload-2.0 events
with the JWT authorizer's claims, ``auth=gateway``), the way the api Lambda is called in AWS.

Jobs run as local processes and only the server's own tick loop moves them along; waits poll
through the client with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import zipfile
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from kestrapy import KestraClient
from kestrapy.base_api import BaseApi
from kestrapy.exceptions import (
    BadRequestException,
    ConflictException,
    NotFoundException,
    UnauthorizedException,
    UnprocessableEntityException,
)
from kestrapy.models.execution import Execution
from kestrapy.models.id_with_namespace import IdWithNamespace
from kestrapy.models.label import Label
from kestrapy.models.query_filter import QueryFilter
from kestrapy.models.query_filter_field import QueryFilterField
from kestrapy.models.query_filter_op import QueryFilterOp
from requests.structures import CaseInsensitiveDict

from control_plane.api import app, tenants
from control_plane.api.app import read_only
from control_plane.server import Server
from tests.integration.api_events import JWT_AUTHORIZER, LambdaContext, event
from tests.integration.service_helpers import server_settings, wait_for

TOKEN = "kestra-client-token"
TENANT = "main"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
ENDED = {"SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED"}

LONG = """
id: long
namespace: squall.kestra
tasks:
  - id: nap
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - sleep 30
"""

WRITER = """
id: writer
namespace: squall.kestra
inputs:
  - id: data
    type: FILE
tasks:
  - id: write
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    inputFiles:
      in.bin: "{{ inputs.data }}"
    outputFiles:
      - out.txt
    commands:
      - echo "got $(wc -c < in.bin) bytes" > out.txt
"""

HOOKED = """
id: hooked
namespace: squall.kestra
inputs:
  - id: source
    type: STRING
    defaults: api
triggers:
  - id: github
    type: io.kestra.plugin.core.trigger.Webhook
    key: a-long-secret-key-1234
    inputs:
      source: webhook
tasks:
  - id: said
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.source }} {{ trigger.id }}"
"""

APPROVAL = """
id: approval
namespace: squall.kestra
tasks:
  - id: approve
    type: io.kestra.plugin.core.flow.Pause
    onResume:
      - id: ok
        type: BOOLEAN
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "approved={{ outputs.approve.onResume.ok }}"
"""

WAITING = """
id: waiting
namespace: squall.kestra
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: resumed
"""


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch) -> None:
    """A response that does not validate in kestrapy's model fails the test instead of being patched."""

    def refuse(data: Any, model_type: Any) -> Any:
        problem = "no error"
        try:
            model_type.from_dict(data)
        except Exception as exc:  # the validation error is the message
            problem = str(exc)
        raise AssertionError(
            f"response does not parse as {model_type.__name__}: {problem}\n{json.dumps(data)}"
        )

    monkeypatch.setattr(BaseApi, "_construct_model", staticmethod(refuse))


class GatewayAdapter(requests.adapters.BaseAdapter):
    """Kestra client requests as API Gateway (HTTP API, payload 2.0, JWT authorizer) gives them to Lambda.

    Each request becomes the event API Gateway would send (``tests.integration.api_events``),
    with the claims of the module's JWT authorizer in ``requestContext.authorizer``, and goes
    to the server's :class:`~control_plane.api.app.Api` (whose runtime has ``auth=gateway``,
    as in AWS) without any HTTP server in between. Writes take the server's service lock,
    as its own HTTP handler does, so the tick loop keeps running the jobs.
    """

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        body = request.body.encode() if isinstance(request.body, str) else request.body
        kind = str(request.headers.get("Content-Type", ""))
        if body is not None and not kind.startswith("multipart/"):
            body = body.decode()  # API Gateway passes text as text, binary bodies base64-encoded
        headers = {str(k): str(v) for k, v in request.headers.items()}
        raw = event(
            str(request.method),
            parts.path,
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers=headers,
            body=body,
            # API Gateway's JWT authorizer ran if the client sent credentials (a real one would
            # also check them); without any, only the routes without an authorizer reach Lambda
            authorizer=JWT_AUTHORIZER if "Authorization" in request.headers else None,
        )
        api = self.server.api
        assert api is not None
        if read_only(raw):
            answer = api.handle(raw, LambdaContext())
        else:
            with self.server.lock:
                answer = api.handle(raw, LambdaContext())
        response = requests.Response()
        response.status_code = int(answer["statusCode"])
        response.headers = CaseInsensitiveDict(answer.get("headers") or {})
        text = answer.get("body") or ""
        response._content = base64.b64decode(text) if answer.get("isBase64Encoded") else str(text).encode()
        response.raw = io.BytesIO(response._content)  # what a streaming reader (server-sent events) reads
        response.url = str(request.url)
        response.request = request
        response.reason = HTTPStatus(response.status_code).phrase
        return response

    def close(self) -> None:
        pass


@pytest.fixture(params=["http", "gateway"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """``squall server`` over HTTP with its bearer token, or its API behind API Gateway's shape."""
    auth = "token" if request.param == "http" else "gateway"
    settings = server_settings(tmp_path, TOKEN, auth=auth)
    with Server(settings, host="127.0.0.1", port=0, tick_interval=0.1) as srv:
        yield srv, request.param


@pytest.fixture
def kestra(served: tuple[Server, str], strict: None) -> Iterator[KestraClient]:
    server, mode = served
    host = server.url if mode == "http" else "https://abc123.execute-api.eu-west-1.amazonaws.com"
    with KestraClient(host=host, token=TOKEN, timeout=30) as client:
        if mode == "gateway":  # kestrapy has no transport option: its session is the seam
            client._session.mount(host, GatewayAdapter(server))
        yield client


def _until(kestra: KestraClient, execution_id: str, states: set[str], deadline_s: float = 60) -> Execution:
    seen: list[Execution] = []

    def reached() -> bool:
        seen.append(kestra.executions.execution(execution_id, TENANT))
        return seen[-1].state.current.value in states

    wait_for(reached, deadline_s, f"execution {execution_id} to reach {states}")
    return seen[-1]


def _filter(field: QueryFilterField, op: QueryFilterOp, value: Any) -> QueryFilter:
    return QueryFilter(var_field=field, operation=op, value=value)


def test_the_client_discovers_the_server(kestra: KestraClient) -> None:
    config = kestra.misc.configuration()
    assert config.edition is not None and config.edition.value == "OSS"
    assert config.version


def test_basic_auth_with_the_token_as_password(tmp_path: Path, strict: None) -> None:
    with Server(server_settings(tmp_path, TOKEN), host="127.0.0.1", port=0, tick_interval=0.1) as server:
        with KestraClient(host=server.url, username="admin", password=TOKEN, timeout=30) as client:
            assert client.flows.search_flows(TENANT).total == 0
        with (
            KestraClient(host=server.url, username="admin", password="wrong", timeout=30) as client,
            pytest.raises(UnauthorizedException),
        ):
            client.flows.search_flows(TENANT)
        # Kestra's clients read the configuration before they authenticate: it holds no data
        with KestraClient(host=server.url, timeout=30) as anonymous:
            assert anonymous.misc.configuration().edition.value == "OSS"
            with pytest.raises(UnauthorizedException):
                anonymous.flows.search_flows(TENANT)


def test_flows_create_read_update_search_validate_and_delete(kestra: KestraClient) -> None:
    source = (SAMPLES / "hello.yaml").read_text()
    created = kestra.flows.create_flow(TENANT, source)
    assert (created.namespace, created.id, created.revision) == ("squall.samples", "hello", 1)
    assert [t.id for t in created.tasks] == ["greet", "each_planet", "summary"]
    assert created.labels is not None and [(x.key, x.value) for x in created.labels] == [("team", "docs")]
    assert created.source == source and created.disabled is False and created.deleted is False
    with pytest.raises(UnprocessableEntityException, match="already exists"):
        kestra.flows.create_flow(TENANT, source)

    updated = kestra.flows.update_flow("squall.samples", "hello", TENANT, source + "\n# edited\n")
    assert updated.revision == 2
    assert kestra.flows.flow("squall.samples", "hello", TENANT, revision=1).source == source
    revisions = kestra.flows.list_flow_revisions("squall.samples", "hello", TENANT)
    assert [r.revision for r in revisions] == [1, 2]

    kestra.flows.create_flow(TENANT, LONG)
    kestra.flows.create_flow(TENANT, APPROVAL)
    everything = kestra.flows.search_flows(TENANT, page=1, size=2, sort=["id:asc"])
    assert everything.total == 3 and [f.id for f in everything.results] == ["approval", "hello"]
    assert [f.id for f in kestra.flows.search_flows(TENANT, page=2, size=2, sort=["id:asc"]).results] == [
        "long"
    ]
    in_samples = kestra.flows.search_flows(
        TENANT, filters=[_filter(QueryFilterField.NAMESPACE, QueryFilterOp.EQUALS, "squall.samples")]
    )
    assert in_samples.total == 1 and in_samples.results[0].id == "hello"
    by_text = kestra.flows.search_flows(
        TENANT, filters=[_filter(QueryFilterField.QUERY, QueryFilterOp.EQUALS, "appro")]
    )
    assert [f.id for f in by_text.results] == ["approval"]
    listed = kestra.flows.list_flows_by_namespace("squall.kestra", TENANT)
    assert sorted(f.id for f in listed) == ["approval", "long"]
    assert kestra.flows.list_distinct_namespaces(TENANT) == ["squall.kestra", "squall.samples"]
    namespaces = kestra.namespaces.search_namespaces(TENANT, page=1, size=2, sort=["id:asc"])
    assert namespaces.total == 3 and [n.id for n in namespaces.results] == ["squall", "squall.kestra"]
    held = kestra.namespaces.search_namespaces(TENANT, existing=True)
    assert sorted(n.id for n in held.results) == ["squall.kestra", "squall.samples"]
    assert kestra.namespaces.namespace("squall", TENANT).id == "squall"
    with pytest.raises(NotFoundException):
        kestra.namespaces.namespace("elsewhere", TENANT)

    broken = "id: broken\nnamespace: squall.kestra\ntasks:\n  - id: x\n    type: squall.core.Nope\n"
    reports = kestra.flows.validate_flows(TENANT, LONG + "\n---\n" + broken)
    assert [r.index for r in reports] == [0, 1]
    assert reports[0].constraints is None and reports[0].flow == "long"
    assert reports[1].constraints and "tasks[0]" in reports[1].constraints

    kestra.flows.delete_flow("squall.samples", "hello", TENANT)
    with pytest.raises(NotFoundException):
        kestra.flows.flow("squall.samples", "hello", TENANT)


SCHEDULED = """
id: scheduled
namespace: squall.kestra
triggers:
  - id: hourly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 * * * *"
  - id: never
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 0 * * *"
    disabled: true
tasks:
  - id: r
    type: io.kestra.plugin.core.debug.Return
    format: hi
"""


def test_a_schedule_lists_its_next_dates_in_extras_the_client_keeps(kestra: KestraClient) -> None:
    from datetime import UTC, datetime, timedelta
    from itertools import pairwise

    kestra.flows.create_flow(TENANT, SCHEDULED)
    before = datetime.now(UTC)
    read = kestra.flows.flow("squall.kestra", "scheduled", TENANT)
    hourly, never = (t.to_dict() for t in read.triggers or [])
    dates = [datetime.fromisoformat(d) for d in hourly["nextExecutionDates"]]
    assert len(dates) == 3 and hourly["nextExecutionDate"] == hourly["nextExecutionDates"][0]
    assert before < dates[0] <= before + timedelta(hours=1, minutes=1) and dates[0].minute == 0
    assert [b - a for a, b in pairwise(dates)] == [timedelta(hours=1)] * 2
    assert never["nextExecutionDates"] == [] and never["nextExecutionDate"] is None
    (listed,) = kestra.flows.search_flows(
        TENANT, filters=[_filter(QueryFilterField.QUERY, QueryFilterOp.EQUALS, "scheduled")]
    ).results
    assert (listed.triggers or [])[0].to_dict()["nextExecutionDates"] == hourly["nextExecutionDates"]


def test_export_reimport_disable_enable_and_delete_in_bulk(kestra: KestraClient) -> None:
    hello = (SAMPLES / "hello.yaml").read_text()
    for source in (hello, LONG, APPROVAL):
        kestra.flows.create_flow(TENANT, source)
    exported = kestra.flows.export_flows_by_query(
        TENANT, filters=[_filter(QueryFilterField.NAMESPACE, QueryFilterOp.EQUALS, "squall.kestra")]
    )
    with zipfile.ZipFile(io.BytesIO(exported)) as archive:
        assert sorted(archive.namelist()) == ["squall.kestra.approval.yml", "squall.kestra.long.yml"]
        assert archive.read("squall.kestra.long.yml").decode() == LONG
    one = kestra.flows.export_flows_by_ids(TENANT, [IdWithNamespace(namespace="squall.samples", id="hello")])
    with zipfile.ZipFile(io.BytesIO(one)) as archive:
        assert archive.namelist() == ["squall.samples.hello.yml"]

    deleted = kestra.flows.delete_flows_by_query(
        TENANT, filters=[_filter(QueryFilterField.NAMESPACE, QueryFilterOp.EQUALS, "squall.kestra")]
    )
    assert deleted.count == 2 and kestra.flows.search_flows(TENANT).total == 1
    assert kestra.flows.import_flows(TENANT, file_content=exported) == []
    reimported = kestra.flows.flow("squall.kestra", "long", TENANT)
    assert reimported.source == LONG and (reimported.revision or 0) > 1  # revisions go on after a delete

    broken = "id: broken\nnamespace: squall.kestra\ntasks: []\n"
    with pytest.raises(UnprocessableEntityException, match="nothing imported"):
        kestra.flows.import_flows(TENANT, fail_on_error=True, file_content=broken)
    assert kestra.flows.import_flows(TENANT, file_content=broken) == ["document 0"]

    ids = [IdWithNamespace(namespace="squall.kestra", id="long")]
    assert kestra.flows.disable_flows_by_ids(TENANT, ids).count == 1
    disabled = kestra.flows.flow("squall.kestra", "long", TENANT)
    assert disabled.disabled is True and disabled.revision == (reimported.revision or 0) + 1
    with pytest.raises(ConflictException, match="disabled"):
        kestra.executions.create_execution(TENANT, "squall.kestra", "long")
    assert kestra.flows.enable_flows_by_ids(TENANT, ids).count == 1
    assert kestra.flows.flow("squall.kestra", "long", TENANT).disabled is False
    with pytest.raises(NotFoundException, match=r"squall\.kestra\.nope"):
        kestra.flows.delete_flows_by_ids(TENANT, [IdWithNamespace(namespace="squall.kestra", id="nope")])
    assert kestra.flows.delete_flows_by_ids(TENANT, ids).count == 1


def test_run_a_sample_search_it_and_read_its_logs(kestra: KestraClient) -> None:
    kestra.flows.create_flow(TENANT, (SAMPLES / "hello.yaml").read_text())
    started = kestra.executions.create_execution(
        TENANT, "squall.samples", "hello", inputs={"name": "Ada"}, labels=["run:first"]
    )
    assert started.flow_revision == 1 and started.original_id == started.id
    done = _until(kestra, started.id, ENDED)
    assert done.state.current.value == "SUCCESS"
    assert done.state.histories[0].state.value == "CREATED"
    assert done.state.histories[-1].state.value == "SUCCESS" and done.state.end_date is not None
    assert done.additional_properties["outputs"] == {"summary": "Ada visited 3 planets, last EARTH"}
    assert {tr.task_id for tr in done.task_run_list or []} >= {"greet", "each_planet", "planet", "summary"}
    assert done.labels is not None and ("run", "first") in [(x.key, x.value) for x in done.labels]

    other = kestra.executions.create_execution(TENANT, "squall.samples", "hello", inputs={"name": "Bob"})
    _until(kestra, other.id, ENDED)

    found = kestra.executions.search_executions(
        TENANT,
        page=1,
        size=1,
        sort=["state.startDate:desc"],
        filters=[
            _filter(QueryFilterField.NAMESPACE, QueryFilterOp.EQUALS, "squall.samples"),
            _filter(QueryFilterField.STATE, QueryFilterOp.IN, ["SUCCESS", "FAILED"]),
        ],
    )
    assert found["total"] == 2 and [e["id"] for e in found["results"]] == [other.id]
    assert all(Execution.from_dict(item) for item in found["results"])  # the raw answer parses too
    labelled = kestra.executions.search_executions(
        TENANT, filters=[_filter(QueryFilterField.LABELS, QueryFilterOp.EQUALS, {"run": "first"})]
    )
    assert [e["id"] for e in labelled["results"]] == [started.id]
    under = kestra.executions.search_executions(
        TENANT, filters=[_filter(QueryFilterField.NAMESPACE, QueryFilterOp.PREFIX, "squall")]
    )
    assert under["total"] == 2
    relabelled = kestra.executions.set_labels_on_terminated_execution(
        started.id, TENANT, [Label(key="run", value="kept"), Label(key="owner", value="ada")]
    )
    assert {(x.key, x.value) for x in relabelled.labels or []} == {
        ("run", "kept"),
        ("owner", "ada"),
        ("system.correlationId", started.id),  # Squall's own labels stay, as in Kestra
    }
    with pytest.raises(UnprocessableEntityException, match="system"):
        kestra.executions.set_labels_on_terminated_execution(
            started.id, TENANT, [Label(key="system.replay", value="x")]
        )
    kept = kestra.executions.search_executions(
        TENANT, filters=[_filter(QueryFilterField.LABELS, QueryFilterOp.EQUALS, {"owner": "ada"})]
    )
    assert [e["id"] for e in kept["results"]] == [started.id]
    by_flow = kestra.executions.search_executions_by_flow_id(
        TENANT, "squall.samples", "hello", page=2, size=1
    )
    assert by_flow["total"] == 2 and [e["id"] for e in by_flow["results"]] == [started.id]

    greet = kestra.logs.list_logs_from_execution(started.id, TENANT, min_level="INFO", task_id="greet")
    assert [entry.message for entry in greet] == ["Hello, Ada!"]
    assert greet[0].namespace == "squall.samples" and greet[0].flow_id == "hello"
    assert kestra.logs.list_logs_from_execution(started.id, TENANT, min_level="ERROR") == []
    text = kestra.logs.download_logs_from_execution(started.id, TENANT, task_id="greet")
    assert text.endswith(" INFO Hello, Ada!\n")


FAILING = """
id: failing
namespace: squall.kestra
tasks:
  - id: boom
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - exit 3
"""


def test_a_failed_job_says_where_it_ran_and_why_in_extras_the_client_keeps(kestra: KestraClient) -> None:
    """runner, jobId, jobUrl and failureClass are Squall extras: the model parses and keeps them."""
    kestra.flows.create_flow(TENANT, FAILING)
    started = kestra.executions.create_execution(TENANT, "squall.kestra", "failing")
    done = _until(kestra, started.id, ENDED)
    assert done.state.current.value == "FAILED"
    (boom,) = [tr for tr in done.task_run_list or [] if tr.task_id == "boom"]
    extras = boom.additional_properties
    assert extras["runner"] == "process" and extras["failureClass"] == "USER"
    assert extras["jobId"] and extras["jobUrl"] is None  # a local process has no console
    (attempt,) = boom.attempts or []
    assert attempt.additional_properties["failureClass"] == "USER"
    assert attempt.additional_properties["jobId"] == extras["jobId"]


def test_follow_an_execution_to_its_end(kestra: KestraClient) -> None:
    kestra.flows.create_flow(TENANT, (SAMPLES / "hello.yaml").read_text())
    started = kestra.executions.create_execution(TENANT, "squall.samples", "hello")
    events = list(kestra.executions.follow_execution(started.id, TENANT))
    assert events and all(e.id == started.id for e in events)
    assert events[-1].state.current.value == "SUCCESS"
    lines = list(kestra.logs.follow_logs_from_execution(started.id, TENANT, min_level="INFO"))
    assert [line.message for line in lines if line.task_id == "greet"] == ["Hello, world!"]
    assert events[-1].additional_properties["outputs"] == {"summary": "world visited 3 planets, last EARTH"}
    with pytest.raises(NotFoundException):
        list(kestra.executions.follow_execution("no-such-execution", TENANT))


def test_upload_a_file_and_download_the_outputs(kestra: KestraClient) -> None:
    kestra.flows.create_flow(TENANT, WRITER)
    content = bytes(range(256)) * 4
    started = kestra.executions.create_execution(
        TENANT, "squall.kestra", "writer", inputs={"data": ("blob.bin", content)}
    )
    uploaded = (started.inputs or {})["data"]
    assert uploaded.startswith(f"kestra:///squall.kestra/writer/{started.id}/inputs/data/")
    assert kestra.executions.download_file_from_execution(started.id, uploaded, TENANT) == content
    done = _until(kestra, started.id, ENDED)
    assert done.state.current.value == "SUCCESS", done
    (write,) = done.task_run_list or []
    out = write.additional_properties["outputs"]["outputFiles"]["out.txt"]
    assert kestra.executions.download_file_from_execution(started.id, out, TENANT) == b"got 1024 bytes\n"
    assert kestra.executions.file_metadatas_from_execution(started.id, out, TENANT).size == 15
    other = kestra.executions.create_execution(TENANT, "squall.kestra", "writer", inputs={"data": b"x"})
    for elsewhere in (out.replace(started.id, other.id), f"kestra:///squall.kestra/writer/{started.id}/../x"):
        with pytest.raises(NotFoundException):
            kestra.executions.download_file_from_execution(started.id, elsewhere, TENANT)


def test_a_webhook_at_kestras_path_needs_only_its_key(
    kestra: KestraClient, served: tuple[Server, str]
) -> None:
    kestra.flows.create_flow(TENANT, HOOKED)
    host = kestra._base_url
    with KestraClient(host=host, timeout=30) as anonymous:  # no credentials: the key is the credential
        if served[1] == "gateway":
            anonymous._session.mount(host, GatewayAdapter(served[0]))
        with pytest.raises(UnauthorizedException):
            anonymous.flows.search_flows(TENANT)
        accepted = anonymous.executions.trigger_execution_by_get_webhook(
            TENANT, "squall.kestra", "hooked", "a-long-secret-key-1234"
        )
        with pytest.raises(NotFoundException):
            anonymous.executions.trigger_execution_by_get_webhook(
                TENANT, "squall.kestra", "hooked", "wrong-key"
            )
        # a flow of namespace "webhook" shares the path's beginning, not its exemption from auth
        kestra.flows.create_flow(TENANT, LONG.replace("namespace: squall.kestra", "namespace: webhook"))
        with pytest.raises(UnauthorizedException):
            anonymous.executions.create_execution(TENANT, "webhook", "long")
        with pytest.raises(UnauthorizedException):
            anonymous.executions.kill_execution("webhook", TENANT)
    assert accepted.tenant_id == TENANT and accepted.flow_id == "hooked" and accepted.id
    done = _until(kestra, accepted.id, ENDED)
    (said,) = done.task_run_list or []
    assert said.additional_properties["outputs"] == {"value": "webhook github"}


def test_kill_restart_and_replay(kestra: KestraClient) -> None:
    kestra.flows.create_flow(TENANT, LONG)
    started = kestra.executions.create_execution(TENANT, "squall.kestra", "long")
    _until(kestra, started.id, {"RUNNING"})
    killed = kestra.executions.kill_execution(started.id, TENANT)
    assert killed.id == started.id
    assert _until(kestra, started.id, ENDED, deadline_s=20).state.current.value == "KILLED"

    restarted = kestra.executions.restart_execution(started.id, TENANT)
    assert restarted.id == started.id and restarted.state.current.value not in ENDED
    kestra.executions.kill_execution(started.id, TENANT)
    assert _until(kestra, started.id, ENDED, deadline_s=20).state.current.value == "KILLED"

    with pytest.raises(ConflictException, match="nothing done"):  # checked first: one refuses, none runs
        kestra.executions.restart_executions_by_ids(TENANT, [started.id, _finished_hello(kestra)])
    assert kestra.executions.execution(started.id, TENANT).state.current.value == "KILLED"
    assert kestra.executions.restart_executions_by_ids(TENANT, [started.id]) == {"count": 1}
    assert kestra.executions.kill_executions_by_ids(TENANT, [started.id]) == {"count": 1}
    assert _until(kestra, started.id, ENDED, deadline_s=20).state.current.value == "KILLED"
    with pytest.raises(NotFoundException, match="nope"):
        kestra.executions.kill_executions_by_ids(TENANT, ["nope"])

    replayed = kestra.executions.replay_execution(started.id, TENANT)
    assert replayed.id != started.id and replayed.original_id == started.id
    assert ("system.replay", "true") in [(x.key, x.value) for x in replayed.labels or []]
    kestra.executions.kill_execution(replayed.id, TENANT)
    assert _until(kestra, replayed.id, ENDED, deadline_s=20).state.current.value == "KILLED"


def _finished_hello(kestra: KestraClient) -> str:
    """The id of a SUCCESS execution of the hello sample (deployed here when it is not yet)."""
    with contextlib.suppress(UnprocessableEntityException):  # already deployed
        kestra.flows.create_flow(TENANT, (SAMPLES / "hello.yaml").read_text())
    started = kestra.executions.create_execution(TENANT, "squall.samples", "hello")
    assert _until(kestra, started.id, ENDED).state.current.value == "SUCCESS"
    return started.id


def test_replay_with_new_inputs(kestra: KestraClient) -> None:
    kestra.flows.create_flow(TENANT, (SAMPLES / "hello.yaml").read_text())
    first = kestra.executions.create_execution(TENANT, "squall.samples", "hello", inputs={"name": "Ada"})
    _until(kestra, first.id, ENDED)
    again = kestra.executions.replay_execution_with_inputs(first.id, TENANT, inputs={"name": "Grace"})
    assert again.original_id == first.id and again.inputs == {"name": "Grace"}
    done = _until(kestra, again.id, ENDED)
    assert done.additional_properties["outputs"] == {"summary": "Grace visited 3 planets, last EARTH"}


def test_pause_and_resume_with_inputs(kestra: KestraClient) -> None:
    kestra.flows.create_flow(TENANT, APPROVAL)
    started = kestra.executions.create_execution(TENANT, "squall.kestra", "approval")
    assert _until(kestra, started.id, {"PAUSED"} | ENDED).state.current.value == "PAUSED"
    with pytest.raises(UnprocessableEntityException, match="ok"):  # a file is no BOOLEAN
        kestra.executions.resume_execution(started.id, TENANT, inputs={"ok": b"a file"})
    assert kestra.executions.execution(started.id, TENANT).state.current.value == "PAUSED"
    with pytest.raises(ConflictException, match="only PAUSED"):
        kestra.executions.resume_executions_by_ids(TENANT, [_finished_hello(kestra)])
    kestra.executions.resume_execution(started.id, TENANT, inputs={"ok": True})
    done = _until(kestra, started.id, ENDED)
    assert done.state.current.value == "SUCCESS"
    after = next(tr for tr in done.task_run_list or [] if tr.task_id == "after")
    assert after.additional_properties["outputs"] == {"value": "approved=true"}


SIGNED = """
id: signed
namespace: squall.kestra
tasks:
  - id: sign
    type: io.kestra.plugin.core.flow.Pause
    onResume:
      - id: document
        type: FILE
  - id: read
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    inputFiles:
      signed.txt: "{{ outputs.sign.onResume.document }}"
    commands:
      - cat signed.txt
"""


def test_resume_with_a_file_input(kestra: KestraClient, served: tuple[Server, str]) -> None:
    """A FILE onResume input is uploaded with the resume (multipart) into a folder of its own."""
    kestra.flows.create_flow(TENANT, SIGNED)
    started = kestra.executions.create_execution(TENANT, "squall.kestra", "signed")
    assert _until(kestra, started.id, {"PAUSED"} | ENDED).state.current.value == "PAUSED"
    kestra.executions.resume_execution(started.id, TENANT, inputs={"document": b"signed by Ada\n"})
    done = _until(kestra, started.id, ENDED)
    assert done.state.current.value == "SUCCESS"
    sign = next(tr for tr in done.task_run_list or [] if tr.task_id == "sign")
    uri = sign.additional_properties["outputs"]["onResume"]["document"]
    assert uri.startswith(f"kestra:///squall.kestra/signed/{started.id}/inputs/resume-")
    lines = kestra.logs.list_logs_from_execution(started.id, TENANT, task_id="read")
    assert "signed by Ada" in [entry.message for entry in lines]


def _flow_filters(flow_id: str, *states: str) -> list[QueryFilter]:
    found = [_filter(QueryFilterField.FLOW_ID, QueryFilterOp.EQUALS, flow_id)]
    return found + ([_filter(QueryFilterField.STATE, QueryFilterOp.IN, list(states))] if states else [])


def _stored(tmp_path: Path, execution_id: str) -> list[Path]:
    """The files the deployment storage holds for one execution (its uploads and outputs)."""
    return [p for p in (tmp_path / "data").rglob("*") if p.is_file() and execution_id in p.parts]


def test_delete_an_execution_by_id_by_ids_and_by_query(kestra: KestraClient, tmp_path: Path) -> None:
    kestra.flows.create_flow(TENANT, WRITER)
    ids = []
    for n in range(4):
        started = kestra.executions.create_execution(
            TENANT, "squall.kestra", "writer", inputs={"data": b"x" * n}
        )
        assert _until(kestra, started.id, ENDED).state.current.value == "SUCCESS"
        ids.append(started.id)
    assert all(_stored(tmp_path, i) for i in ids)  # its upload and its output file
    kestra.flows.create_flow(TENANT, LONG)
    running = kestra.executions.create_execution(TENANT, "squall.kestra", "long").id
    _until(kestra, running, {"RUNNING"})

    kestra.executions.delete_execution(ids[0], TENANT)  # 204
    with pytest.raises(NotFoundException):
        kestra.executions.execution(ids[0], TENANT)
    assert _stored(tmp_path, ids[0]) == []
    with pytest.raises(NotFoundException):
        kestra.executions.delete_execution(ids[0], TENANT)
    kestra.executions.delete_execution(ids[1], TENANT, delete_storage=False)
    assert _stored(tmp_path, ids[1])  # kept, as asked

    with pytest.raises(ConflictException, match="kill it"):
        kestra.executions.delete_execution(running, TENANT)
    with pytest.raises(ConflictException, match="nothing done"):  # checked first: nothing deleted
        kestra.executions.delete_executions_by_ids(TENANT, [ids[2], running])
    assert kestra.executions.execution(ids[2], TENANT).state.current.value == "SUCCESS"
    with pytest.raises(BadRequestException, match="includeNonTerminated"):
        kestra.executions.delete_executions_by_ids(TENANT, [running], include_non_terminated=True)
    with pytest.raises(BadRequestException, match="deleteLogs"):
        kestra.executions.delete_execution(ids[2], TENANT, delete_logs=False)
    assert kestra.executions.delete_executions_by_ids(TENANT, [ids[2], ids[2]]).count == 1

    assert kestra.executions.delete_executions_by_query(TENANT, _flow_filters("writer", "SUCCESS")) == {
        "count": 1
    }
    assert kestra.executions.search_executions(TENANT, filters=_flow_filters("writer"))["total"] == 0
    assert kestra.executions.execution(running, TENANT).state.current.value == "RUNNING"
    assert kestra.executions.kill_executions_by_query(TENANT, _flow_filters("long", "RUNNING")) == {
        "count": 1
    }
    assert _until(kestra, running, ENDED, deadline_s=20).state.current.value == "KILLED"
    assert kestra.executions.delete_executions_by_query(TENANT, _flow_filters("long")) == {"count": 1}


def test_restart_resume_replay_and_label_by_query(kestra: KestraClient) -> None:
    kestra.flows.create_flow(TENANT, LONG)
    long_ids = [kestra.executions.create_execution(TENANT, "squall.kestra", "long").id for _ in range(2)]
    for execution_id in long_ids:
        _until(kestra, execution_id, {"RUNNING"})
    assert kestra.executions.kill_executions_by_query(TENANT, _flow_filters("long")) == {"count": 2}
    for execution_id in long_ids:
        assert _until(kestra, execution_id, ENDED, deadline_s=20).state.current.value == "KILLED"
    assert kestra.executions.restart_executions_by_query(TENANT, _flow_filters("long", "KILLED")) == {
        "count": 2
    }
    assert kestra.executions.kill_executions_by_query(TENANT, _flow_filters("long", "RUNNING")) == {
        "count": 2
    }

    kestra.flows.create_flow(TENANT, WAITING)
    paused = kestra.executions.create_execution(TENANT, "squall.kestra", "waiting").id
    assert _until(kestra, paused, {"PAUSED"} | ENDED).state.current.value == "PAUSED"
    with pytest.raises(ConflictException, match="only PAUSED"):  # no state filter: a killed one refuses
        kestra.executions.resume_executions_by_query(
            TENANT, [_filter(QueryFilterField.NAMESPACE, QueryFilterOp.EQUALS, "squall.kestra")]
        )
    assert kestra.executions.resume_executions_by_query(TENANT, _flow_filters("waiting", "PAUSED")) == {
        "count": 1
    }
    assert _until(kestra, paused, ENDED).state.current.value == "SUCCESS"

    assert kestra.executions.replay_executions_by_query(TENANT, _flow_filters("waiting")) == {"count": 1}
    assert kestra.executions.search_executions(TENANT, filters=_flow_filters("waiting"))["total"] == 2
    with pytest.raises(BadRequestException, match="latestRevision"):
        kestra.executions.replay_executions_by_query(TENANT, _flow_filters("waiting"), latest_revision=True)

    for execution_id in long_ids:
        _until(kestra, execution_id, ENDED, deadline_s=20)
    labels = [Label(key="team", value="data")]
    assert kestra.executions.set_labels_on_terminated_executions_by_query(
        TENANT, labels, _flow_filters("long")
    ) == {"count": 2}
    assert kestra.executions.set_labels_on_terminated_executions_by_ids(
        TENANT, {"executionsId": long_ids[:1], "executionLabels": [{"key": "team", "value": "ops"}]}
    ) == {"count": 1}
    by_team = {
        label: kestra.executions.search_executions(
            TENANT, filters=[_filter(QueryFilterField.LABELS, QueryFilterOp.EQUALS, {"team": label})]
        )["total"]
        for label in ("data", "ops")
    }
    assert by_team == {"data": 1, "ops": 1}
    with pytest.raises(UnprocessableEntityException, match="system"):
        kestra.executions.set_labels_on_terminated_executions_by_query(
            TENANT, [Label(key="system.x", value="y")], _flow_filters("long")
        )


def test_kv_pairs_set_read_list_and_delete(kestra: KestraClient) -> None:
    kv = kestra.kv
    values = {
        "text": ("hello world", "STRING", "hello world"),
        "quoted": ('"42"', "STRING", "42"),
        "count": ("42", "NUMBER", 42),
        "flag": ("true", "BOOLEAN", True),
        "config": ('{"a": [1, 2]}', "JSON", {"a": [1, 2]}),
        "day": ("2026-03-01", "DATE", "2026-03-01"),
        "wait": ("PT5M", "DURATION", "PT5M"),
    }
    for key, (text, _, _) in values.items():
        kv.set_key_value("squall.kestra", key, TENANT, text)
    for key, (_, kind, value) in values.items():
        detail = kv.key_value("squall.kestra", key, TENANT)
        assert (detail.type.value if detail.type else None, detail.value) == (kind, value), key
    kv.set_key_value("squall.kestra", "count", TENANT, "43")
    assert kv.key_value("squall.kestra", "count", TENANT).revision == 2
    kv.set_key_value("squall.other", "count", TENANT, "1")

    listed = kv.list_all_keys(
        TENANT, filters=[_filter(QueryFilterField.NAMESPACE, QueryFilterOp.EQUALS, "squall.kestra")]
    )
    assert listed.total == len(values) and sorted(e.key for e in listed.results) == sorted(values)
    assert kv.list_all_keys(TENANT, page=1, size=2, sort=["key:asc"]).total == len(values) + 1

    assert kv.delete_key_value("squall.kestra", "flag", TENANT) is True
    assert kv.delete_key_value("squall.kestra", "flag", TENANT) is False
    with pytest.raises(NotFoundException):
        kv.key_value("squall.kestra", "flag", TENANT)
    with pytest.raises(UnprocessableEntityException, match="invalid key"):
        kv.set_key_value("squall.kestra", "-bad", TENANT, "x")


def test_namespace_files_upload_list_download_and_delete(kestra: KestraClient) -> None:
    files = kestra.files
    content = bytes(range(256))
    files.create_namespace_file("squall.kestra", "/scripts/etl.py", TENANT, file_content=b"print(1)\n")
    files.create_namespace_file("squall.kestra", "/scripts/data/blob.bin", TENANT, file_content=content)
    files.create_namespace_file("squall.kestra", "/README.md", TENANT, file_content=b"# hi\n")
    assert files.file_content("squall.kestra", "/scripts/data/blob.bin", TENANT) == content
    top = files.list_namespace_directory_files("squall.kestra", TENANT)
    assert [(f.file_name, f.type.value if f.type else None) for f in top] == [
        ("README.md", "File"),
        ("scripts", "Directory"),
    ]
    inside = files.list_namespace_directory_files("squall.kestra", TENANT, path="/scripts")
    assert {(f.file_name, f.size) for f in inside} == {("data", 0), ("etl.py", 9)}
    assert files.file_metadatas("squall.kestra", TENANT, path="/scripts/etl.py").size == 9
    with pytest.raises(UnprocessableEntityException, match="path"):
        files.file_content("squall.kestra", "/scripts/../../x", TENANT)
    files.delete_file_directory("squall.kestra", "/scripts", TENANT)
    assert [f.file_name for f in files.list_namespace_directory_files("squall.kestra", TENANT)] == [
        "README.md"
    ]
    with pytest.raises(NotFoundException):
        files.file_content("squall.kestra", "/scripts/etl.py", TENANT)


def test_refusals_are_kestra_errors_that_name_the_problem(kestra: KestraClient) -> None:
    with pytest.raises(NotFoundException) as other_tenant:
        kestra.flows.search_flows("acme")
    body = json.loads(other_tenant.value.body)
    assert "tenant 'acme' not found" in body["message"]
    assert body["_embedded"]["errors"][0]["message"] == body["message"]
    assert body["_links"]["self"]["href"] == "/api/v1/acme/flows/search"

    with pytest.raises(BadRequestException) as unsupported:
        kestra.executions.search_executions(
            TENANT, filters=[_filter(QueryFilterField.TRIGGER_ID, QueryFilterOp.EQUALS, "x")]
        )
    assert "filters[triggerId][EQUALS]" in json.loads(unsupported.value.body)["message"]

    kestra.flows.create_flow(TENANT, LONG)
    with pytest.raises(BadRequestException, match="wait"):
        kestra.executions.create_execution(TENANT, "squall.kestra", "long", wait=True)
    with pytest.raises(NotFoundException):
        kestra.executions.execution("no-such-execution", TENANT)


def test_every_tenant_route_is_guarded_and_documented() -> None:
    """The routes served are the routes in /openapi.json, and every {tenant} route checks its tenant."""
    served: set[tuple[str, str]] = set()
    for route in app.app._static_routes + app.app._dynamic_routes:
        if not route.include_in_schema:
            continue
        path = route.openapi_path
        served.add((route.method.lower(), path))
        if "{tenant}" in path:
            assert tenants.is_scoped(route), path
    document = json.loads(app.openapi_document())
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert served == documented
    assert ("post", "/api/v1/{tenant}/executions/{namespace}/{flow_id}") in served


def test_the_client_against_squall_server_on_dynamodb_local(
    tmp_path: Path, dynamodb_table: tuple[Any, str], monkeypatch: pytest.MonkeyPatch, strict: None
) -> None:
    """The Lambda's store under the same routes: revisions, searches, logs and labels on DynamoDB."""
    client, table = dynamodb_table
    settings = server_settings(
        tmp_path,
        TOKEN,
        store="dynamodb",
        table=table,
        dynamodb_endpoint=client.meta.endpoint_url,
        region="us-east-1",
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")  # DynamoDB Local accepts any credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    source = (SAMPLES / "hello.yaml").read_text()
    with (
        Server(settings, host="127.0.0.1", port=0, tick_interval=0.1) as server,
        KestraClient(host=server.url, token=TOKEN, timeout=30) as kestra,
    ):
        kestra.flows.create_flow(TENANT, source)
        kestra.flows.update_flow("squall.samples", "hello", TENANT, source + "\n# edited\n")
        revisions = kestra.flows.list_flow_revisions("squall.samples", "hello", TENANT)
        assert [r.revision for r in revisions] == [1, 2]
        started = kestra.executions.create_execution(
            TENANT, "squall.samples", "hello", inputs={"name": "Ada"}
        )
        events = list(kestra.executions.follow_execution(started.id, TENANT))
        assert events[-1].state.current.value == "SUCCESS"
        found = kestra.executions.search_executions(
            TENANT, filters=[_filter(QueryFilterField.NAMESPACE, QueryFilterOp.PREFIX, "squall")]
        )
        assert found["total"] == 1 and found["results"][0]["id"] == started.id
        greet = kestra.logs.list_logs_from_execution(started.id, TENANT, task_id="greet")
        assert [line.message for line in greet] == ["Hello, Ada!"]
        labelled = kestra.executions.set_labels_on_terminated_execution(
            started.id, TENANT, [Label(key="owner", value="ada")]
        )
        assert ("owner", "ada") in [(x.key, x.value) for x in labelled.labels or []]
        assert kestra.executions.execution(started.id, TENANT).state.current.value == "SUCCESS"


class _EndingSoon:
    """A Lambda context whose invocation ends in 5 seconds."""

    def get_remaining_time_in_millis(self) -> int:
        return 5000


def test_a_follow_stops_before_the_invocation_ends() -> None:
    import time

    from control_plane.api.kestra_executions import FOLLOW_MARGIN_SECONDS, FOLLOW_SECONDS, follow_deadline

    now = time.monotonic()
    assert follow_deadline(_EndingSoon()) - now <= 5 - FOLLOW_MARGIN_SECONDS + 0.5
    assert follow_deadline(None) - now >= FOLLOW_SECONDS - 0.5
