"""Http triggers against a real HTTP server started by the test, on the local runtime (SQLite).

The tick and the ``schedule`` Lambda both call ``Service.poll_http_triggers``; these tests
call it directly with a virtual clock, so the interval is counted, never slept.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from control_plane.engine.states import State
from control_plane.runtime import Runtime
from control_plane.service.clock import VirtualClock
from control_plane.triggers.http import state_key

from .service_helpers import messages, runtime

T0 = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


class Endpoint:
    """A local HTTP server whose answer per path the test sets; it counts the requests."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, str, str]] = {}
        self.hits: dict[str, int] = {}
        self.release = threading.Event()  # /hang answers only once this is set
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.hits[self.path] = endpoint.hits.get(self.path, 0) + 1
                if self.path == "/hang":
                    endpoint.release.wait(10)
                status, kind, body = endpoint.answers.get(self.path, (404, "text/plain", "no such path"))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def rt(tmp_path: Path, clock: VirtualClock) -> Iterator[Runtime]:
    r = runtime(tmp_path, clock=clock)
    yield r
    r.close()


def flow(url: str, *, trigger: str = "", tasks: str = "") -> str:
    return f"""
id: watch
namespace: squall.http
tasks:
  - id: show
    type: io.kestra.plugin.core.log.Log
    message: "{{{{ trigger.code }}}} {{{{ trigger.body }}}} {{{{ trigger.headers['Content-Type'][0] }}}}"
{tasks}
triggers:
  - id: poll
    type: io.kestra.plugin.core.http.Trigger
    uri: {url}
    interval: PT1M
{trigger}
"""


def state(rt: Runtime, trigger_id: str = "poll") -> dict[str, Any]:
    record = rt.store.get_trigger(state_key("squall.http", "watch", trigger_id))
    assert record is not None
    return dict(record.data)


def test_a_response_that_meets_the_condition_starts_an_execution_with_the_response(
    rt: Runtime, endpoint: Endpoint, clock: VirtualClock
) -> None:
    endpoint.answers["/price"] = (200, "application/json", '{"price": 100}')
    rt.service.deploy(
        flow(
            f"{endpoint.url}/price", trigger='    responseCondition: "{{ json(response.body).price <= 110 }}"'
        ),
        "watch.yaml",
    )
    (started,) = rt.service.poll_http_triggers()
    ex = rt.service.run(started)
    assert ex.state is State.SUCCESS
    assert ex.trigger is not None
    assert (ex.trigger["code"], ex.trigger["uri"]) == (200, f"{endpoint.url}/price")
    assert messages(rt, started, "show") == ['200 {"price": 100} application/json']
    assert rt.service.poll_http_triggers() == []  # within the interval: no request
    assert endpoint.hits["/price"] == 1

    endpoint.answers["/price"] = (200, "application/json", '{"price": 120}')
    clock.sleep_until(T0 + timedelta(minutes=1))
    assert rt.service.poll_http_triggers() == []  # polled, the condition is false
    assert endpoint.hits["/price"] == 2
    assert state(rt).get("error") is None


def test_the_default_condition_is_a_status_below_400(
    rt: Runtime, endpoint: Endpoint, clock: VirtualClock
) -> None:
    endpoint.answers["/flaky"] = (503, "text/plain", "down")
    rt.service.deploy(flow(f"{endpoint.url}/flaky"), "watch.yaml")
    assert rt.service.poll_http_triggers() == []
    endpoint.answers["/flaky"] = (204, "text/plain", "")
    clock.sleep_until(T0 + timedelta(seconds=59))
    assert rt.service.poll_http_triggers() == []  # not a minute yet
    clock.sleep_until(T0 + timedelta(seconds=60))
    (started,) = rt.service.poll_http_triggers()
    assert rt.service.run(started).trigger["code"] == 204  # type: ignore[index]
    assert endpoint.hits["/flaky"] == 2


def test_no_poll_while_its_execution_runs_and_stop_after_ends_the_polling(
    rt: Runtime, endpoint: Endpoint, clock: VirtualClock
) -> None:
    endpoint.answers["/ok"] = (200, "text/plain", "ready")
    sleep = "  - id: wait\n    type: io.kestra.plugin.core.flow.Sleep\n    duration: PT1H\n"
    rt.service.deploy(
        flow(f"{endpoint.url}/ok", trigger="    stopAfter: [SUCCESS]", tasks=sleep), "watch.yaml"
    )
    (started,) = rt.service.poll_http_triggers()
    clock.sleep_until(T0 + timedelta(minutes=5))
    assert rt.service.poll_http_triggers() == []  # its execution still sleeps: Kestra locks the trigger
    assert endpoint.hits["/ok"] == 1
    assert rt.service.run(started).state is State.SUCCESS
    clock.sleep_until(clock.now() + timedelta(minutes=5))
    assert rt.service.poll_http_triggers() == []
    assert state(rt)["stopped"] == "SUCCESS" and endpoint.hits["/ok"] == 1
    clock.sleep_until(clock.now() + timedelta(hours=1))
    assert rt.service.poll_http_triggers() == [] and endpoint.hits["/ok"] == 1
    # a new revision of the flow polls again (Squall has no API to re-enable a trigger)
    rt.service.deploy(
        flow(f"{endpoint.url}/ok", trigger="    stopAfter: [SUCCESS]", tasks=sleep) + "# v2\n", "watch.yaml"
    )
    (again,) = rt.service.poll_http_triggers()
    assert again != started and endpoint.hits["/ok"] == 2 and "stopped" not in state(rt)


def test_an_execution_that_failed_does_not_stop_a_trigger_that_stops_after_success(
    rt: Runtime, endpoint: Endpoint, clock: VirtualClock
) -> None:
    endpoint.answers["/ok"] = (200, "text/plain", "ready")
    fail = "  - id: boom\n    type: io.kestra.plugin.core.execution.Fail\n"
    rt.service.deploy(
        flow(f"{endpoint.url}/ok", trigger="    stopAfter: [SUCCESS]", tasks=fail), "watch.yaml"
    )
    (first,) = rt.service.poll_http_triggers()
    assert rt.service.run(first).state is State.FAILED
    clock.sleep_until(T0 + timedelta(minutes=1))
    (second,) = rt.service.poll_http_triggers()
    assert second != first and "stopped" not in state(rt)


BAD = [
    ("uri", "", "{{ 'ftp://' ~ flow.id }}", "is not an http:// or https:// URL"),
    ("timeout", "    options: {readTimeout: PT0.2S}", "/hang", "Read Timeout"),
    ("refused", "", "http://127.0.0.1:9/nothing", "failed"),
    (
        "not json",
        '    responseCondition: "{{ json(response.body).price < 3 }}"',
        "/text",
        "responseCondition",
    ),
]


@pytest.mark.parametrize(("case", "extra", "uri", "error"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_poll_is_written_to_the_trigger_state_and_the_next_trigger_still_fires(
    rt: Runtime, endpoint: Endpoint, case: str, extra: str, uri: str, error: str
) -> None:
    endpoint.answers["/text"] = (200, "text/plain", "not json at all")
    endpoint.answers["/ok"] = (200, "text/plain", "fine")
    target = uri if not uri.startswith("/") else endpoint.url + uri
    good = f"  - id: good\n    type: io.kestra.plugin.core.http.Trigger\n    uri: {endpoint.url}/ok\n"
    source = flow(f'"{target}"', trigger=extra) + good
    rt.service.deploy(source, "watch.yaml")
    started = rt.service.poll_http_triggers()
    assert len(started) == 1  # the good trigger, polled after the bad one
    assert rt.service.run(started[0]).trigger["id"] == "good"  # type: ignore[index]
    assert error in state(rt)["error"], state(rt)
    assert "error" not in state(rt, "good")


def test_two_processes_polling_at_once_send_one_request_and_start_one_execution(
    tmp_path: Path, endpoint: Endpoint, clock: VirtualClock
) -> None:
    endpoint.answers["/ok"] = (200, "text/plain", "ready")
    first, second = runtime(tmp_path, clock=clock), runtime(tmp_path, clock=clock)
    try:
        first.service.deploy(flow(f"{endpoint.url}/ok"), "watch.yaml")
        barrier = threading.Barrier(2)
        results: list[list[str]] = []

        def poll(r: Runtime) -> None:
            barrier.wait(5)
            results.append(r.service.poll_http_triggers())

        threads = [threading.Thread(target=poll, args=(r,)) for r in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(len(r) for r in results) == [0, 1]
        assert endpoint.hits["/ok"] == 1
        page = first.store.list_executions(namespace="squall.http", flow_id="watch")
        assert len(page.items) == 1
    finally:
        first.close()
        second.close()


def test_a_disabled_trigger_or_flow_is_not_polled(rt: Runtime, endpoint: Endpoint) -> None:
    endpoint.answers["/ok"] = (200, "text/plain", "ready")
    rt.service.deploy(flow(f"{endpoint.url}/ok", trigger="    disabled: true"), "watch.yaml")
    assert rt.service.poll_http_triggers() == []
    rt.service.deploy(
        flow(f"{endpoint.url}/ok").replace(
            "namespace: squall.http\n", "namespace: squall.http\ndisabled: true\n"
        ),
        "watch.yaml",
    )
    assert rt.service.poll_http_triggers() == []
    assert endpoint.hits == {}


def test_a_post_sends_its_rendered_body_and_headers(rt: Runtime, endpoint: Endpoint) -> None:
    seen: list[tuple[str, str]] = []
    endpoint.answers["/hook"] = (200, "application/json", "{}")
    handler = endpoint.server.RequestHandlerClass
    original = handler.do_POST  # type: ignore[attr-defined]

    def record(self: Any) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        seen.append((self.rfile.read(length).decode(), self.headers.get("X-Flow")))
        original(self)

    handler.do_POST = record  # type: ignore[attr-defined]
    extra = (
        "    method: POST\n"
        '    body: \'{"flow": "{{ flow.id }}"}\'\n'
        "    contentType: application/json\n"
        '    headers: {X-Flow: "{{ flow.namespace }}"}'
    )
    rt.service.deploy(flow(f"{endpoint.url}/hook", trigger=extra), "watch.yaml")
    (started,) = rt.service.poll_http_triggers()
    assert seen == [('{"flow": "watch"}', "squall.http")]
    assert json.loads(rt.service.run(started).trigger["body"]) == {}  # type: ignore[index]


def test_squall_server_polls_an_http_trigger_from_its_tick_loop(tmp_path: Path, endpoint: Endpoint) -> None:
    """The deployment users run: a real ``squall server`` process, its own tick thread, its clock."""
    import httpx

    from control_plane.store.sqlite import SqliteStore
    from tests.integration.service_helpers import wait_for
    from tests.servers import squall_server

    endpoint.answers["/ready"] = (200, "application/json", '{"ready": true}')
    token, db = "http-trigger-token", tmp_path / "server.db"
    source = flow(f"{endpoint.url}/ready", trigger="    stopAfter: [SUCCESS]").replace("PT1M", "PT0.2S")
    with squall_server(tmp_path, "--db", str(db), "--token", token, "--tick-interval", "0.1") as server:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            deployed = http.post(
                "/api/v1/main/flows", content=source, headers={"Content-Type": "application/x-yaml"}
            )
            assert deployed.status_code == 200, deployed.text
            store = SqliteStore(db)
            try:
                key = state_key("squall.http", "watch", "poll")

                def stopped() -> bool:
                    record = store.get_trigger(key)
                    return record is not None and record.data.get("stopped") == "SUCCESS"

                wait_for(stopped, 60, "the trigger to stop after its execution's SUCCESS")
                query = {"filters[namespace][EQUALS]": "squall.http"}
                found = http.get("/api/v1/main/executions/search", params=query).json()
                assert found["total"] == 1, found
                record = store.get_trigger(key)
                assert record is not None
                execution = http.get(f"/api/v1/main/executions/{record.data['executionId']}").json()
                assert execution["state"]["current"] == "SUCCESS"
                assert execution["trigger"]["variables"]["body"] == '{"ready": true}'
                logs = http.get(f"/api/v1/main/logs/{execution['id']}").json()
                assert '200 {"ready": true} application/json' in [x["message"] for x in logs]
                assert endpoint.hits["/ready"] == 1
            finally:
                store.close()
    assert server.returncode == 0 and "Traceback" not in server.stderr()


def test_the_tick_and_schedule_lambdas_poll_http_triggers_on_the_cloud_store(
    store_factory: Any, tmp_path: Path, endpoint: Endpoint
) -> None:
    """The cloud path: the tick Lambda's pass and a Scheduler target naming the trigger, on
    SQLite and on DynamoDB Local (``store_factory`` is parametrised over both)."""
    from control_plane.handlers import schedule, tick
    from tests.integration.test_handlers import World

    endpoint.answers["/status"] = (200, "application/json", '{"ok": true}')
    world = World(store_factory, tmp_path)
    try:
        source = flow(f"{endpoint.url}/status").replace(
            "namespace: squall.http", "namespace: squall.handlers"
        )
        world.rt.service.deploy(source, "watch.yaml")
        (first,) = tick.handler({}, None)["httpTriggered"]
        assert tick.handler({}, None)["httpTriggered"] == []  # within its interval
        execution = world.store.get_execution(first)
        assert execution.state is State.SUCCESS and execution.trigger["body"] == '{"ok": true}'  # type: ignore[index]
        world.advance(60)
        named = {"namespace": "squall.handlers", "flowId": "watch", "triggerId": "poll"}
        (second,) = schedule.handler(named, None)["started"]
        assert second != first and endpoint.hits["/status"] == 2
        assert schedule.handler(named, None)["started"] == []
    finally:
        world.close()


def test_only_flows_deployed_with_an_http_trigger_are_polled(
    rt: Runtime, endpoint: Endpoint, clock: VirtualClock
) -> None:
    """The tick reads the http-triggers index, kept at deploy and delete, not every flow."""
    endpoint.answers["/ok"] = (200, "text/plain", "ready")
    rt.service.deploy(flow(f"{endpoint.url}/ok"), "watch.yaml")
    assert rt.service.driver.http_pollers.flows() == [("squall.http", "watch", 1)]
    without = flow(f"{endpoint.url}/ok").split("triggers:")[0]
    rt.service.deploy(without, "watch.yaml")  # revision 2 has no trigger
    assert rt.service.driver.http_pollers.flows() == []
    assert rt.service.poll_http_triggers() == [] and endpoint.hits == {}
    rt.service.deploy(flow(f"{endpoint.url}/ok"), "watch.yaml")
    rt.service.delete_flow("squall.http", "watch")
    assert rt.service.poll_http_triggers() == [] and endpoint.hits == {}
