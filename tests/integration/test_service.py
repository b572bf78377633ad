"""The service layer on SQLite with the real process runner: durable, exactly-once, controllable."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from control_plane.engine.events import Kill
from control_plane.engine.states import State
from control_plane.errors import FlowValidationError, InputError, ServiceError
from control_plane.service.capture import LogLimits
from control_plane.store.base import JobPhase
from runners.process import ProcessRunner
from tests.integration.service_helpers import deploy_and_run, messages, pid_alive, run_of, runtime, wait_for

SHELL = "io.kestra.plugin.scripts.shell.Commands"


def flow(tasks: str, extra: str = "") -> str:
    return f"id: f\nnamespace: t\n{extra}tasks:\n{tasks}"


def test_inline_flow_is_stored_and_reloads_equal(tmp_path: Path) -> None:
    with runtime(tmp_path) as rt:
        source = (Path(__file__).parents[2] / "samples" / "hello.yaml").read_text()
        final = deploy_and_run(rt, source, {"name": "Ada"})
        assert final.state is State.SUCCESS
        stored = rt.store.get_execution(final.id)
        assert stored.version == final.version
        assert dict(stored.taskruns) == dict(final.taskruns)
        assert stored.outputs == {"summary": "Ada visited 3 planets, last EARTH"}
        assert "Hello, Ada!" in messages(rt, final.id)


def test_shell_outputs_exit_code_files_and_env(tmp_path: Path) -> None:
    source = flow(
        f"""  - id: a
    type: {SHELL}
    env: {{GREETING: bonjour}}
    inputFiles: {{in/data.txt: "from input"}}
    outputFiles: ["*.txt"]
    commands:
      - echo "$GREETING $(cat in/data.txt)"
      - echo result > out.txt
      - 'echo ''::{{"outputs":{{"n":42,"who":"a"}}}}::'''
  - id: b
    type: io.kestra.plugin.scripts.node.Script
    inputFiles:
      got.txt: "{{{{ outputs.a.outputFiles['out.txt'] }}}}"
    script: |
      const fs = require("fs");
      console.log("node read " + fs.readFileSync("got.txt", "utf8").trim() + " n={{{{ outputs.a.vars.n }}}}");
"""
    )
    with runtime(tmp_path) as rt:
        final = deploy_and_run(rt, source)
        assert final.state is State.SUCCESS, [(tr.task_id, tr.error) for tr in final.ordered_taskruns()]
        a = run_of(final, "a")
        assert a.outputs is not None
        assert a.outputs["vars"] == {"n": 42, "who": "a"}
        assert a.outputs["exitCode"] == 0
        uri = a.outputs["outputFiles"]["out.txt"]
        assert uri.startswith("file://") and rt.service.storage.read(uri) == b"result\n"
        assert "bonjour from input" in messages(rt, final.id, "a")
        assert "node read result n=42" in messages(rt, final.id, "b")
        # the marker line is parsed, not stored as a log line
        assert not any(m.startswith("::") for m in messages(rt, final.id))


def test_failed_script_keeps_outputs_and_exit_code(tmp_path: Path) -> None:
    source = flow(
        f"""  - id: a
    type: {SHELL}
    commands:
      - 'echo ''::{{"outputs":{{"partial":true}}}}::'''
      - echo boom >&2
      - exit 3
"""
    )
    with runtime(tmp_path) as rt:
        final = deploy_and_run(rt, source)
        a = run_of(final, "a")
        assert final.state is State.FAILED and a.state is State.FAILED
        assert a.outputs == {"vars": {"partial": True}, "exitCode": 3}
        assert "exit code 3" in (a.error or "")
        lines = [(x.level.value, x.message) for x in _logs(rt, final.id) if x.task_id == "a"]
        assert ("ERROR", "boom") in lines  # stderr is logged at ERROR, as Kestra >= 0.21 does


def _logs(rt, execution_id):  # type: ignore[no-untyped-def]
    from tests.integration.service_helpers import logs

    return logs(rt, execution_id)


def test_python_script_and_fail_fast(tmp_path: Path) -> None:
    source = flow(
        f"""  - id: py
    type: io.kestra.plugin.scripts.python.Script
    beforeCommands: ["export X=7"]
    script: |
      import os
      print("x is", os.environ["X"])
  - id: stops
    type: {SHELL}
    commands: ["false", "echo never printed"]
"""
    )
    with runtime(tmp_path) as rt:
        final = deploy_and_run(rt, source)
        assert run_of(final, "py").state is State.SUCCESS
        assert "x is 7" in messages(rt, final.id, "py")
        assert run_of(final, "stops").state is State.FAILED
        assert "never printed" not in messages(rt, final.id)


class _Crash(BaseException):
    """Stands for the control plane dying at a precise point (not an Exception: nothing catches it)."""


class _CrashingRunner:
    """Wraps the real process runner and dies before or after a real submit."""

    name = ProcessRunner.name
    Options = ProcessRunner.Options
    storage_schemes = ProcessRunner.storage_schemes

    def __init__(self, real, *, after_submit: bool) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.after_submit = after_submit

    def __getattr__(self, item: str):  # type: ignore[no-untyped-def]
        return getattr(self.real, item)

    def submit(self, spec):  # type: ignore[no-untyped-def]
        if self.after_submit:
            self.real.submit(spec)
        raise _Crash


@pytest.mark.parametrize("after_submit", [False, True], ids=["before-submit", "after-submit"])
def test_exactly_once_submission_across_a_crash(tmp_path: Path, after_submit: bool) -> None:
    ledger = tmp_path / "ledger.txt"
    source = flow(f"  - id: once\n    type: {SHELL}\n    commands: ['echo ran >> {ledger}']\n")
    with runtime(tmp_path) as rt:
        rt.service.runners.get("process")  # build the real one
        real = rt.service.runners._instances["process"]
        rt.service.runners._instances["process"] = _CrashingRunner(real, after_submit=after_submit)
        record = rt.service.deploy(source)
        with pytest.raises(_Crash):
            rt.service.start(record.namespace, record.id)
        (job,) = rt.store.active_jobs()
        assert job.phase is JobPhase.SUBMITTING and job.handle is None
        execution_id = job.execution_id
    with runtime(tmp_path) as rt2:  # a new process on the same store
        final = rt2.service.run(execution_id, deadline=time.monotonic() + 60)
        assert final.state is State.SUCCESS
        assert ledger.read_text() == "ran\n"  # one attempt, one job, exactly one run
        assert rt2.store.get_job(job.name).phase is JobPhase.DONE  # type: ignore[union-attr]


def test_kill_cancels_the_running_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    source = flow(f"  - id: long\n    type: {SHELL}\n    commands: ['echo $$ > {pidfile}; exec sleep 60']\n")
    with runtime(tmp_path) as rt:
        record = rt.service.deploy(source)
        started = rt.service.start(record.namespace, record.id)
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", what="the job to start")
        pid = int(pidfile.read_text())
        assert pid_alive(pid)
        rt.service.kill(started.id)
        final = rt.service.run(started.id, deadline=time.monotonic() + 30)
        assert final.state is State.KILLED
        assert run_of(final, "long").state is State.KILLED
        wait_for(lambda: not pid_alive(pid), what="the process to die")
        with pytest.raises(ServiceError, match="already ended KILLED"):
            rt.service.kill(started.id)


def test_task_timeout_kills_the_process_and_fails_the_task(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    source = flow(
        f"  - id: slow\n    type: {SHELL}\n    timeout: PT0.5S\n"
        f"    commands: ['echo $$ > {pidfile}; exec sleep 60']\n"
    )
    with runtime(tmp_path, poll_interval=0.05) as rt:
        final = deploy_and_run(rt, source)
        slow = run_of(final, "slow")
        assert final.state is State.FAILED and slow.state is State.FAILED
        assert "Timeout" in (slow.error or "")
        assert not pid_alive(int(pidfile.read_text()))


def test_restart_reruns_the_failed_task_in_the_same_execution(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    source = flow(
        f"  - id: first\n    type: io.kestra.plugin.core.debug.Return\n    format: ok\n"
        f"  - id: gated\n    type: {SHELL}\n    commands: ['test -f {gate}']\n"
    )
    with runtime(tmp_path) as rt:
        failed = deploy_and_run(rt, source)
        assert failed.state is State.FAILED
        with pytest.raises(ServiceError, match="only FAILED or KILLED"):
            rt.service.restart(
                deploy_and_run(
                    rt, flow("  - id: ok\n    type: io.kestra.plugin.core.debug.Return\n    format: x\n")
                ).id
            )
        gate.write_text("open")
        rt.service.restart(failed.id)
        final = rt.service.run(failed.id, deadline=time.monotonic() + 60)
        assert final.id == failed.id and final.state is State.SUCCESS
        gated = run_of(final, "gated")
        assert [a.state for a in gated.attempts] == [State.FAILED, State.SUCCESS]
        assert run_of(final, "first").attempts == run_of(failed, "first").attempts  # kept as it was


def test_resume_with_on_resume_inputs(tmp_path: Path) -> None:
    source = flow(
        """  - id: approve
    type: io.kestra.plugin.core.flow.Pause
    onResume:
      - id: ok
        type: BOOLEAN
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "approved={{ outputs.approve.onResume.ok }}"
"""
    )
    with runtime(tmp_path) as rt:
        paused = deploy_and_run(rt, source)
        assert paused.state is State.PAUSED
        with pytest.raises(InputError):
            rt.service.resume(paused.id, {"ok": "maybe"})
        assert rt.store.get_execution(paused.id).version == paused.version  # the bad resume stored nothing
        rt.service.resume(paused.id, {"ok": "true"})
        final = rt.service.run(paused.id)
        assert final.state is State.SUCCESS
        assert run_of(final, "after").outputs == {"value": "approved=true"}
        with pytest.raises(ServiceError, match="not PAUSED"):
            rt.service.resume(paused.id)


def test_replay_creates_a_linked_execution(tmp_path: Path) -> None:
    source = flow(
        "  - id: r\n    type: io.kestra.plugin.core.debug.Return\n    format: '{{ inputs.x }}'\n",
        "inputs:\n  - id: x\n    type: STRING\n",
    )
    with runtime(tmp_path) as rt:
        first = deploy_and_run(rt, source, {"x": "v1"})
        again = rt.service.run(rt.service.replay(first.id).id)
        assert again.id != first.id and again.original_id == first.id
        assert run_of(again, "r").outputs == {"value": "v1"}


def test_subflow_waits_for_the_child_and_gets_its_outputs(tmp_path: Path) -> None:
    child = (
        "id: child\nnamespace: t\ninputs:\n  - id: n\n    type: INT\n"
        f"tasks:\n  - id: c\n    type: {SHELL}\n"
        "    commands: ['echo ''::{\"outputs\":{\"double\":{{ inputs.n * 2 }}}}::''']\n"
        "outputs:\n  - id: double\n    type: INT\n    value: '{{ outputs.c.vars.double }}'\n"
    )
    parent = flow(
        "  - id: call\n    type: io.kestra.plugin.core.flow.Subflow\n    namespace: t\n    flowId: child\n"
        "    inputs: {n: 21}\n    wait: true\n"
        "  - id: show\n    type: io.kestra.plugin.core.debug.Return\n"
        "    format: '{{ outputs.call.outputs.double }}'\n"
    )
    with runtime(tmp_path) as rt:
        rt.service.deploy(child)
        final = deploy_and_run(rt, parent)
        assert final.state is State.SUCCESS
        assert run_of(final, "show").outputs == {"value": "42"}
        children = rt.store.list_executions(flow_id="child").items
        assert len(children) == 1 and children[0].parent_id == final.id


def test_subflow_of_a_disabled_flow_fails_the_calling_task_and_starts_no_child(tmp_path: Path) -> None:
    """Kestra's Subflow throws "Cannot execute a flow which is disabled": the parent task fails."""
    child = (
        "id: child\nnamespace: t\ndisabled: true\n"
        "tasks:\n  - id: c\n    type: io.kestra.plugin.core.log.Log\n    message: ran\n"
    )
    parent = flow(
        "  - id: call\n    type: io.kestra.plugin.core.flow.Subflow\n    namespace: t\n    flowId: child\n"
    )
    with runtime(tmp_path) as rt:
        rt.service.deploy(child)
        final = deploy_and_run(rt, parent)
        assert final.state is State.FAILED
        assert run_of(final, "call").state is State.FAILED
        assert run_of(final, "call").error == "Cannot execute a flow which is disabled"
        assert rt.store.list_executions(flow_id="child").items == []


def test_flow_retry_creates_a_new_execution(tmp_path: Path) -> None:
    source = flow(
        "  - id: boom\n    type: io.kestra.plugin.core.execution.Fail\n",
        "retry:\n  type: constant\n  interval: PT0.1S\n  maxAttempts: 2\n  behavior: CREATE_NEW_EXECUTION\n",
    )
    with runtime(tmp_path) as rt:
        final = deploy_and_run(rt, source)
        assert final.state is State.FAILED
        assert final.labels.get("system.retryAttempt") == "2"
        assert len(rt.store.list_executions(flow_id="f").items) == 2


def test_concurrent_services_never_lose_an_update(tmp_path: Path) -> None:
    """Two services on one store: the stale one gets a conflict, reloads, and plans again."""
    source = flow(
        "  - id: wait\n    type: io.kestra.plugin.core.flow.Pause\n"
        "  - id: after\n    type: io.kestra.plugin.core.debug.Return\n    format: done\n"
    )
    with runtime(tmp_path) as a, runtime(tmp_path) as b:
        paused = deploy_and_run(a, source)
        assert a.service.driver.load(paused.id).version == paused.version  # a holds it cached
        b.service.resume(paused.id)
        b.service.run(paused.id)
        # a's cached copy is stale: its next event must conflict, reload and be planned on the new state
        after = a.service.advance(paused.id, Kill(at=paused.created))
        assert after.state is State.SUCCESS
        assert a.store.get_execution(paused.id).version == after.version


def test_threads_advancing_one_execution(tmp_path: Path) -> None:
    tasks = "".join(f"      - id: p{i}\n        type: io.kestra.plugin.core.flow.Pause\n" for i in range(8))
    source = flow(f"  - id: par\n    type: io.kestra.plugin.core.flow.Parallel\n    tasks:\n{tasks}")
    with runtime(tmp_path) as rt:
        paused = deploy_and_run(rt, source)
        ids = [tr.id for tr in paused.ordered_taskruns() if tr.task_id != "par"]
        assert len(ids) == 8
        errors: list[BaseException] = []

        def resume(tr_id: str) -> None:
            try:
                with runtime(tmp_path) as own:
                    own.service.resume(paused.id, taskrun_id=tr_id)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=resume, args=(i,)) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        final = rt.store.get_execution(paused.id)
        assert final.state is State.SUCCESS
        assert all(tr.state is State.SUCCESS for tr in final.taskruns.values())


def test_unknown_runner_and_bad_options_are_load_errors(tmp_path: Path) -> None:
    with runtime(tmp_path) as rt:
        with pytest.raises(FlowValidationError) as bad_type:
            rt.service.deploy(
                flow(
                    f"  - id: a\n    type: {SHELL}\n    taskRunner:\n      type: io.example.Nope\n"
                    "    commands: [x]\n"
                ),
                "bad.yaml",
            )
        assert "bad.yaml:7:" in str(bad_type.value) and "unknown task runner type 'io.example.Nope'" in str(
            bad_type.value
        )
        with pytest.raises(FlowValidationError) as bad_option:
            rt.service.deploy(
                flow(
                    f"  - id: a\n    type: {SHELL}\n    taskRunner:\n"
                    "      type: io.kestra.plugin.core.runner.Process\n      bogus: 1\n    commands: [x]\n"
                ),
                "opt.yaml",
            )
        assert "opt.yaml:8:" in str(bad_option.value) and "bogus" in str(bad_option.value)
        assert rt.store.list_flows().items == []  # nothing stored


def test_templated_unknown_runner_fails_the_task_with_the_reason(tmp_path: Path) -> None:
    source = flow(
        f"  - id: a\n    type: {SHELL}\n    taskRunner:\n      type: \"{{{{ 'io.example' }}}}.Nope\"\n"
        "    commands: [echo hi]\n"
    )
    with runtime(tmp_path) as rt:
        final = deploy_and_run(rt, source)
        a = run_of(final, "a")
        assert final.state is State.FAILED
        assert "unknown task runner type 'io.example.Nope'" in (a.error or "")
        assert rt.store.active_jobs() == []


def test_huge_stdout_is_capped_in_the_store_but_outputs_survive(tmp_path: Path) -> None:
    source = flow(
        f"""  - id: loud
    type: {SHELL}
    commands:
      - head -c 100000000 /dev/zero | tr '\\0' x | fold -w 1000; echo
      - 'echo ''::{{"outputs":{{"done":true}}}}::'''
"""
    )
    with runtime(tmp_path) as rt:
        final = deploy_and_run(rt, source)
        loud = run_of(final, "loud")
        assert loud.state is State.SUCCESS, loud.error
        assert loud.outputs is not None and loud.outputs["vars"] == {"done": True}
        lines = messages(rt, final.id, "loud")
        limits = rt.service.log_limits
        assert len(lines) == limits.head_lines + 1 + limits.tail_lines
        assert any("log lines omitted" in m for m in lines)
        assert lines[-1] == "x" * 1000  # the last line is kept


def big_marker(task: str, chars: int, then: str = "") -> str:
    """A task printing ``::{"outputs":{"big":"xxx..."}}::`` with ``chars`` x's, then a task using it."""
    return flow(
        f"""  - id: {task}
    type: {SHELL}
    commands:
      - printf '::{{"outputs":{{"big":"'; head -c {chars} /dev/zero | tr '\\0' x; printf '"}}}}::\\n'{then}
  - id: next
    type: io.kestra.plugin.core.log.Log
    message: "got {{{{ outputs.{task}.vars.big | length }}}}"
"""
    )


def test_a_50_mb_outputs_marker_fails_the_task_naming_the_limit(tmp_path: Path) -> None:
    with runtime(tmp_path) as rt:
        final = deploy_and_run(rt, big_marker("big", 50_000_000))
        big = run_of(final, "big")
        assert final.state is State.FAILED and big.state is State.FAILED
        assert big.error == (
            "an outputs marker line of 50,000,026 bytes is over the limit of 1,048,576 bytes on a task's"
            " outputs (SQUALL_MAX_OUTPUTS_BYTES): none of its outputs were kept; write large results to a"
            " file listed in outputFiles"
        )
        assert big.outputs is not None and big.outputs["vars"] == {} and big.outputs["exitCode"] == 0
        assert "next" not in {tr.task_id for tr in final.taskruns.values()}  # never ran on missing outputs
        # the log keeps the line, within its own limit
        limits = rt.service.log_limits
        (line,) = [m for m in messages(rt, final.id, "big") if m.startswith('::{"outputs"')]
        assert line == '::{"outputs":{"big":"' + "x" * (limits.max_line_chars - 21) + (
            f" ... [{50_000_026 - limits.max_line_chars} characters truncated]"
        )


def test_a_marker_longer_than_a_runner_record_but_under_the_limit_is_kept(tmp_path: Path) -> None:
    with runtime(tmp_path, log_limits=LogLimits(max_outputs_bytes=4 << 20)) as rt:
        final = deploy_and_run(rt, big_marker("big", 2_500_000))  # 3 records of the process runner
        assert final.state is State.SUCCESS, [(tr.task_id, tr.error) for tr in final.ordered_taskruns()]
        assert "got 2500000" in messages(rt, final.id, "next")
        assert not any(m.startswith("::") for m in messages(rt, final.id))


def test_outputs_over_the_limit_fail_a_failed_script_too_and_say_both(tmp_path: Path) -> None:
    with runtime(tmp_path, log_limits=LogLimits(max_outputs_bytes=4_096)) as rt:
        final = deploy_and_run(rt, big_marker("big", 10_000, then="; exit 3"))
        big = run_of(final, "big")
        assert big.state is State.FAILED
        assert (big.error or "").startswith("exit code 3; an outputs marker line of 10,026 bytes is over the")


def test_many_markers_adding_up_over_the_limit_fail_the_task(tmp_path: Path) -> None:
    source = flow(
        f"""  - id: many
    type: {SHELL}
    commands:
      - for i in 1 2 3 4 5 6 7 8; do printf '::{{"outputs":{{"k%s":"%01000d"}}}}::\\n' $i 0; done
"""
    )
    with runtime(tmp_path, log_limits=LogLimits(max_outputs_bytes=4_096)) as rt:
        final = deploy_and_run(rt, source)
        many = run_of(final, "many")
        assert many.state is State.FAILED
        assert (many.error or "").startswith("the merged outputs of its markers (")
        assert "over the limit of 4,096 bytes on a task's outputs (SQUALL_MAX_OUTPUTS_BYTES)" in (
            many.error or ""
        )


def test_non_utf8_output_and_crashed_process(tmp_path: Path) -> None:
    source = flow(
        f"""  - id: bytes
    type: {SHELL}
    commands: ["printf 'caf\\\\351\\\\n'"]
  - id: crash
    type: {SHELL}
    commands: ["kill -9 $$"]
"""
    )
    with runtime(tmp_path) as rt:
        final = deploy_and_run(rt, source)
        assert run_of(final, "bytes").state is State.SUCCESS
        assert "caf\ufffd" in messages(rt, final.id, "bytes")
        crash = run_of(final, "crash")
        assert crash.state is State.FAILED and crash.error
        assert rt.store.get_execution(final.id).state is State.FAILED  # store consistent
        assert rt.store.active_jobs() == []


def test_missing_input_file_uri_fails_the_task(tmp_path: Path) -> None:
    with runtime(tmp_path) as rt:
        missing = rt.service.storage.prefix("t", "f", "gone", "tr", 1) + "nope.csv"
        source = flow(
            f"  - id: a\n    type: {SHELL}\n    inputFiles:\n      a.csv: '{missing}'\n"
            "    commands: [cat a.csv]\n"
        )
        final = deploy_and_run(rt, source)
        a = run_of(final, "a")
        assert a.state is State.FAILED  # the runner could not stage it: the job fails, naming the file
        assert "input file a.csv" in (a.error or "") and "No such file" in (a.error or "")


def test_input_file_uri_outside_the_store_fails_the_task_not_becoming_its_content(tmp_path: Path) -> None:
    source = flow(
        f"  - id: a\n    type: {SHELL}\n    inputFiles:\n      pw.txt: file:///etc/passwd\n"
        "      data.csv: s3://bucket/data.csv\n    commands: [cat pw.txt data.csv]\n"
    )
    with runtime(tmp_path) as rt:
        final = deploy_and_run(rt, source)
        a = run_of(final, "a")
        assert final.state is State.FAILED and a.state is State.FAILED
        assert "inputFiles.pw.txt: 'file:///etc/passwd' is outside the storage directory" in (a.error or "")
        assert not any(m == "file:///etc/passwd" for m in messages(rt, final.id, "a"))  # never catted
        assert rt.store.active_jobs() == []


def test_replay_from_a_task_keeps_earlier_results(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    source = flow(
        f"  - id: extract\n    type: {SHELL}\n    commands: ['echo extract >> {ledger}', "
        "'echo ''::{\"outputs\":{\"rows\":5}}::''']\n"
        f"  - id: load\n    type: {SHELL}\n"
        f"    commands: ['echo load {{{{ outputs.extract.vars.rows }}}} >> {ledger}']\n"
    )
    with runtime(tmp_path) as rt:
        first = deploy_and_run(rt, source)
        assert first.state is State.SUCCESS
        load = run_of(first, "load")
        again = rt.service.run(rt.service.replay(first.id, taskrun_id=load.id).id)
        assert again.state is State.SUCCESS and again.original_id == first.id
        assert ledger.read_text() == "extract\nload 5\nload 5\n"  # extract did not run again
        with pytest.raises(ServiceError, match="no task run"):
            rt.service.replay(first.id, taskrun_id="nope")


def test_run_waits_out_a_pause_timeout_which_fails_the_task(tmp_path: Path) -> None:
    # Kestra's Pause docs: "If no delay and no timeout are configured, the execution will never
    # end until it's manually resumed"; with a timeout it moves on by itself, and the timeout
    # fails the task (ExecutorService.handlePausedDelay: timeout -> State.Type.FAILED).
    from control_plane.service.clock import VirtualClock

    source = flow(
        "  - id: wait\n    type: io.kestra.plugin.core.flow.Pause\n    timeout: PT1H\n"
        "  - id: after\n    type: io.kestra.plugin.core.log.Log\n    message: resumed\n"
    )
    clock = VirtualClock()
    with runtime(tmp_path, clock=clock) as rt:
        started = clock.now()
        final = deploy_and_run(rt, source)
        assert final.state is State.FAILED
        assert final.ended is not None and (final.ended - started).total_seconds() == 3600
        assert messages(rt, final.id, "after") == []
        assert rt.store.next_timer() is None


@pytest.mark.parametrize("field", ["pauseDuration", "delay"])
def test_run_waits_out_a_pause_that_resumes_by_itself(tmp_path: Path, field: str) -> None:
    # Kestra resumes such a pause with no one's help: it is a wait, like a Sleep, not a stop.
    from control_plane.service.clock import VirtualClock

    source = flow(
        f"  - id: wait\n    type: io.kestra.plugin.core.flow.Pause\n    {field}: PT10M\n"
        "  - id: after\n    type: io.kestra.plugin.core.log.Log\n    message: resumed\n"
    )
    clock = VirtualClock()
    with runtime(tmp_path, clock=clock) as rt:
        started = clock.now()
        final = deploy_and_run(rt, source)
        assert final.state is State.SUCCESS
        assert final.ended is not None and (final.ended - started).total_seconds() == 600
        assert messages(rt, final.id, "after") == ["resumed"]


def test_a_running_jobs_output_is_shown_live_and_stored_once(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    source = flow(
        f"  - id: talk\n    type: {SHELL}\n    timeout: PT20S\n"
        f"    commands: ['echo first', 'while [ ! -f {gate} ]; do sleep 0.05; done', 'echo second']\n"
    )
    shown: list[str] = []

    def on_logs(execution, lines) -> None:  # type: ignore[no-untyped-def]
        shown.extend(line.message for line in lines if line.task_id == "talk")
        if "first" in shown:
            gate.touch()  # the job can only finish once its first line was seen while it ran

    with runtime(tmp_path, on_logs=on_logs) as rt:
        final = deploy_and_run(rt, source)
        assert run_of(final, "talk").state is State.SUCCESS
        assert shown == ["first", "second"]  # each line shown once
        assert messages(rt, final.id, "talk") == ["first", "second"]  # and stored once


def test_run_stops_on_the_stored_state_not_on_an_old_paused_copy(tmp_path: Path) -> None:
    source = flow(
        "  - id: approve\n    type: io.kestra.plugin.core.flow.Pause\n"
        "  - id: after\n    type: io.kestra.plugin.core.debug.Return\n    format: done\n"
    )
    with runtime(tmp_path) as one, runtime(tmp_path) as other:
        paused = deploy_and_run(one, source)
        assert paused.state is State.PAUSED
        assert other.service.resume(paused.id).state is State.SUCCESS  # another process resumed it

        assert one.service.run(paused.id).state is State.SUCCESS


def test_a_long_lived_service_keeps_a_bounded_cache_and_still_runs_everything(tmp_path: Path) -> None:
    """A server or a warm Lambda must not keep every execution and flow revision it ever saw."""
    from control_plane.service.service import Recent

    with runtime(tmp_path) as rt:
        service = rt.service
        service.driver.cache.size = 3
        service.driver.flows.size = 2
        finals = []
        for n in range(6):  # a new revision each time: six flows parsed, six executions run
            source = flow(f"  - id: t\n    type: io.kestra.plugin.core.debug.Return\n    format: '{n}'\n")
            finals.append(deploy_and_run(rt, source))
        assert [run_of(f, "t").outputs for f in finals] == [{"value": str(n)} for n in range(6)]
        assert all(f.state is State.SUCCESS for f in finals)
        assert len(service.driver.cache) <= 3 and len(service.driver.flows) <= 2
        assert service.get(finals[0].id).state is State.SUCCESS  # evicted ones are read again
    recent: Recent[str, int] = Recent(2)
    for key, value in (("a", 1), ("b", 2), ("a", 3), ("c", 4)):
        recent[key] = value
    assert list(recent.items()) == [("a", 3), ("c", 4)]  # "b" was the least recently stored
