"""The flows the browser tests run: one per page or action they exercise."""

from __future__ import annotations

from pathlib import Path

NAMESPACE = "squall.ui"

GREET = f"""
id: greet
namespace: {NAMESPACE}
description: Says hello, slowly enough for the page to see it running.
inputs:
  - id: name
    type: STRING
  - id: times
    type: INT
    defaults: 2
  - id: token
    type: SECRET
    required: false
tasks:  # a comment: the source view and the editor colour it (axe checks its contrast)
  - id: hello
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - echo "hello {{{{ inputs.name }}}}"
      - sleep 2
      - echo "bye {{{{ inputs.name }}}}"
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: ["a", "b"]
    tasks:
      - id: item
        type: io.kestra.plugin.core.debug.Return
        format: "{{{{ taskrun.value }}}}"
triggers:
  - id: hook
    type: io.kestra.plugin.core.trigger.Webhook
    key: greet-key
errors:
  - id: oops
    type: io.kestra.plugin.core.log.Log
    message: failed
"""

LONG = f"""
id: long
namespace: {NAMESPACE}
tasks:
  - id: nap
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - echo napping
      - sleep 120
"""

APPROVAL = f"""
id: approval
namespace: {NAMESPACE}
tasks:
  - id: approve
    type: io.kestra.plugin.core.flow.Pause
    onResume:
      - id: reason
        type: STRING
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "because {{{{ outputs.approve.onResume.reason }}}}"
"""

FILES = f"""
id: files
namespace: {NAMESPACE}
tasks:
  - id: make
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    outputFiles: [report.txt]
    commands:
      - echo "the report" > report.txt
"""


def flaky(marker: Path) -> str:
    """Fails on its first run (it leaves ``marker``), succeeds once restarted."""
    return f"""
id: flaky
namespace: {NAMESPACE}
tasks:
  - id: once
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - test -f {marker} || {{ touch {marker}; echo "first run fails"; exit 1; }}
      - echo "second run passes"
"""
