"""The HTTP API, called the way API Gateway calls it (payload 2.0 events), on a real SQLite store.

The routes are Kestra's tenant-scoped ones (``/api/v1/main/...``) and Squall's webhooks; the
older flows and executions routes without a tenant are gone (ADR 0011), and
what only they offered (task runs and logs a page at a time) is a tenant route here.

Each test's API is :class:`control_plane.api.app.Api` over a runtime the test built (as the
``api`` Lambda builds one over its container's runtime); the tests at the end go through the
Lambda entry point itself.

Every endpoint, every way a request can be wrong, and for each refused request a check that
the store is exactly as it was. Script tasks run on :class:`SimulatedRunner` (a job stays
RUNNING until the test ends it); time is a virtual clock, so creation dates are chosen.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.api import app, common, taskrun_pages, telemetry, views, webhooks
from control_plane.engine.model import LogLine
from control_plane.engine.states import State
from control_plane.handlers import api, container, events
from control_plane.levels import Level
from control_plane.runtime import Runtime, load_settings, open_runtime
from control_plane.service.clock import VirtualClock
from control_plane.service.storage import LocalStorage
from control_plane.store.base import StateStore
from control_plane.store.sqlite import SqliteStore
from runners.testing.simulated import SimulatedRunner
from tests.integration.api_events import JWT_AUTHORIZER, LambdaContext, event, multipart_body
from tests.store_contract import make_execution, make_taskrun

TOKEN = "s3cret-token-for-tests"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
YAML = "application/x-yaml"
MAIN = "/api/v1/main"

HELLO = """
id: hello
namespace: squall.api
inputs:
  - id: name
    type: STRING
  - id: count
    type: INT
    defaults: 1
tasks:
  - id: greet
    type: io.kestra.plugin.core.log.Log
    message: "Hello, {{ inputs.name }}!"
  - id: out
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.name }}x{{ inputs.count }}"
"""

WITH_FILE = """
id: upload
namespace: squall.api
inputs:
  - id: who
    type: STRING
  - id: data
    type: FILE
tasks:
  - id: show
    type: io.kestra.plugin.core.log.Log
    message: "{{ inputs.who }} sent {{ inputs.data }}"
"""

SHELL = """
id: long
namespace: squall.api
tasks:
  - id: work
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - sleep 30
"""

FAILING = """
id: failing
namespace: squall.api
tasks:
  - id: boom
    type: io.kestra.plugin.core.execution.Fail
    errorMessage: on purpose
"""

PAUSING = """
id: approval
namespace: squall.api
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

HOOKED = """
id: hooked
namespace: squall.api
inputs:
  - id: source
    type: STRING
    defaults: none
triggers:
  - id: off
    type: io.kestra.plugin.core.trigger.Webhook
    key: disabled-key-0000
    disabled: true
  - id: github
    type: io.kestra.plugin.core.trigger.Webhook
    key: a-long-secret-key-1234
    inputs:
      source: webhook
tasks:
  - id: body
    type: io.kestra.plugin.core.debug.Return
    format: "{{ trigger.body }}"
"""


@dataclass
class Api:
    """One API over a store in ``tmp_path``; ``call`` sends one request."""

    rt: Runtime
    clock: VirtualClock
    compute: SimulatedRunner

    @property
    def http(self) -> app.Api:
        return app.Api(self.rt)

    @property
    def store(self) -> StateStore:
        return self.rt.store

    def call(self, method: str, path: str, *, token: str | None = TOKEN, **kwargs: Any) -> Response:
        raw = self.http.handle(event(method, path, token=token, **kwargs), LambdaContext())
        return Response(raw)

    def deploy(self, source: str) -> Response:
        """Create the flow, or update it when it exists (Kestra's create refuses an existing flow)."""
        response = self.call("POST", f"{MAIN}/flows", body=source, content_type=YAML)
        if response.status == 422 and "already exists" in response.json["message"]:
            flow = yaml.safe_load(source)
            path = f"{MAIN}/flows/{flow['namespace']}/{flow['id']}"
            response = self.call("PUT", path, body=source, content_type=YAML)
        assert response.status == 200, response.body
        return response

    def start(self, namespace: str, flow_id: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.call("POST", f"{MAIN}/executions/{namespace}/{flow_id}", json_body=inputs or {})
        assert response.status == 200, response.body
        return response.json

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a rejected request must leave as it was."""
        flows = [(r.namespace, r.id, r.revision) for r in self.store.list_flows(limit=1000).items]
        executions = [(s.id, s.state, s.labels) for s in self.store.list_executions(limit=1000).items]
        root = self.rt.service.storage.root
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []
        return flows, executions, files


@dataclass
class Response:
    raw: dict[str, Any]

    @property
    def status(self) -> int:
        return int(self.raw["statusCode"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in (self.raw.get("headers") or {}).items()}

    @property
    def body(self) -> str:
        body = self.raw.get("body") or ""
        return base64.b64decode(body).decode() if self.raw.get("isBase64Encoded") else str(body)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def _api(tmp_path: Path, **settings: Any) -> Api:
    options: dict[str, Any] = {
        "db": str(tmp_path / "squall.db"),
        "data_dir": str(tmp_path / "data"),
        "auth": "token",
        "api_token": TOKEN,
    }
    options.update(settings)
    clock = VirtualClock(T0)
    compute = SimulatedRunner()
    rt = open_runtime(load_settings({}, **options), clock=clock, runners={"process": compute})
    return Api(rt, clock, compute)


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """Build an API with these settings (token auth by default); its runtime is closed afterwards."""
    made: list[Api] = []

    def build(**settings: Any) -> Api:
        if made:
            made[-1].rt.close()  # one store on the database at a time
        made.append(_api(tmp_path, **settings))
        return made[-1]

    yield build
    if made:
        made[-1].rt.close()


@pytest.fixture
def client(make: Callable[..., Api]) -> Api:
    return make()


# ====================================================================== flows


def test_create_refuses_an_existing_flow_and_update_makes_a_revision_only_on_change(client: Api) -> None:
    first = client.call("POST", f"{MAIN}/flows", body=HELLO, content_type=YAML)
    assert first.status == 200 and first.headers["content-type"] == "application/json"
    assert (first.json["namespace"], first.json["id"], first.json["revision"]) == ("squall.api", "hello", 1)
    before = client.snapshot()
    again = client.call("POST", f"{MAIN}/flows", body=HELLO, content_type=YAML)
    assert again.status == 422 and "already exists" in again.json["message"]  # Kestra: update is PUT
    assert client.snapshot() == before
    same = client.call("PUT", f"{MAIN}/flows/squall.api/hello", body=HELLO, content_type=YAML)
    assert same.status == 200 and same.json["revision"] == 1
    changed = client.deploy(HELLO.replace("Hello,", "Hi,"))
    assert changed.json["revision"] == 2


@pytest.mark.parametrize(
    "content_type", ["application/x-yaml", "text/yaml", "application/yaml", "text/plain"]
)
def test_deploy_accepts_every_yaml_content_type(client: Api, content_type: str) -> None:
    response = client.call("POST", f"{MAIN}/flows", body=HELLO, content_type=f"{content_type}; charset=utf-8")
    assert response.status == 200, response.body


def test_deploy_base64_encoded_body(client: Api) -> None:
    response = client.call("POST", f"{MAIN}/flows", body=HELLO.encode(), content_type=YAML)
    assert response.status == 200 and response.json["id"] == "hello"


def test_invalid_flow_is_422_with_every_violation_positioned(client: Api) -> None:
    before = client.snapshot()
    source = "id: bad\nnamespace: squall.api\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n"
    source += "  - id: a\n    type: io.kestra.plugin.core.debug.Return\n    format: x\n"
    response = client.call("POST", "/api/v1/main/flows", body=source, content_type=YAML)
    assert response.status == 422
    body = response.json
    assert body["message"].startswith("invalid flow: ")
    assert body["errors"] and all(set(e) == {"line", "column", "path", "message"} for e in body["errors"])
    assert any(e["line"] >= 4 and e["column"] >= 1 for e in body["errors"])
    assert client.snapshot() == before


def test_validate_lists_each_violation_with_its_line_and_column_as_data(client: Api) -> None:
    """What the UI's editor marks: each violation's place, not only the prose of ``constraints``."""
    broken = "id: bad\nnamespace: squall.api\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n"
    broken += "    mesage: hi\n"
    response = client.call("POST", f"{MAIN}/flows/validate", body=HELLO + "---\n" + broken, content_type=YAML)
    assert response.status == 200
    valid, invalid = response.json
    assert "violations" not in valid and "constraints" not in valid
    by_path = {v["path"]: v for v in invalid["violations"]}
    assert by_path["tasks[0].mesage"] == {
        "line": 6,  # counted from the document's first line, as the editor holds one document
        "column": 5,
        "path": "tasks[0].mesage",
        "message": "unknown property 'mesage' (task 'a', type io.kestra.plugin.core.log.Log)",
    }
    assert by_path["tasks[0].message"]["line"] == 4
    assert len(invalid["violations"]) == len(invalid["constraints"].splitlines())


@pytest.mark.parametrize(
    ("trigger", "expected", "line"),
    [
        ("cron: '61 * * * *'", "invalid cron expression", 4),
        ("cron: '* * *'", "expected 5 fields", 4),
        ("cron: '0 * * * *'\n    timezone: Mars/Olympus_Mons", "unknown time zone", 7),
    ],
)
def test_bad_schedule_trigger_is_422(client: Api, trigger: str, expected: str, line: int) -> None:
    source = (
        "id: sched\nnamespace: squall.api\ntriggers:\n  - id: every\n"
        f"    type: io.kestra.plugin.core.trigger.Schedule\n    {trigger}\n"
        "tasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n"
    )
    before = client.snapshot()
    response = client.call("POST", "/api/v1/main/flows", body=source, content_type=YAML)
    assert response.status == 422, response.body
    (error,) = response.json["errors"]
    assert expected in error["message"] and error["path"].startswith("triggers[0]") and error["line"] == line
    assert client.snapshot() == before


@pytest.mark.parametrize("content_type", ["application/json", None])
def test_deploy_wrong_content_type_is_415(client: Api, content_type: str | None) -> None:
    before = client.snapshot()
    response = client.call("POST", "/api/v1/main/flows", body=HELLO, content_type=content_type)
    assert response.status == 415
    assert "application/x-yaml" in response.json["message"] and "text/plain" in response.json["message"]
    assert client.snapshot() == before


def test_deploy_body_not_utf8_or_bad_base64_is_400(client: Api) -> None:
    before = client.snapshot()
    response = client.call("POST", "/api/v1/main/flows", body=b"id: \xff\xfe", content_type=YAML)
    assert response.status == 400 and "UTF-8" in response.json["message"]
    bad = event("POST", "/api/v1/main/flows", body="id: x", content_type=YAML, token=TOKEN)
    bad["body"], bad["isBase64Encoded"] = "!!!not base64!!!", True
    response = Response(client.http.handle(bad, LambdaContext()))
    assert response.status == 400 and "base64" in response.json["message"]
    assert client.snapshot() == before


def test_body_over_the_limit_is_413(make: Callable[..., Api]) -> None:
    client = make(max_body_bytes=200)
    before = client.snapshot()
    response = client.call("POST", "/api/v1/main/flows", body=HELLO, content_type=YAML)
    assert response.status == 413 and "at most 200" in response.json["message"]
    encoded = client.call("POST", "/api/v1/main/flows", body=("#" * 300).encode(), content_type=YAML)
    assert encoded.status == 413
    assert client.snapshot() == before


def test_search_get_and_delete_flows(client: Api) -> None:
    for name in ("a", "b", "c"):
        client.deploy(HELLO.replace("id: hello", f"id: {name}"))
    client.deploy(HELLO.replace("namespace: squall.api", "namespace: other"))
    ns = {"filters[namespace][EQUALS]": "squall.api", "size": "2"}
    page = client.call("GET", f"{MAIN}/flows/search", query={**ns, "sort": "id:asc"})
    assert page.status == 200
    assert [f["id"] for f in page.json["results"]] == ["a", "b"] and page.json["total"] == 3
    rest = client.call("GET", f"{MAIN}/flows/search", query={**ns, "sort": "id:asc", "page": "2"})
    assert [f["id"] for f in rest.json["results"]] == ["c"] and rest.json["total"] == 3
    everything = client.call("GET", f"{MAIN}/flows/search", query={"size": "100"}).json["results"]
    assert {(f["namespace"], f["id"]) for f in everything} == {
        ("squall.api", "a"),
        ("squall.api", "b"),
        ("squall.api", "c"),
        ("other", "hello"),
    }

    client.deploy(HELLO.replace("id: hello", "id: a").replace("Hello,", "Hey,"))
    latest = client.call("GET", f"{MAIN}/flows/squall.api/a")
    assert latest.status == 200 and latest.json["revision"] == 2 and "Hey," in latest.json["source"]
    first = client.call("GET", f"{MAIN}/flows/squall.api/a", query={"revision": "1"})
    assert first.json["revision"] == 1 and "Hello," in first.json["source"]

    deleted = client.call("DELETE", f"{MAIN}/flows/squall.api/a")
    assert deleted.status == 204 and deleted.body in ("", "null")
    assert client.call("GET", f"{MAIN}/flows/squall.api/a").status == 404
    again = client.call("DELETE", f"{MAIN}/flows/squall.api/a")
    assert again.status == 404 and "message" in again.json


def test_unknown_flow_is_404(client: Api) -> None:
    response = client.call("GET", "/api/v1/main/flows/squall.api/nope")
    assert response.status == 404 and "nope" in response.json["message"]
    missing_revision = client.call("GET", "/api/v1/main/flows/squall.api/nope", query={"revision": "3"})
    assert missing_revision.status == 404


@pytest.mark.parametrize(
    ("query", "name", "status"),
    [
        ({"size": "many"}, "size", 422),
        ({"size": "0"}, "size", 422),
        ({"size": "100000"}, "size", 422),
        ({"page": "0"}, "page", 422),
        ({"cursor": "from-the-old-api"}, "cursor", 400),  # the old routes' paging: named, not ignored
        ({"sort": "revision:asc"}, "sort", 400),
    ],
)
def test_bad_flow_query_parameters_are_refused_naming_them(
    client: Api, query: dict[str, str], name: str, status: int
) -> None:
    client.deploy(HELLO)
    response = client.call("GET", f"{MAIN}/flows/search", query=query)
    assert response.status == status, response.body
    assert f"'{name}'" in response.json["message"]
    assert [e["name"] for e in response.json["errors"]] == [name]


# ====================================================================== executions


def test_start_with_json_inputs_returns_the_kestra_shaped_execution(client: Api) -> None:
    client.deploy(HELLO)
    response = client.call(
        "POST",
        "/api/v1/main/executions/squall.api/hello",
        json_body={"name": "Ada", "count": 3},
        query=[("labels", "team:data"), ("labels", "env:prod,eu")],
    )
    assert response.status == 200, response.body
    view = response.json
    assert set(view) >= {
        "id",
        "namespace",
        "flowId",
        "flowRevision",
        "state",
        "taskRunList",
        "inputs",
        "labels",
    }
    assert len(view["id"]) == 22 and view["namespace"] == "squall.api" and view["flowId"] == "hello"
    assert view["flowRevision"] == 1 and view["inputs"] == {"name": "Ada", "count": 3}
    assert view["state"]["current"] == "SUCCESS" and view["state"]["startDate"] == "2026-03-01T12:00:00.000Z"
    assert {"current", "startDate", "endDate", "duration", "histories"} <= set(view["state"])
    assert "taskRunCursor" not in view  # every task run is listed
    assert {"key": "team", "value": "data"} in view["labels"]
    assert {"key": "env", "value": "prod,eu"} in view["labels"]  # from rawQueryString, not the joined map
    runs = {tr["taskId"]: tr for tr in view["taskRunList"]}
    assert runs["out"]["outputs"] == {"value": "Adax3"} and runs["out"]["parentTaskRunId"] is None
    assert set(runs["out"]) >= {"id", "taskId", "parentTaskRunId", "value", "state", "attempts", "outputs"}
    assert runs["out"]["attempts"][0]["state"]["current"] == "SUCCESS"

    fetched = client.call("GET", f"/api/v1/main/executions/{view['id']}")
    assert fetched.status == 200 and fetched.json == view


def test_start_bare_post_uses_defaults(client: Api) -> None:
    client.deploy(HELLO.replace("    type: STRING\n", "    type: STRING\n    defaults: Bob\n", 1))
    response = client.call("POST", "/api/v1/main/executions/squall.api/hello")
    assert response.status == 200 and response.json["inputs"] == {"name": "Bob", "count": 1}


def test_start_base64_encoded_json(client: Api) -> None:
    client.deploy(HELLO)
    body = json.dumps({"name": "Zoë"}).encode()
    response = client.call(
        "POST", "/api/v1/main/executions/squall.api/hello", body=body, content_type="application/json"
    )
    assert response.status == 200 and response.json["inputs"]["name"] == "Zoë"


def test_start_unknown_flow_is_404(client: Api) -> None:
    before = client.snapshot()
    response = client.call("POST", "/api/v1/main/executions/squall.api/ghost", json_body={})
    assert response.status == 404 and "ghost" in response.json["message"]
    assert client.snapshot() == before


def test_start_disabled_flow_is_409_and_stores_nothing(client: Api) -> None:
    """Kestra's create-execution answers a disabled flow with 409 (IllegalStateException)."""
    client.deploy(HELLO.replace("namespace: squall.api\n", "namespace: squall.api\ndisabled: true\n", 1))
    before = client.snapshot()
    response = client.call("POST", f"{MAIN}/executions/squall.api/hello")
    assert response.status == 409, response.body
    assert "flow squall.api.hello is disabled" in response.json["message"]
    assert client.snapshot() == before


def test_start_with_bad_inputs_is_422_with_kestra_messages(client: Api) -> None:
    client.deploy(HELLO)
    before = client.snapshot()
    response = client.call("POST", "/api/v1/main/executions/squall.api/hello", json_body={"count": "three"})
    assert response.status == 422
    messages = [e["message"] for e in response.json["errors"]]
    assert "Invalid input for `name`, missing required input, but received `null`" in messages
    assert any(m.startswith("Invalid input for `count`") for m in messages)
    assert client.snapshot() == before
    not_a_map = client.call("POST", "/api/v1/main/executions/squall.api/hello", json_body=["Ada"])
    assert not_a_map.status == 422 and "expected a map" in not_a_map.json["message"]
    assert client.snapshot() == before


def test_start_malformed_json_is_400_with_line_and_column(client: Api) -> None:
    client.deploy(HELLO)
    before = client.snapshot()
    response = client.call(
        "POST",
        "/api/v1/main/executions/squall.api/hello",
        body='{\n  "name": "Ada",\n  "count": ,\n}',
        content_type="application/json",
    )
    assert response.status == 400
    assert response.json["line"] == 3 and response.json["column"] == 12
    assert "line 3 column 12" in response.json["message"]
    nan = client.call(
        "POST",
        "/api/v1/main/executions/squall.api/hello",
        body='{"count": NaN}',
        content_type="application/json",
    )
    assert nan.status == 400
    assert client.snapshot() == before


def _nested(depth: int) -> str:
    """A JSON object holding ``depth`` arrays and objects inside each other."""
    return '{"name": "Ada", "deep": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (_nested(common.MAX_JSON_DEPTH + 1), f"deeper than {common.MAX_JSON_DEPTH}"),
        (_nested(100_000), f"deeper than {common.MAX_JSON_DEPTH}"),  # past the parser's own recursion limit
        ('{"name": "\\ud800"}', "surrogate"),
        ('{"name": "Ada", "\\udfff": 1}', "surrogate"),  # in a key
    ],
)
def test_start_json_too_deep_or_not_text_is_400(client: Api, body: str, why: str) -> None:
    client.deploy(HELLO)
    before = client.snapshot()
    response = client.call(
        "POST", "/api/v1/main/executions/squall.api/hello", body=body, content_type="application/json"
    )
    assert response.status == 400, response.body
    assert response.json["message"].startswith("malformed JSON body") and why in response.json["message"]
    assert client.snapshot() == before
    at_the_limit = client.call(
        "POST",
        "/api/v1/main/executions/squall.api/hello",
        body=_nested(common.MAX_JSON_DEPTH),
        content_type="application/json",
    )
    assert at_the_limit.status != 400, at_the_limit.body  # deep enough is fine (the flow has no input `deep`)


def test_resume_body_too_deep_is_400(client: Api) -> None:
    client.deploy(PAUSING)
    paused = client.start("squall.api", "approval")
    response = client.call(
        "POST",
        f"/api/v1/main/executions/{paused['id']}/actions/resume",
        body=_nested(500),
        content_type="application/json",
    )
    assert response.status == 400 and "deeper than" in response.json["message"]


def test_start_wrong_content_type_is_415(client: Api) -> None:
    client.deploy(HELLO)
    before = client.snapshot()
    response = client.call(
        "POST", "/api/v1/main/executions/squall.api/hello", body="name=Ada", content_type="text/plain"
    )
    assert response.status == 415
    assert (
        "application/json" in response.json["message"] and "multipart/form-data" in response.json["message"]
    )
    assert client.snapshot() == before


def test_start_bad_labels_is_422(client: Api) -> None:
    client.deploy(HELLO)
    before = client.snapshot()
    response = client.call(
        "POST",
        "/api/v1/main/executions/squall.api/hello",
        json_body={"name": "A"},
        query=[("labels", "nocolon")],
    )
    assert response.status == 422 and "'labels'" in response.json["message"]
    assert client.snapshot() == before


def test_start_multipart_stores_files_and_passes_their_uri(client: Api) -> None:
    client.deploy(WITH_FILE)
    content = bytes(range(256)) * 4
    body, content_type = multipart_body({"who": "Ada"}, {"data": ("../../etc/report.bin", content)})
    response = client.call(
        "POST", "/api/v1/main/executions/squall.api/upload", body=body, content_type=content_type
    )
    assert response.status == 200, response.body
    view = response.json
    uri = view["inputs"]["data"]
    assert uri == f"kestra:///squall.api/upload/{view['id']}/inputs/data/report.bin"
    storage: LocalStorage = client.rt.service.storage
    assert storage.read(uri) == content  # byte for byte, through base64 and the MIME parser
    assert view["state"]["current"] == "SUCCESS"


def test_start_multipart_with_bad_inputs_leaves_no_file(client: Api) -> None:
    client.deploy(WITH_FILE)
    before = client.snapshot()
    body, content_type = multipart_body({}, {"data": ("a.txt", b"hello")})
    response = client.call(
        "POST", "/api/v1/main/executions/squall.api/upload", body=body, content_type=content_type
    )
    assert response.status == 422 and "`who`" in response.json["message"]
    assert client.snapshot() == before


def test_a_refused_resume_leaves_none_of_its_files_and_keeps_the_starts(client: Api) -> None:
    client.deploy(WITH_FILE)
    body, content_type = multipart_body({"who": "Ada"}, {"data": ("a.txt", b"kept")})
    started = client.call(
        "POST", "/api/v1/main/executions/squall.api/upload", body=body, content_type=content_type
    ).json
    client.deploy(PAUSING)
    paused = client.start("squall.api", "approval")
    before = client.snapshot()
    body, content_type = multipart_body({}, {"ok": ("yes.txt", b"not a boolean")})
    refused = client.call(
        "POST", f"/api/v1/main/executions/{paused['id']}/actions/resume", body=body, content_type=content_type
    )
    assert refused.status == 422 and "ok" in refused.json["message"]
    assert client.snapshot() == before
    resume_ended = f"/api/v1/main/executions/{started['id']}/actions/resume"
    ended = client.call("POST", resume_ended, body=body, content_type=content_type)
    assert ended.status in (409, 422)  # not paused: refused, and the start's file is still there
    storage: LocalStorage = client.rt.service.storage
    assert storage.read(started["inputs"]["data"]) == b"kept"
    assert client.snapshot() == before


def test_start_multipart_without_any_part_starts_with_no_inputs(client: Api) -> None:
    """A browser's empty FormData (only the closing boundary) and an empty body are no inputs."""
    client.deploy(FAILING)
    for body in (multipart_body({}, {})[0], b""):
        response = client.call(
            "POST",
            "/api/v1/main/executions/squall.api/failing",
            body=body,
            content_type="multipart/form-data; boundary=squallBoundary7MA4YWxk",
        )
        assert response.status == 200, response.body
        assert response.json["inputs"] in ({}, None)
    malformed = client.call(
        "POST",
        "/api/v1/main/executions/squall.api/failing",
        body=b"--squallBoundary7MA4YWxk\r\nno headers end",
        content_type="multipart/form-data; boundary=squallBoundary7MA4YWxk",
    )
    assert malformed.status == 400


def test_start_multipart_without_boundary_is_400(client: Api) -> None:
    client.deploy(WITH_FILE)
    before = client.snapshot()
    response = client.call(
        "POST",
        "/api/v1/main/executions/squall.api/upload",
        body=b"--x\r\n",
        content_type="multipart/form-data",
    )
    assert response.status == 400 and "boundary" in response.json["message"]
    assert client.snapshot() == before


def test_get_unknown_execution_is_404(client: Api) -> None:
    for method, path in [
        ("GET", "/api/v1/main/executions/nope"),
        ("GET", "/api/v1/main/executions/nope/logs"),
        ("GET", "/api/v1/main/executions/nope/taskruns"),
        ("GET", "/api/v1/main/logs/nope"),
        ("DELETE", "/api/v1/main/executions/nope/actions/kill"),
        ("POST", "/api/v1/main/executions/nope/actions/restart"),
        ("POST", "/api/v1/main/executions/nope/actions/resume"),
        ("POST", "/api/v1/main/executions/nope/actions/replay"),
    ]:
        response = client.call(method, path)
        assert response.status == 404, (method, path, response.body)
        assert "nope" in response.json["message"]


def _at(client: Api, moment: datetime) -> None:
    client.clock.sleep_until(moment)


def _search(client: Api, query: Any) -> Any:
    response = client.call("GET", f"{MAIN}/executions/search", query=query)
    assert response.status == 200, response.body
    return response.json


@pytest.mark.parametrize(
    ("method", "action", "query"),
    [
        ("POST", "replay", {"page": "1"}),
        ("DELETE", "kill", {"size": "5"}),
        ("DELETE", "", {"sort": "state.startDate:desc"}),
        ("POST", "restart", {"filters[taskId][EQUALS]": "x"}),
    ],
)
def test_a_bulk_action_by_query_refuses_paging_and_unknown_filters_naming_them(
    client: Api, method: str, action: str, query: dict[str, str]
) -> None:
    client.deploy(HELLO)
    execution = client.start("squall.api", "hello", {"name": "Ada"})
    path = f"{MAIN}/executions/{action}/by-query" if action else f"{MAIN}/executions/by-query"
    before = client.snapshot()
    response = client.call(method, path, query=query)
    assert response.status == 400, response.body
    (name,) = query
    assert repr(name) in response.json["message"]
    assert client.snapshot() == before
    assert client.store.get_execution_meta(execution["id"]).state is not State.KILLED


def test_search_executions_filters_and_pages(client: Api) -> None:
    client.deploy(HELLO)
    client.deploy(FAILING)
    ids = []
    for hour in range(4):
        _at(client, T0 + timedelta(hours=hour))
        ids.append(client.start("squall.api", "hello", {"name": f"n{hour}"})["id"])
    _at(client, T0 + timedelta(hours=4))
    failed = client.start("squall.api", "failing")["id"]

    everything = _search(client, {})
    assert [e["id"] for e in everything["results"]] == [failed, *reversed(ids)] and everything["total"] == 5
    only_hello = _search(
        client, {"filters[flowId][EQUALS]": "hello", "filters[namespace][EQUALS]": "squall.api"}
    )
    assert [e["id"] for e in only_hello["results"]] == list(reversed(ids))
    by_state = _search(client, {"filters[state][IN]": "FAILED,KILLED"})
    assert [e["id"] for e in by_state["results"]] == [failed]
    assert by_state["results"][0]["state"]["current"] == "FAILED"

    window = {
        "filters[startDate][GREATER_THAN_OR_EQUAL_TO]": "2026-03-01T13:00:00Z",
        "filters[endDate][LESS_THAN_OR_EQUAL_TO]": "2026-03-01T14:30:00Z",
    }
    dated = _search(client, window)
    assert [e["id"] for e in dated["results"]] == [ids[2], ids[1]] and dated["total"] == 2
    naive = _search(client, {"filters[startDate][GREATER_THAN_OR_EQUAL_TO]": "2026-03-01T13:00:00"})
    assert [e["id"] for e in naive["results"]] == [
        failed,
        ids[3],
        ids[2],
        ids[1],
    ]  # a time without offset: UTC

    seen: list[str] = []
    for page in range(1, 6):
        query = {"size": "1", "page": str(page), "filters[endDate][LESS_THAN]": "2026-03-01T15:30:00Z"}
        found = _search(client, query)
        assert found["total"] == 4
        seen += [e["id"] for e in found["results"]]
    assert seen == list(reversed(ids))  # the fifth page is empty


@pytest.mark.parametrize(
    ("query", "name", "status"),
    [
        ({"filters[startDate][GREATER_THAN_OR_EQUAL_TO]": "yesterday"}, "filters[startDate]", 400),
        ({"filters[endDate][LESS_THAN]": "2026-13-01"}, "filters[endDate]", 400),
        ({"filters[state][CONTAINS]": "FAILED"}, "filters[state][CONTAINS]", 400),
        ({"filters[state][IN]": "FAILED,DONE"}, "filters[state][IN]", 422),  # was an empty page
        ({"size": "-1"}, "size", 422),
        ({"cursor": "%%%"}, "cursor", 400),  # the old routes' paging: named, not ignored
        ({"limit": "5"}, "limit", 400),
    ],
)
def test_bad_execution_search_parameters_are_refused_naming_them(
    client: Api, query: dict[str, str], name: str, status: int
) -> None:
    client.deploy(HELLO)
    client.start("squall.api", "hello", {"name": "A"})
    response = client.call("GET", f"{MAIN}/executions/search", query=query)
    assert response.status == status, response.body
    assert name in response.json["message"] and response.json["errors"][0]["name"].startswith(name)


def test_logs_pages_and_filters_by_task_run(client: Api) -> None:
    client.deploy(HELLO)
    view = client.start("squall.api", "hello", {"name": "Ada"})
    logs = client.call("GET", f"{MAIN}/logs/{view['id']}")  # Kestra's route: the whole list
    assert logs.status == 200
    entries = logs.json
    greet = next(tr for tr in view["taskRunList"] if tr["taskId"] == "greet")
    hello = [e for e in entries if e["message"] == "Hello, Ada!"]
    assert hello and hello[0]["taskRunId"] == greet["id"] and hello[0]["taskId"] == "greet"
    assert set(hello[0]) == {
        "namespace",
        "flowId",
        "executionId",
        "taskId",
        "taskRunId",
        "attemptNumber",
        "timestamp",
        "level",
        "message",
    }
    pages = f"{MAIN}/executions/{view['id']}/logs"  # Squall's extension: a page at a time
    only = client.call("GET", pages, query={"taskRunId": greet["id"]})
    assert only.status == 200 and only.json["results"]
    assert {e["taskRunId"] for e in only.json["results"]} == {greet["id"]}

    paged, cursor = [], None
    while True:
        query = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = client.call("GET", pages, query=query).json
        assert len(page["results"]) == 1
        paged += page["results"]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert paged == entries
    bad = client.call("GET", pages, query={"cursor": "garbage"})
    assert bad.status == 422 and "'cursor'" in bad.json["message"]
    # the page's own filters: what the web UI's log view asks for a page at a time
    found = client.call("GET", pages, query={"q": "HELLO, ada", "taskId": "greet", "minLevel": "INFO"})
    assert [e["message"] for e in found.json["results"]] == ["Hello, Ada!"]
    assert client.call("GET", pages, query={"taskId": "nope"}).json["results"] == []
    errors = client.call("GET", pages, query={"minLevel": "ERROR"}).json["results"]
    assert all(e["level"] == "ERROR" for e in errors)
    assert client.call("GET", pages, query={"minLevel": "LOUD"}).status == 422
    for limit in ("0", "5001", "many"):
        assert client.call("GET", pages, query={"limit": limit}).status == 422


def test_kill_running_execution_then_409_once_it_ended(client: Api) -> None:
    client.deploy(SHELL)
    view = client.start("squall.api", "long")
    assert view["state"]["current"] == "RUNNING"
    killed = client.call("DELETE", f"/api/v1/main/executions/{view['id']}/actions/kill")
    assert killed.status == 202 and killed.json["state"]["current"] in ("KILLING", "KILLED")
    (name,) = client.compute.names()
    events.handle_event(client.rt, client.compute.event(name))  # the backend reports the cancelled job
    ended = client.call("GET", f"/api/v1/main/executions/{view['id']}").json
    assert ended["state"]["current"] == "KILLED"
    again = client.call("DELETE", f"/api/v1/main/executions/{view['id']}/actions/kill")
    assert again.status == 409 and "already ended" in again.json["message"]


def test_restart_failed_execution_and_409_for_a_successful_one(client: Api) -> None:
    client.deploy(FAILING)
    client.deploy(HELLO)
    failed = client.start("squall.api", "failing")
    assert failed["state"]["current"] == "FAILED"
    restarted = client.call("POST", f"/api/v1/main/executions/{failed['id']}/actions/restart")
    assert restarted.status == 200 and restarted.json["id"] == failed["id"]
    assert restarted.json["state"]["current"] == "FAILED"  # Fail fails again, in the same execution
    boom = next(tr for tr in restarted.json["taskRunList"] if tr["taskId"] == "boom")
    assert len(boom["attempts"]) == 2

    ok = client.start("squall.api", "hello", {"name": "A"})
    refused = client.call("POST", f"/api/v1/main/executions/{ok['id']}/actions/restart")
    assert refused.status == 409 and "only FAILED or KILLED" in refused.json["message"]


def test_resume_paused_execution_with_on_resume_inputs(client: Api) -> None:
    client.deploy(PAUSING)
    paused = client.start("squall.api", "approval")
    assert paused["state"]["current"] == "PAUSED"
    path = f"/api/v1/main/executions/{paused['id']}/actions/resume"
    before = client.snapshot()
    bad = client.call("POST", path, json_body={"ok": "maybe"})
    assert bad.status == 422 and "`ok`" in bad.json["message"]
    not_object = client.call("POST", path, json_body=[1])
    assert not_object.status == 422
    malformed = client.call("POST", path, body="{", content_type="application/json")
    assert malformed.status == 400
    assert client.snapshot() == before
    resumed = client.call("POST", path, json_body={"ok": True})
    assert resumed.status == 200, resumed.body
    assert resumed.json["state"]["current"] == "SUCCESS"
    after = next(tr for tr in resumed.json["taskRunList"] if tr["taskId"] == "after")
    assert after["outputs"] == {"value": "approved=true"}
    again = client.call("POST", path, json_body={"ok": True})
    assert again.status == 409 and "not PAUSED" in again.json["message"]


def test_replay_creates_a_linked_execution(client: Api) -> None:
    client.deploy(HELLO)
    first = client.start("squall.api", "hello", {"name": "Ada"})
    replayed = client.call("POST", f"/api/v1/main/executions/{first['id']}/actions/replay")
    assert replayed.status == 200
    assert replayed.json["id"] != first["id"] and replayed.json["originalId"] == first["id"]
    assert replayed.json["inputs"] == first["inputs"]


def test_an_execution_holding_data_nested_too_deep_still_reads(client: Api) -> None:
    """Data stored before bodies were bounded (or written by other means) must not fail its GET."""
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(900):
        inner["a"] = {}
        inner = inner["a"]
    execution = make_execution("deep").evolve(trigger={"body": deep}, inputs={"x": deep}, outputs={"y": deep})
    client.store.create_execution(execution)
    response = client.call("GET", "/api/v1/main/executions/deep")
    assert response.status == 200, response.body
    shown = response.json["trigger"]["variables"]["body"]
    for _ in range(views.VIEW_DEPTH - 2):
        shown = shown["a"]
    assert shown == {"a": views.OMITTED}
    assert client.call("GET", "/api/v1/main/executions/search", query={"size": "5"}).status == 200


# ---------------------------------------------------------------------- big executions, in pages


def _big_execution(client: Api, count: int, output_bytes: int = 0, execution_id: str = "big") -> set[str]:
    """``count`` task runs written straight through the store (the engine would take minutes)."""
    pad = "x" * output_bytes
    taskruns = [
        make_taskrun(f"tr{i:07d}", i, outputs={"i": i, "pad": pad} if output_bytes else None)
        for i in range(count)
    ]
    client.store.create_execution(make_execution(execution_id, taskruns=taskruns))
    return {tr.id for tr in taskruns}


def _follow(client: Api, execution_id: str, cursor: str | None, limit: int | None = None) -> list[str]:
    """Every task-run id from ``cursor`` on, each page checked against the response limit."""
    seen: list[str] = []
    while cursor is not None:
        query = {"cursor": cursor, **({"limit": str(limit)} if limit else {})}
        page = client.call("GET", f"/api/v1/main/executions/{execution_id}/taskruns", query=query)
        assert page.status == 200, page.body
        assert len(page.body.encode()) <= client.rt.settings.max_response_bytes
        seen += [tr["id"] for tr in page.json["results"]]
        cursor = page.json["cursor"]
    return seen


def test_a_big_execution_lists_its_first_task_runs_and_a_cursor_to_the_rest(client: Api) -> None:
    ids = _big_execution(client, 3500)
    response = client.call("GET", "/api/v1/main/executions/big")
    assert response.status == 200
    first = response.json
    assert len(first["taskRunList"]) == taskrun_pages.TASKRUNS_SHOWN and first["taskRunCursor"]
    listed = [tr["id"] for tr in first["taskRunList"]]
    rest = _follow(client, "big", first["taskRunCursor"])
    assert len(listed) + len(rest) == len(ids) and set(listed) | set(rest) == ids  # each exactly once
    pages = client.call("GET", f"{MAIN}/executions/big/taskruns", query={"limit": "1000"}).json
    assert [tr["id"] for tr in pages["results"]] == listed  # the same first page
    assert client.call("HEAD", "/api/v1/main/executions/big").status == 200


def test_pages_stay_under_the_response_limit_whatever_the_task_runs_hold(make: Callable[..., Api]) -> None:
    client = make(max_response_bytes=256 << 10)
    ids = _big_execution(client, 3000, output_bytes=2000)  # about 7 MB of task runs
    response = client.call("GET", "/api/v1/main/executions/big")
    assert response.status == 200 and len(response.body.encode()) <= 256 << 10
    first = response.json
    assert 0 < len(first["taskRunList"]) < taskrun_pages.TASKRUNS_SHOWN and first["taskRunCursor"]
    seqs = [tr["outputs"]["i"] for tr in first["taskRunList"]]
    assert seqs == sorted(seqs)  # creation order within the page
    rest = _follow(client, "big", first["taskRunCursor"], limit=1000)
    listed = [tr["id"] for tr in first["taskRunList"]] + rest
    assert len(listed) == len(ids) and set(listed) == ids


def test_a_response_over_the_limit_is_a_400_that_says_to_page(make: Callable[..., Api]) -> None:
    client = make(max_response_bytes=64 << 10)
    _big_execution(client, 1, output_bytes=100_000, execution_id="huge")  # one task run over the limit alone
    response = client.call("GET", "/api/v1/main/executions/huge")
    assert response.status == 400 and response.json["limit"] == 64 << 10
    assert response.json["size"] > 64 << 10 and "smaller pages" in response.json["message"]
    client.store.append_logs(
        "huge", [LogLine(T0, Level.INFO, f"{i}: " + "y" * 1000, "t", "tr0000000") for i in range(200)]
    )
    whole = client.call("GET", f"{MAIN}/logs/huge")  # Kestra's list has no pages: it points to Squall's
    assert whole.status == 400 and f"of {MAIN}/executions/huge/logs" in whole.json["message"]
    logs = client.call("GET", f"{MAIN}/executions/huge/logs", query={"limit": "200"})
    assert logs.status == 400 and "limit=" in logs.json["message"]
    smaller = client.call("GET", f"{MAIN}/executions/huge/logs", query={"limit": "20"})
    assert smaller.status == 200 and len(smaller.json["results"]) == 20 and smaller.json["cursor"]


def test_a_write_answers_with_the_same_first_page_a_read_gives(make: Callable[..., Api]) -> None:
    # A start materialises one chunk of a wide loop (ADR 0015); a chunk wider than the loop
    # makes this start write all 1,201 task runs, more than one page of the view.
    client = make(fanout_chunk=2000)
    values = ",".join(f'"v{i}"' for i in range(1200))
    client.deploy(
        "id: wide\nnamespace: squall.api\ntasks:\n  - id: each\n"
        "    type: io.kestra.plugin.core.flow.ForEach\n"
        f"    values: '[{values}]'\n    concurrencyLimit: 0\n    tasks:\n      - id: leaf\n"
        "        type: io.kestra.plugin.core.debug.Return\n        format: '{{ taskrun.value }}'\n"
    )
    started = client.start("squall.api", "wide")
    assert len(started["taskRunList"]) == taskrun_pages.TASKRUNS_SHOWN and started["taskRunCursor"]
    fetched = client.call("GET", f"/api/v1/main/executions/{started['id']}").json
    assert fetched == started
    rest = _follow(client, started["id"], started["taskRunCursor"])
    assert len(rest) + taskrun_pages.TASKRUNS_SHOWN == 1201


def test_the_execution_view_stays_under_the_6_mb_lambda_limit_by_default(client: Api) -> None:
    """SQUALL_MAX_RESPONSE_BYTES defaults under Lambda's 6 MB response limit; 1000 task runs of 10 kB
    each (10 MB) are cut to what fits, with a cursor, instead of a response Lambda would refuse."""
    limit = client.rt.settings.max_response_bytes
    assert limit <= 6 * 1024 * 1024
    ids = _big_execution(client, 1000, output_bytes=10_000)
    response = client.call("GET", f"{MAIN}/executions/big")
    assert response.status == 200, response.body[:200]
    assert limit // 2 < len(response.body.encode()) <= limit  # filled, not cut short
    first = response.json
    assert 0 < len(first["taskRunList"]) < 1000 and first["taskRunCursor"]
    rest = _follow(client, "big", first["taskRunCursor"], limit=1000)
    assert {tr["id"] for tr in first["taskRunList"]} | set(rest) == ids


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        ("/api/v1/main/executions/nobody/taskruns", {}, 404),
        ("/api/v1/main/executions/big/taskruns", {"cursor": "%%%"}, 422),
        ("/api/v1/main/executions/big/taskruns", {"cursor": "_-8"}, 422),  # base64, but not of text
        ("/api/v1/main/executions/big/taskruns", {"limit": "1001"}, 422),
        ("/api/v1/main/executions/big/taskruns", {"limit": "0"}, 422),
    ],
)
def test_bad_task_run_page_requests(client: Api, path: str, query: dict[str, str], status: int) -> None:
    _big_execution(client, 3)
    response = client.call("GET", path, query=query)
    assert response.status == status, response.body
    assert response.json["message"]


# ====================================================================== webhooks


def _executions(client: Api) -> int:
    return len(client.store.list_executions(limit=1000).items)


def test_webhook_starts_the_flow_with_kestra_trigger_variables(client: Api) -> None:
    client.deploy(HOOKED)
    response = client.call(
        "POST",
        "/webhooks/squall.api/hooked/a-long-secret-key-1234",
        token=None,
        json_body={"ref": "main", "commits": [1, 2]},
        query=[("source", "gh"), ("source", "ci")],
        headers={"X-GitHub-Event": "push", "Authorization": "token ghp_secret", "Cookie": "s=1"},
    )
    assert response.status == 200, response.body
    accepted = response.json
    assert set(accepted) == {"id", "namespace", "flowId", "state"} and len(accepted["id"]) == 22
    execution = client.store.get_execution(accepted["id"])
    trigger = dict(execution.trigger or {})
    assert trigger["id"] == "github" and trigger["type"] == "io.kestra.plugin.core.trigger.Webhook"
    assert trigger["body"] == {"ref": "main", "commits": [1, 2]}
    assert trigger["headers"]["x-github-event"] == ["push"]
    assert "authorization" not in trigger["headers"] and "cookie" not in trigger["headers"]
    assert trigger["parameters"] == {"source": ["gh", "ci"]}
    assert execution.inputs["source"] == "webhook"
    assert execution.state is State.SUCCESS


RENDERED_HOOK = """
id: rendered
namespace: squall.api
inputs:
  - id: ref
    type: STRING
  - id: count
    type: INT
triggers:
  - id: push
    type: io.kestra.plugin.core.trigger.Webhook
    key: rendered-key-00000001
    inputs:
      ref: "{{ trigger.body.ref ?? 'main' }}"
      count: "{{ trigger.body.commits | length }}"
  - id: broken
    type: io.kestra.plugin.core.trigger.Webhook
    key: rendered-key-00000002
    inputs:
      ref: "{{ trigger.body.nothing }}"
      count: 1
tasks:
  - id: show
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.ref }} {{ inputs.count }}"
"""


def test_webhook_inputs_are_rendered_with_the_trigger_variables(client: Api) -> None:
    """Kestra renders a trigger's inputs: they reached the flow as the template's text."""
    client.deploy(RENDERED_HOOK)
    path = "/webhooks/squall.api/rendered/rendered-key-00000001"
    sent = client.call("POST", path, token=None, json_body={"ref": "dev", "commits": [1, 2, 3]})
    assert sent.status == 200, sent.body
    assert client.store.get_execution(sent.json["id"]).inputs == {"ref": "dev", "count": 3}
    default = client.call("POST", path, token=None, json_body={"commits": []})
    assert default.status == 200, default.body
    assert client.store.get_execution(default.json["id"]).inputs == {"ref": "main", "count": 0}
    before = _executions(client)
    broken = client.call(
        "POST", "/webhooks/squall.api/rendered/rendered-key-00000002", token=None, json_body={"ref": "x"}
    )
    assert broken.status == 422, broken.body
    assert "trigger input `ref`" in broken.json["message"] and "nothing" in broken.json["message"]
    assert _executions(client) == before


def test_webhook_get_put_and_text_body(client: Api) -> None:
    client.deploy(HOOKED)
    got = client.call("GET", "/webhooks/squall.api/hooked/a-long-secret-key-1234", token=None)
    assert got.status == 200
    put = client.call(
        "PUT",
        "/webhooks/squall.api/hooked/a-long-secret-key-1234",
        token=None,
        body="plain text, not json",
        content_type="text/plain",
    )
    assert put.status == 200
    assert client.store.get_execution(put.json["id"]).trigger["body"] == "plain text, not json"  # type: ignore[index]


@pytest.mark.parametrize(
    "path",
    [
        "/webhooks/squall.api/hooked/wrong-key",
        "/webhooks/squall.api/hooked/a-long-secret-key-123",  # a prefix of the right key
        "/webhooks/squall.api/hooked/a-long-secret-key-12345",
        "/webhooks/squall.api/hooked/disabled-key-0000",  # a disabled trigger's key
        "/webhooks/squall.api/ghost/a-long-secret-key-1234",  # unknown flow
        "/webhooks/nowhere/hooked/a-long-secret-key-1234",
    ],
)
def test_webhook_wrong_key_or_unknown_flow_is_the_same_404(client: Api, path: str) -> None:
    client.deploy(HOOKED)
    before = client.snapshot()
    response = client.call("POST", path, token=None, json_body={"x": 1})
    assert response.status == 404 and response.json == {"message": webhooks.NOT_FOUND}
    assert client.snapshot() == before


def test_webhook_idempotency_key_refuses_a_replay(client: Api) -> None:
    client.deploy(HOOKED)
    path = "/webhooks/squall.api/hooked/a-long-secret-key-1234"
    first = client.call(
        "POST", path, token=None, json_body={"n": 1}, headers={"Idempotency-Key": "delivery-1"}
    )
    assert first.status == 200
    expected = webhooks.webhook_execution_id("squall.api", "hooked", "github", "delivery-1")
    assert first.json["id"] == expected and len(expected) == 22
    before = client.snapshot()
    replay = client.call(
        "POST", path, token=None, json_body={"n": 2}, headers={"Idempotency-Key": "delivery-1"}
    )
    assert replay.status == 409
    assert replay.json["executionId"] == first.json["id"] and "already received" in replay.json["message"]
    assert client.snapshot() == before
    assert client.store.get_execution(expected).trigger["body"] == {"n": 1}  # type: ignore[index]
    other = client.call(
        "POST", path, token=None, json_body={"n": 3}, headers={"Idempotency-Key": "delivery-2"}
    )
    assert other.status == 200 and other.json["id"] != first.json["id"]
    plain = [client.call("POST", path, token=None, json_body={"n": 4}) for _ in range(2)]
    assert [p.status for p in plain] == [200, 200] and plain[0].json["id"] != plain[1].json["id"]
    assert _executions(client) == 4


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("[" * 900 + "]" * 900, "deeper than"),  # once stored, it made GET of the execution 500 for ever
        ("[" * 5000 + "]" * 5000, "deeper than"),
        ('{"text": "\\ud83d"}', "surrogate"),
    ],
)
def test_webhook_json_too_deep_or_not_text_is_refused_at_ingress(client: Api, body: str, why: str) -> None:
    client.deploy(HOOKED)
    before = client.snapshot()
    response = client.call(
        "POST",
        "/webhooks/squall.api/hooked/a-long-secret-key-1234",
        token=None,
        body=body,
        content_type="application/json",
    )
    assert response.status == 400 and why in response.json["message"], response.body
    assert client.snapshot() == before


def test_webhook_json_at_the_depth_limit_is_accepted(client: Api) -> None:
    client.deploy(HOOKED)
    body = "[" * common.MAX_JSON_DEPTH + "]" * common.MAX_JSON_DEPTH
    response = client.call(
        "POST",
        "/webhooks/squall.api/hooked/a-long-secret-key-1234",
        token=None,
        body=body,
        content_type="application/json",
    )
    assert response.status == 200, response.body
    fetched = client.call("GET", f"/api/v1/main/executions/{response.json['id']}")
    assert fetched.status == 200 and fetched.json["trigger"]["variables"]["body"] == json.loads(body)


def test_webhook_body_over_the_limit_is_413(make: Callable[..., Api]) -> None:
    client = make(max_body_bytes=2000)
    client.deploy(HOOKED)
    before = client.snapshot()
    response = client.call(
        "POST", "/webhooks/squall.api/hooked/a-long-secret-key-1234", token=None, json_body={"x": "y" * 3000}
    )
    assert response.status == 413
    assert client.snapshot() == before


# ====================================================================== auth


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, "Bearer"),
        ({"Authorization": "Bearer wrong-token"}, 'Bearer error="invalid_token"'),
        ({"Authorization": f"Basic {TOKEN}"}, 'Bearer error="invalid_token"'),
        ({"Authorization": f"Bearer {TOKEN}x"}, 'Bearer error="invalid_token"'),
    ],
)
def test_token_auth_refuses_missing_or_wrong_tokens(
    client: Api, headers: dict[str, str], challenge: str
) -> None:
    client.deploy(HELLO)
    before = client.snapshot()
    for method, path in [
        ("GET", "/api/v1/main/flows/search"),
        ("POST", "/api/v1/main/executions/squall.api/hello"),
        ("GET", "/api/v1/no-such-route"),  # 401, not 404: nothing is revealed before auth
    ]:
        response = client.call(method, path, token=None, headers=headers, json_body={"name": "x"})
        assert response.status == 401, (path, response.body)
        assert response.headers["www-authenticate"] == challenge
        assert "unauthorized" in response.json["message"]
    assert client.snapshot() == before


def test_token_auth_accepts_the_token_any_scheme_case(client: Api) -> None:
    response = client.call(
        "GET", "/api/v1/main/flows/search", token=None, headers={"Authorization": f"bearer {TOKEN}"}
    )
    assert response.status == 200


def test_gateway_auth_requires_an_authorizer(make: Callable[..., Api]) -> None:
    client = make(auth="gateway", api_token=None)
    refused = client.call("GET", "/api/v1/main/flows/search", token=None)
    assert refused.status == 401 and "authorizer" in refused.json["message"]
    with_token_only = client.call("GET", "/api/v1/main/flows/search", token=TOKEN)
    assert with_token_only.status == 401  # a bearer token is no substitute for the gateway's check
    assert (
        client.call("GET", "/api/v1/main/flows/search", token=None, authorizer=JWT_AUTHORIZER).status == 200
    )
    iam = {"iam": {"accessKey": "AKIA...", "accountId": "123456789012", "userArn": "arn:aws:iam::1:user/u"}}
    assert client.call("GET", "/api/v1/main/flows/search", token=None, authorizer=iam).status == 200
    lam = {"lambda": {"user": "ci"}}
    assert client.call("GET", "/api/v1/main/flows/search", token=None, authorizer=lam).status == 200
    assert client.call("GET", "/api/v1/main/flows/search", token=None, authorizer={"other": {}}).status == 401


def test_no_auth_is_open(make: Callable[..., Api]) -> None:
    client = make(auth="none", api_token=None)
    assert client.call("GET", "/api/v1/main/flows/search", token=None).status == 200


def test_openapi_document_is_public_and_describes_the_api(client: Api) -> None:
    response = client.call("GET", "/openapi.json", token=None)
    assert response.status == 200
    doc = response.json
    assert doc["info"]["title"] == "Squall" and doc["info"]["version"]
    paths = doc["paths"]
    assert {"post"} <= set(paths["/api/v1/{tenant}/flows"])
    assert "delete" in paths["/api/v1/{tenant}/executions/{execution_id}/actions/kill"]
    assert "get" in paths["/api/v1/{tenant}/executions/{execution_id}/taskruns"]
    assert "get" in paths["/api/v1/{tenant}/executions/{execution_id}/logs"]
    assert not [p for p in paths if p.split("/")[3:4] in (["flows"], ["executions"])]  # removed
    assert "application/x-yaml" in paths["/api/v1/{tenant}/flows"]["post"]["requestBody"]["content"]
    webhook = paths["/webhooks/{namespace}/{flow_id}/{key}"]
    assert {"get", "post", "put"} <= set(webhook) and webhook["post"]["security"] == []
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert {"KestraExecution", "PagedTaskRuns", "PagedLogs"} <= set(doc["components"]["schemas"])
    error = paths["/api/v1/{tenant}/flows"]["post"]["responses"]["422"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', response.body.replace('":"', '": "')))
    assert refs and refs <= set(doc["components"]["schemas"])  # every reference resolves


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "flows"),
        ("POST", "flows"),
        ("GET", "flows/squall.api/hello"),
        ("GET", "executions"),
        ("POST", "executions/squall.api/hello"),
        ("GET", "executions/some-id"),
        ("GET", "executions/some-id/taskruns"),
        ("GET", "executions/some-id/logs"),
        ("DELETE", "executions/some-id/kill"),
    ],
)
def test_the_removed_untenanted_routes_are_404_naming_the_tenant_path(
    client: Api, method: str, path: str
) -> None:
    """Squall's routes without a tenant (``/api/v1/<path>``) are gone; the 404 says what replaces them."""
    client.deploy(HELLO)
    before = client.snapshot()
    response = client.call(method, f"/api/v1/{path}", body=HELLO, content_type=YAML)
    assert response.status == 404, response.body
    assert "removed" in response.json["message"] and "/api/v1/main/" in response.json["message"]
    assert client.snapshot() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/flows/flows/search"),
        ("POST", "/api/v1/flows/flows"),
        ("GET", "/api/v1/flows/flows/squall.api/hello"),
        ("GET", "/api/v1/executions/executions/search"),
        ("POST", "/api/v1/executions/executions/squall.api/hello"),
        ("GET", "/api/v1/executions/logs/some-id"),
        ("GET", "/api/v1/flows/executions/some-id/taskruns"),
    ],
)
def test_a_tenant_named_flows_or_executions_is_the_unknown_tenant_404(
    client: Api, method: str, path: str
) -> None:
    """Once the untenanted routes took these paths first; now the tenant guard answers them."""
    client.deploy(HELLO)
    before = client.snapshot()
    response = client.call(method, path, body=HELLO, content_type=YAML)
    assert response.status == 404, response.body
    tenant = path.split("/")[3]
    assert response.json["message"].startswith(f"tenant '{tenant}' not found")
    assert response.json["_embedded"]["errors"]  # Kestra's error envelope
    assert client.snapshot() == before


def test_unknown_route_is_404_json(client: Api) -> None:
    response = client.call("GET", "/api/v2/whatever")
    assert response.status == 404 and response.json["message"] == "no route for GET /api/v2/whatever"


# ====================================================================== errors, logs, metrics


class _BrokenStore:
    """A store whose flow listing fails like a bug would: the API must answer 500 without details."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner

    def list_flows(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail /home/squall/db.py line 42")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    handler.setFormatter(telemetry.logger.registered_formatter)
    telemetry.logger.addHandler(handler)
    yield handler
    telemetry.logger._logger.removeHandler(handler)


def test_unexpected_error_is_500_without_traceback(tmp_path: Path, records: _Records) -> None:
    store = _BrokenStore(SqliteStore(tmp_path / "broken.db"))
    settings = load_settings({}, data_dir=str(tmp_path / "data"), auth="token", api_token=TOKEN)
    rt = open_runtime(settings, store=store)  # type: ignore[arg-type]
    try:
        raw = app.Api(rt).handle(
            event("GET", "/api/v1/main/flows/search", token=TOKEN, request_id="req-500"), LambdaContext()
        )
    finally:
        rt.close()
    response = Response(raw)
    assert response.status == 500
    assert response.json["message"] == "internal error" and response.json["requestId"] == "req-500"
    assert "Traceback" not in response.body and "secret" not in response.body
    failures = [r for r in records.records if r.exc_info]
    assert failures and "secret internal detail" in str(failures[0].exc_info[1])  # type: ignore[index]


def test_each_request_logs_one_structured_line_with_its_keys(client: Api, records: _Records) -> None:
    client.deploy(HELLO)
    view = client.start("squall.api", "hello", {"name": "Ada"})
    client.call("GET", "/api/v1/main/flows/search")
    lines = [json.loads(line) for line in records.lines if '"request"' in line]
    start_line = next(line for line in lines if line.get("method") == "POST" and line.get("execution_id"))
    assert start_line["execution_id"] == view["id"]
    assert start_line["namespace"] == "squall.api" and start_line["flow_id"] == "hello"
    assert start_line["service"] == "squall" and start_line["request_id"] == "JKJaXmPLvHcESHA="
    listing = lines[-1]
    assert listing["path"] == f"{MAIN}/flows/search" and "execution_id" not in listing  # keys do not leak


def test_metrics_are_emf_lines_only_when_something_happened(
    client: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    capsys.readouterr()
    client.deploy(HELLO)
    client.start("squall.api", "hello", {"name": "A"})
    client.call("GET", "/api/v1/main/flows/search")  # adds no metric: no flush, no warning
    client.call("POST", "/webhooks/squall.api/hello/nope", token=None)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    names = [m["Name"] for doc in emf for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names == ["FlowsDeployed", "ExecutionsStarted", "WebhooksRejected"]
    assert {doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] for doc in emf} == {"Squall"}


def test_metrics_disabled_are_dropped_not_accumulated(
    client: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    capsys.readouterr()
    client.deploy(HELLO)
    assert '"_aws"' not in capsys.readouterr().out
    assert not telemetry.metrics.metric_set


def test_api_log_lines_carry_an_rfc3339_timestamp_so_lambda_keeps_their_level() -> None:
    from control_plane.api import telemetry

    record = logging.LogRecord("squall", logging.ERROR, __file__, 1, "boom", None, None)
    line = json.loads(telemetry.logger.registered_formatter.format(record))
    assert line["level"] == "ERROR"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)", line["timestamp"])


# ====================================================================== the API component and the Lambda


def test_two_apis_over_two_runtimes_serve_each_its_own_store_at_once(tmp_path: Path) -> None:
    # The runtime is the Api's, passed to the routes per request: two Apis in one process (two
    # squall servers, a test beside a Lambda) never serve each other's store, even concurrently.

    one, two = _api(tmp_path / "one"), _api(tmp_path / "two")
    try:
        one.deploy(HELLO)
        two.deploy(HELLO.replace("id: hello", "id: other"))
        seen: dict[str, set[str]] = {"one": set(), "two": set()}
        errors: list[BaseException] = []

        def read(name: str, client: Api) -> None:
            try:
                for _ in range(40):
                    listing = client.call("GET", "/api/v1/main/flows/search")
                    seen[name].update(f["id"] for f in listing.json["results"])
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=read, args=item) for item in (("one", one), ("two", two))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert seen == {"one": {"hello"}, "two": {"other"}}
    finally:
        one.rt.close()
        two.rt.close()


def test_a_route_resolved_without_an_api_has_no_runtime_and_says_so(records: _Records) -> None:
    # Only Api.handle gives a route its runtime: resolving the bare resolver is a 500, not a
    # runtime found somewhere else.
    raw = app.app.resolve(event("GET", "/api/v1/main/flows/search", token=None), LambdaContext())
    assert raw["statusCode"] == 500
    assert any("no runtime for this request" in str(r.exc_info[1]) for r in records.records if r.exc_info)


@pytest.fixture
def lambda_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The api Lambda's environment (SQLite here), and a fresh container around the test."""
    for name in [k for k in os.environ if k.startswith("SQUALL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SQUALL_STORE", "sqlite")
    monkeypatch.setenv("SQUALL_DB", str(tmp_path / "lambda.db"))
    monkeypatch.setenv("SQUALL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SQUALL_AUTH", "token")
    monkeypatch.setenv("SQUALL_API_TOKEN", TOKEN)
    container.reset()
    yield tmp_path
    container.reset()


def test_the_api_lambda_builds_its_runtime_from_the_environment_once_and_keeps_it_warm(
    lambda_env: Path,
) -> None:
    deploy = event("POST", "/api/v1/main/flows", body=HELLO, content_type=YAML, token=TOKEN)
    deployed = Response(api.handler(deploy, LambdaContext()))
    assert deployed.status == 200, deployed.body
    warm = container.runtime()
    listing = Response(api.handler(event("GET", "/api/v1/main/flows/search", token=TOKEN), LambdaContext()))
    assert listing.status == 200 and [f["id"] for f in listing.json["results"]] == ["hello"]
    assert container.runtime() is warm  # the second invocation reused the container's runtime
    assert warm.settings.db == str(lambda_env / "lambda.db")


def test_the_api_lambda_answers_a_json_500_when_its_runtime_cannot_be_built(
    lambda_env: Path, monkeypatch: pytest.MonkeyPatch, records: _Records
) -> None:
    monkeypatch.setenv("SQUALL_STORE", "dynamodb")  # without SQUALL_TABLE: a SettingsError
    raw = api.handler(
        event("GET", "/api/v1/main/flows/search", token=TOKEN, request_id="req-cold"), LambdaContext()
    )
    response = Response(raw)
    assert response.status == 500
    assert response.json == {"message": "internal error", "requestId": "req-cold"}
    failures = [r for r in records.records if r.exc_info]
    assert failures and "SQUALL_TABLE is required" in str(failures[0].exc_info[1])  # type: ignore[index]
