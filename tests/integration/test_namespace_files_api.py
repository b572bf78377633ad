"""Namespace files uploaded through the API reach a script task's working directory.

The upload goes through the HTTP API as API Gateway calls it; the flow then runs on the real
process runner, its script reading the file its ``namespaceFiles`` staged.
"""

from __future__ import annotations

import time
from pathlib import Path

from control_plane.api import app
from control_plane.conformance import execution_logs
from control_plane.engine.states import State
from control_plane.runtime import load_settings, open_runtime
from tests.integration.api_events import LambdaContext, event, multipart_body

TOKEN = "s3cret-token-for-tests"

FLOW = """
id: uses-files
namespace: squall.files
tasks:
  - id: run
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    namespaceFiles:
      enabled: true
      exclude:
        - /drafts/**
    commands:
      - sh scripts/hello.sh
      - test ! -e drafts/old.sh && echo "drafts excluded"
"""


def test_a_file_uploaded_through_the_api_is_staged_for_a_script(tmp_path: Path) -> None:
    settings = load_settings(
        {}, db=str(tmp_path / "squall.db"), data_dir=str(tmp_path / "data"), auth="token", api_token=TOKEN
    )
    with open_runtime(settings) as rt:
        http = app.Api(rt)
        for path, content in (
            ("/scripts/hello.sh", b"echo uploaded through the API"),
            ("/drafts/old.sh", b"x"),
        ):
            body, content_type = multipart_body({}, {"fileContent": (path.rsplit("/", 1)[-1], content)})
            raw = http.handle(
                event(
                    "POST",
                    "/api/v1/main/namespaces/squall.files/files",
                    token=TOKEN,
                    query={"path": path},
                    body=body,
                    content_type=content_type,
                ),
                LambdaContext(),
            )
            assert raw["statusCode"] == 200, raw
        record = rt.service.deploy(FLOW, "<test>")
        started = rt.service.start(record.namespace, record.id, {})
        execution = rt.service.run(started.id, deadline=time.monotonic() + 60)
        messages = [line.message for line in execution_logs(rt, execution.id)]
        assert execution.state is State.SUCCESS, messages
        assert "uploaded through the API" in messages
        assert "drafts excluded" in messages
