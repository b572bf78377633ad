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


FAILING = f"""
id: failing
namespace: {NAMESPACE}
tasks:
  - id: boom
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - echo "about to fail"
      - exit 3
"""

UPLOAD = f"""
id: upload
namespace: {NAMESPACE}
inputs:
  - id: data
    type: FILE
tasks:
  - id: show
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    inputFiles:
      in.txt: "{{{{ inputs.data }}}}"
    commands:
      - cat in.txt
"""

SIGNED = f"""
id: signed
namespace: {NAMESPACE}
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
      signed.txt: "{{{{ outputs.sign.onResume.document }}}}"
    commands:
      - cat signed.txt
"""

CHATTY_LINES = 10_000
CHATTY = f"""
id: chatty
namespace: {NAMESPACE}
tasks:
  - id: talk
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - seq 1 {CHATTY_LINES} | sed 's/^/line /'
"""

SCHEDULED = f"""
id: yearly
namespace: {NAMESPACE}
triggers:
  - id: new-year
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 0 1 1 *"
tasks:
  - id: r
    type: io.kestra.plugin.core.debug.Return
    format: happy new year
"""

MANY_VALUES = 1_500  # past the 1,000 task runs an execution lists itself
MANY = f"""
id: many
namespace: {NAMESPACE}
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    concurrencyLimit: 0
    values: {[str(i) for i in range(MANY_VALUES)]}
    tasks:
      - id: one
        type: io.kestra.plugin.core.debug.Return
        format: "{{{{ taskrun.value }}}}"
"""
