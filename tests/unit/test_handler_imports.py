"""What a Lambda handler's cold start imports, checked by what gets loaded rather than timed.

``benchmarks/coldstart.py`` measures the time; these tests pin the decisions behind it (ADR
0006) so that a change cannot undo them unnoticed: value types are msgspec Structs, not
dataclasses; what only some requests need is not imported at init (Jinja2, croniter, and for
the API's reads the whole flow language); what every request needs is.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ("api", "tick", "events", "schedule", "sweeper")
UNWANTED = ("jinja2", "croniter", "boto3", "botocore.client", "typer", "rich", "jwt", "rsa", "cryptography")
FLOW_LANGUAGE = (
    "control_plane.service.service",
    "control_plane.engine.planner",
    "control_plane.flows.models",
    "yaml",
)

_PROBE = """
import dataclasses, inspect, json, sys
import control_plane.handlers.{handler}
ours = [m for name, m in list(sys.modules.items()) if name.split(".")[0] in ("control_plane", "runners")]
dataclasses_found = sorted(
    f"{{m.__name__}}.{{name}}"
    for m in ours
    for name, value in vars(m).items()
    if inspect.isclass(value) and value.__module__ == m.__name__ and dataclasses.is_dataclass(value)
)
print(json.dumps({{
    "dataclasses": dataclasses_found,
    "loaded": sorted(n for n in {unwanted!r} if n in sys.modules),
    "flow_language": sorted(n for n in {flow_language!r} if n in sys.modules),
}}))
"""


def _last_json(code: str, **env: str) -> Any:
    """Run ``code`` in a fresh interpreter (SQLite store, no auth); the JSON it printed last."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "SQUALL_STORE": "sqlite", "SQUALL_AUTH": "none", **env},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


@functools.cache  # one interpreter per handler and environment, read by several tests
def _probe(handler: str, **env: str) -> dict[str, list[str]]:
    loaded: dict[str, list[str]] = _last_json(
        _PROBE.format(handler=handler, unwanted=UNWANTED, flow_language=FLOW_LANGUAGE), **env
    )
    return loaded


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_handler_imports_no_dataclass_of_ours(handler: str) -> None:
    # A frozen dataclass costs about 1 ms of exec per class at import; a Struct 0.04 ms.
    assert _probe(handler)["dataclasses"] == []


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_handler_leaves_out_what_only_some_requests_need(handler: str) -> None:
    # Jinja2 (templates) and croniter (Schedule triggers) load on first use; boto3 with the
    # DynamoDB store's first client (powertools imports botocore's package, not its client);
    # the CLI's libraries never.
    assert _probe(handler)["loaded"] == []


@pytest.mark.parametrize("handler", ["api", "sweeper"])
def test_reads_do_not_import_the_flow_language(handler: str) -> None:
    # An API read (an execution, its logs, a flow's source) and the sweeper need only the
    # store; the service, planner, flow models and YAML load with the first request that
    # needs them (``Runtime.service``).
    assert _probe(handler)["flow_language"] == []


@pytest.mark.parametrize(
    ("init", "preloaded"), [("snap-start", True), ("provisioned-concurrency", True), ("on-demand", False)]
)
def test_the_api_imports_the_service_at_init_when_init_is_off_the_requests_path(
    init: str, preloaded: bool
) -> None:
    # SnapStart snapshots what init imported; provisioned concurrency runs init ahead of traffic.
    loaded = _probe("api", AWS_LAMBDA_INITIALIZATION_TYPE=init)["flow_language"]
    assert loaded == (sorted(FLOW_LANGUAGE) if preloaded else [])


@pytest.mark.parametrize("handler", ["tick", "events", "schedule"])
def test_handlers_that_move_executions_import_the_service_at_init(handler: str) -> None:
    # Their every request may advance an execution: deferring the import would only move it
    # into the first request (ADR 0006).
    assert _probe(handler)["flow_language"] == sorted(FLOW_LANGUAGE)


_READ_PROBE = """
import json, sys
from control_plane.handlers import api
event = {{
    "version": "2.0", "routeKey": "$default", "rawPath": {path!r}, "rawQueryString": "",
    "headers": {{}}, "isBase64Encoded": False,
    "requestContext": {{"http": {{"method": "GET", "path": {path!r}, "sourceIp": "127.0.0.1"}},
                        "requestId": "probe", "stage": "$default", "timeEpoch": 0}},
}}
out = api.handler(event, None)
loaded = sorted(n for n in {flow_language!r} if n in sys.modules)
print(json.dumps({{"status": out["statusCode"], "loaded": loaded}}))
"""


@pytest.mark.parametrize(
    "path", ["/api/v1/main/executions/search", "/api/v1/main/flows/search", "/openapi.json"]
)
def test_an_api_read_is_served_without_the_flow_language(path: str, tmp_path: Path) -> None:
    answer = _last_json(
        _READ_PROBE.format(path=path, flow_language=FLOW_LANGUAGE),
        SQUALL_DB=str(tmp_path / "squall.db"),
        SQUALL_DATA_DIR=str(tmp_path),
    )
    assert answer == {"status": 200, "loaded": []}


_PUSH_PROBE = """
import json, sys
from control_plane.handlers import events
from control_plane.ingress.webhook import sign
body = b'{{"source": "aws.batch", "detail": {{}}}}'
event = {{
    "version": "2.0", "routeKey": "POST /events/{{proxy+}}", "rawPath": "/events/webhook/aws.batch",
    "rawQueryString": "", "isBase64Encoded": False, "body": body.decode(),
    "headers": {{"x-squall-signature": sign("s3cr3t", body, {now})}},
    "requestContext": {{"http": {{"method": "POST", "path": "/events/webhook/aws.batch"}},
                        "requestId": "probe", "stage": "$default", "timeEpoch": 0}},
}}
out = events.handler(event, None)
print(json.dumps({{"status": out["statusCode"], "loaded": sorted(n for n in {lazy!r} if n in sys.modules)}}))
"""


def test_a_webhook_push_loads_neither_the_jwt_library_nor_boto3(tmp_path: Path) -> None:
    # The events function's HTTP ingress: PyJWT and rsa load with the first Pub/Sub
    # push only (tests/integration/test_ingress.py shows it loading there), boto3 with the
    # first secret read from a Secrets Manager ARN; a webhook whose secret is a SECRET_<NAME>
    # variable needs neither.
    import base64
    import time

    answer = _last_json(
        _PUSH_PROBE.format(
            now=int(time.time()), lazy=("jwt", "rsa", "cryptography", "boto3", "urllib.request")
        ),
        SQUALL_DB=str(tmp_path / "squall.db"),
        SQUALL_DATA_DIR=str(tmp_path),
        SQUALL_WEBHOOK_SECRETS="WEBHOOK",
        SECRET_WEBHOOK=base64.b64encode(b"s3cr3t").decode(),
    )
    assert answer == {"status": 200, "loaded": []}
