"""Rules of the pure engine, driven event by event without I/O.

What needs a whole run (subflows, timers, a flow-level retry) goes through the production
driver instead, on a scratch store with scripted jobs (``tests/driving.py``).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from control_plane.engine import (
    CancelJob,
    Emit,
    Finish,
    JobStatusChanged,
    Kill,
    Restart,
    Resume,
    Started,
    StartSubflow,
    StartTimer,
    State,
    SubmitJob,
    TaskResult,
    TimerFired,
    plan,
)
from control_plane.errors import EngineError
from tests.driving import run

from .helpers import T0, Driver, at

SHELL = """
id: jobs
namespace: t
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: ["a", "b", "c", "d", "e"]
    concurrencyLimit: 2
    tasks:
      - id: sh
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["echo {{ taskrun.value }}"]
"""


def done(driver: Driver, submit: SubmitJob, seconds: float, status: str = "SUCCEEDED", **kw: object) -> list:
    return driver.send(JobStatusChanged(at(seconds), submit.taskrun_id, submit.attempt, status, **kw))


def test_foreach_respects_concurrency_limit_and_renders_job_properties() -> None:
    d = Driver(SHELL)
    first = d.of_type(SubmitJob, d.start())
    assert [s.properties["commands"] for s in first] == [["echo a"], ["echo b"]]
    more = d.of_type(SubmitJob, done(d, first[0], 1))
    assert [s.properties["commands"] for s in more] == [["echo c"]]
    assert d.execution.state is State.RUNNING
    pending = [first[1], more[0]]
    while pending:
        pending += d.of_type(SubmitJob, done(d, pending.pop(0), 2))
    assert d.execution.state is State.SUCCESS
    assert len(d.of_type(SubmitJob)) == 5
    assert len({s.job_name for s in d.of_type(SubmitJob)}) == 5


def test_job_names_are_deterministic_and_valid_everywhere() -> None:
    a, b = Driver(SHELL), Driver(SHELL)
    names_a = [s.job_name for s in a.of_type(SubmitJob, a.start())]
    names_b = [s.job_name for s in b.of_type(SubmitJob, b.start())]
    assert names_a == names_b
    for name in names_a:
        assert len(name) <= 63 and name == name.lower() and name.startswith("t-jobs-sh-")


def test_duplicate_and_stale_job_events_are_ignored() -> None:
    d = Driver(SHELL)
    first = d.of_type(SubmitJob, d.start())
    done(d, first[0], 1)
    version = d.execution.version
    assert done(d, first[0], 2) == []  # duplicate delivery
    assert d.execution.version == version
    assert d.send(JobStatusChanged(at(3), first[1].taskrun_id, 7, "SUCCEEDED")) == []  # unknown attempt
    assert d.execution.version == version


def test_preemption_is_retried_without_spending_user_retries() -> None:
    d = Driver("""
id: spot
namespace: t
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["true"]
""")
    submit = d.of_type(SubmitJob, d.start())[0]
    again = d.of_type(
        SubmitJob, done(d, submit, 1, "FAILED", failure="PREEMPTED", reason="Host EC2 terminated")
    )
    assert len(again) == 1 and again[0].attempt == 2 and again[0].job_name != submit.job_name
    done(d, again[0], 2)
    assert d.execution.state is State.SUCCESS
    assert d.run("sh").infra_attempts == 1


def test_each_attempt_keeps_the_cost_its_runner_estimated() -> None:
    d = Driver("""
id: priced
namespace: t
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["true"]
""")
    submit = d.of_type(SubmitJob, d.start())[0]
    done(d, submit, 1, "RUNNING", cost=9.0)  # not terminal: nothing is billed yet
    assert d.run("sh").attempts[0].cost is None
    again = d.of_type(SubmitJob, done(d, submit, 2, "FAILED", failure="PREEMPTED", cost=0.25))[0]
    done(d, again, 3, "SUCCEEDED", cost=0.5)
    assert [a.cost for a in d.run("sh").attempts] == [0.25, 0.5]
    assert d.execution.state is State.SUCCESS


def test_each_attempt_keeps_where_its_job_ran_and_why_it_failed() -> None:
    d = Driver("""
id: placed
namespace: t
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["true"]
""")
    submit = d.of_type(SubmitJob, d.start())[0]
    where = {"runner": "aws-batch", "job_id": "j-1", "job_url": "https://console/j-1"}
    again = d.of_type(SubmitJob, done(d, submit, 1, "FAILED", failure="PREEMPTED", **where))[0]
    done(d, again, 2, "FAILED", failure="USER", runner="aws-batch", job_id="j-2", exit_code=3)
    first, second = d.run("sh").attempts
    assert (first.runner, first.job_id, first.job_url, first.failure) == (
        "aws-batch",
        "j-1",
        "https://console/j-1",
        "PREEMPTED",
    )
    assert (second.job_id, second.job_url, second.failure) == ("j-2", None, "USER")
    assert d.execution.state is State.FAILED


def test_a_job_cancelled_at_its_timeout_is_a_timeout() -> None:
    d = Driver("""
id: slow
namespace: t
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    timeout: PT1S
    commands: ["sleep 9"]
""")
    submit = d.of_type(SubmitJob, d.start())[0]
    d.send(TimerFired(at(2), f"timeout:{submit.taskrun_id}:1"))
    done(d, submit, 3, "CANCELLED", failure="CANCELLED")
    assert d.run("sh").attempts[-1].failure == "TIMEOUT"


def test_user_failure_follows_task_retry_with_timers() -> None:
    d = Driver("""
id: r
namespace: t
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["false"]
    retry:
      type: exponential
      interval: PT10S
      maxInterval: PT30S
      maxAttempt: 4
""")
    submit = d.of_type(SubmitJob, d.start())[0]
    delays = []
    now = 0.0
    for _ in range(3):
        timer = d.of_type(StartTimer, done(d, submit, now, "FAILED", exit_code=1))[0]
        delays.append((timer.at - at(now)).total_seconds())
        now = (timer.at - T0).total_seconds()
        submit = d.of_type(SubmitJob, d.send(TimerFired(timer.at, timer.key)))[0]
    done(d, submit, now + 1, "FAILED", exit_code=1)
    assert delays == [10, 20, 30]
    assert d.execution.state is State.FAILED
    assert len(d.run("sh").attempts) == 4
    assert d.run("sh").error == "exit code 1"


def test_a_config_failure_is_never_retried_even_with_a_retry_block() -> None:
    """A missing image or command cannot appear by itself: the task fails at once, saying why."""
    d = Driver("""
id: typo
namespace: t
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["pyhton main.py"]
    retry:
      type: constant
      interval: PT1S
      maxAttempt: 4
""")
    submit = d.of_type(SubmitJob, d.start())[0]
    actions = done(
        d, submit, 1, "FAILED", failure="CONFIG", exit_code=127, reason="command not found: pyhton"
    )
    assert d.of_type(SubmitJob, actions) == [] and d.of_type(StartTimer, actions) == []
    assert d.execution.state is State.FAILED
    assert len(d.run("sh").attempts) == 1 and d.run("sh").infra_attempts == 0
    assert d.run("sh").error == "command not found: pyhton"
    logged = [line.message for emit in d.of_type(Emit, actions) for line in emit.logs]
    assert "not retried: the job cannot run as configured" in logged


def test_stale_timer_does_nothing() -> None:
    d = Driver(SHELL)
    d.start()
    assert d.send(TimerFired(at(5), "retry:nope:1")) == []


def test_kill_cancels_running_jobs_and_ends_killed_only_after_confirmation() -> None:
    d = Driver(SHELL)
    first = d.of_type(SubmitJob, d.start())
    cancels = d.of_type(CancelJob, d.send(Kill(at(1))))
    assert {c.job_name for c in cancels} == {s.job_name for s in first}
    assert d.execution.state is State.KILLING
    done(d, first[0], 2, "CANCELLED")
    assert d.execution.state is State.KILLING
    actions = done(d, first[1], 3, "CANCELLED")
    assert d.execution.state is State.KILLED
    assert d.of_type(Finish, actions)[0].state is State.KILLED
    assert not d.of_type(SubmitJob, actions)
    assert len(d.of_type(SubmitJob)) == 2


def test_timeout_cancels_the_job_and_fails_the_task() -> None:
    d = Driver("""
id: to
namespace: t
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["sleep 100"]
    timeout: PT5S
""")
    actions = d.start()
    submit = d.of_type(SubmitJob, actions)[0]
    timer = d.of_type(StartTimer, actions)[0]
    assert timer.at == at(5)
    cancel = d.of_type(CancelJob, d.send(TimerFired(timer.at, timer.key)))
    assert cancel and cancel[0].job_name == submit.job_name
    assert d.execution.state is State.RUNNING  # not failed until the job really stopped
    done(d, submit, 6, "CANCELLED", failure="CANCELLED")
    assert d.execution.state is State.FAILED
    assert d.run("sh").error.startswith("Timeout")


def test_allow_failure_and_allow_warning() -> None:
    result = run(
        """
id: a
namespace: t
tasks:
  - id: fails
    type: io.kestra.plugin.core.execution.Fail
    allowFailure: true
  - id: next
    type: io.kestra.plugin.core.log.Log
    message: still here
""",
    )
    assert result.state is State.WARNING
    assert {tr.task_id: tr.state for tr in result.execution.taskruns.values()} == {
        "fails": State.WARNING,
        "next": State.SUCCESS,
    }


def test_finally_runs_after_failure_and_errors_and_its_failure_counts() -> None:
    result = run(
        """
id: f
namespace: t
tasks:
  - id: boom
    type: io.kestra.plugin.core.execution.Fail
errors:
  - id: on_error
    type: io.kestra.plugin.core.log.Log
    message: handling
finally:
  - id: cleanup
    type: io.kestra.plugin.core.log.Log
    message: cleaning
""",
    )
    order = [tr.task_id for tr in result.execution.ordered_taskruns()]
    assert order == ["boom", "on_error", "cleanup"]
    assert result.state is State.FAILED

    ok = run(
        """
id: f2
namespace: t
tasks:
  - id: fine
    type: io.kestra.plugin.core.log.Log
    message: ok
finally:
  - id: cleanup
    type: io.kestra.plugin.core.execution.Fail
""",
    )
    assert [tr.task_id for tr in ok.execution.ordered_taskruns()] == ["fine", "cleanup"]
    assert ok.state is State.FAILED


def test_parallel_concurrency_and_dag_order() -> None:
    d = Driver("""
id: p
namespace: t
tasks:
  - id: dag
    type: io.kestra.plugin.core.flow.Dag
    tasks:
      - task: {id: a, type: io.kestra.plugin.scripts.shell.Commands, commands: ["a"]}
      - task: {id: b, type: io.kestra.plugin.scripts.shell.Commands, commands: ["b"]}
        dependsOn: [a]
      - task: {id: c, type: io.kestra.plugin.scripts.shell.Commands, commands: ["c"]}
        dependsOn: [a]
      - task: {id: d, type: io.kestra.plugin.scripts.shell.Commands, commands: ["d"]}
        dependsOn: [b, c]
""")
    wave = d.of_type(SubmitJob, d.start())
    assert [s.properties["commands"][0] for s in wave] == ["a"]
    wave = d.of_type(SubmitJob, done(d, wave[0], 1))
    assert sorted(s.properties["commands"][0] for s in wave) == ["b", "c"]
    assert d.of_type(SubmitJob, done(d, wave[0], 2)) == []
    last = d.of_type(SubmitJob, done(d, wave[1], 3))
    assert [s.properties["commands"][0] for s in last] == ["d"]
    done(d, last[0], 4)
    assert d.execution.state is State.SUCCESS


def test_sleep_and_waitfor_use_timers() -> None:
    result = run(
        """
id: w
namespace: t
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT1H
  - id: poll
    type: io.kestra.plugin.core.flow.WaitFor
    condition: "{{ outputs.check.value | number >= 3 }}"
    checkFrequency:
      interval: PT30S
    tasks:
      - id: check
        type: io.kestra.plugin.core.debug.Return
        format: "{{ outputs.poll.iterationCount }}"
""",
        start=T0,
    )
    assert result.state is State.SUCCESS
    execution = result.execution
    poll = next(tr for tr in execution.taskruns.values() if tr.task_id == "poll")
    assert poll.outputs == {"iterationCount": 4}  # three iterations (1, 2, 3), then one more
    assert execution.ended - T0 == timedelta(hours=1, seconds=60)


def test_sleep_within_its_timeout_succeeds_and_a_longer_one_retries_then_fails() -> None:
    """The timeout bounds a Sleep as it bounds any RunnableTask, retries included."""
    within = run(
        """
id: w
namespace: t
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT10S
    timeout: PT10S
""",
        start=T0,
    )
    assert within.state is State.SUCCESS
    assert within.execution.ended - T0 == timedelta(seconds=10)
    beyond = run(
        """
id: w
namespace: t
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT1M
    timeout: PT1.5S
    retry: {type: constant, interval: PT1S, maxAttempt: 2}
""",
        start=T0,
    )
    assert beyond.state is State.FAILED
    (nap,) = beyond.execution.taskruns.values()
    assert len(nap.attempts) == 2
    assert nap.error == "Timeout after 00:00:01.500"
    assert beyond.execution.ended - T0 == timedelta(seconds=4)


PAUSE = """
id: pause
namespace: t
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


def test_pause_resume_with_on_resume_inputs() -> None:
    d = Driver(PAUSE)
    d.start()
    assert d.execution.state is State.PAUSED
    d.send(Resume(at(60), {"ok": "true"}))
    assert d.execution.state is State.SUCCESS
    assert d.run("after").outputs == {"value": "approved=true"}


def test_resume_with_bad_inputs_changes_nothing() -> None:
    from control_plane.errors import InputError

    d = Driver(PAUSE)
    d.start()
    before = d.execution
    with pytest.raises(InputError):
        plan(d.flow, before, Resume(at(60), {"ok": "not-a-bool"}))
    assert d.execution is before and before.state is State.PAUSED
    with pytest.raises(EngineError):
        Driver(SHELL).send(Resume(at(1)))


def test_pause_delay_resumes_by_itself() -> None:
    result = run(
        """
id: p
namespace: t
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
    delay: PT10M
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: resumed
""",
        start=T0,
    )
    assert result.state is State.SUCCESS
    assert result.execution.ended - T0 == timedelta(minutes=10)


def test_restart_reruns_the_failed_task_in_the_same_execution() -> None:
    d = Driver("""
id: rs
namespace: t
tasks:
  - id: first
    type: io.kestra.plugin.core.log.Log
    message: one
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["flaky"]
  - id: last
    type: io.kestra.plugin.core.log.Log
    message: done
errors:
  - id: alert
    type: io.kestra.plugin.core.debug.Return
    format: failed
""")
    submit = d.of_type(SubmitJob, d.start())[0]
    done(d, submit, 1, "FAILED", exit_code=2)
    assert d.execution.state is State.FAILED
    assert "alert" in d.states() and "alert" in d.execution.outputs_index
    again = d.of_type(SubmitJob, d.send(Restart(at(10))))
    assert len(again) == 1 and again[0].attempt == 2
    assert "alert" not in d.states()
    assert "alert" not in d.execution.outputs_index  # a dropped run's outputs are gone too
    done(d, again[0], 11)
    assert d.execution.state is State.SUCCESS
    assert d.states() == {"first": "SUCCESS", "sh": "SUCCESS", "last": "SUCCESS"}
    assert d.execution.id == "ex1"


def test_subflow_waits_and_exposes_outputs() -> None:
    child = """
id: child
namespace: t
inputs:
  - id: n
    type: INT
tasks:
  - id: double
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.n * 2 }}"
outputs:
  - id: result
    type: INT
    value: "{{ outputs.double.value }}"
"""
    parent = """
id: parent
namespace: t
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: t
    flowId: child
    inputs: {n: 21}
  - id: show
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.call.outputs.result }}"
"""
    result = run(parent, flows=[child])
    assert result.state is State.SUCCESS
    show = next(tr for tr in result.execution.taskruns.values() if tr.task_id == "show")
    assert show.outputs == {"value": "42"}
    (sub,) = (e for e in result.executions if e.id != result.execution.id)
    assert sub.outputs == {"result": 42} and sub.parent is not None
    assert sub.parent["id"] == result.execution.id


def test_subflow_failure_transmitted_or_not() -> None:
    child = """
id: child
namespace: t
tasks:
  - id: boom
    type: io.kestra.plugin.core.execution.Fail
"""
    template = """
id: parent
namespace: t
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: t
    flowId: child
    transmitFailed: {flag}
"""
    assert run(template.format(flag="true"), flows=[child]).state is State.FAILED
    assert run(template.format(flag="false"), flows=[child]).state is State.SUCCESS
    d = Driver(template.format(flag="true"))
    starts = d.of_type(StartSubflow, d.start())
    assert starts[0].flow_id == "child" and starts[0].wait
    d.send(TaskResult(at(1), starts[0].taskrun_id, 1, State.KILLED))
    assert d.execution.state is State.FAILED


def test_secret_inputs_are_masked_in_logs() -> None:
    result = run(
        """
id: s
namespace: t
inputs:
  - id: token
    type: SECRET
tasks:
  - id: leak
    type: io.kestra.plugin.core.log.Log
    message: "token is {{ inputs.token }}"
""",
        {"token": "hunter2"},
    )
    assert [line.message for line in result.logs] == ["token is ********"]


def test_log_level_filter_and_labels_task() -> None:
    result = run(
        """
id: l
namespace: t
labels: {team: a}
tasks:
  - id: quiet
    type: io.kestra.plugin.core.log.Log
    message: hidden
    level: DEBUG
    logLevel: INFO
  - id: label
    type: io.kestra.plugin.core.execution.Labels
    labels:
      stage: "{{ flow.id }}-done"
""",
    )
    assert result.logs == []
    assert dict(result.execution.labels) == {
        "team": "a",
        "stage": "l-done",
        "system.correlationId": result.execution.id,
    }


def test_replaying_the_same_events_gives_the_same_execution() -> None:
    d = Driver(SHELL)
    pending = d.of_type(SubmitJob, d.start())
    second = 1.0
    while pending:
        pending += d.of_type(SubmitJob, done(d, pending.pop(0), second))
        second += 1
    replay = Driver(SHELL)
    for event in d.history:
        replay.send(event)
    assert replay.execution == d.execution
    assert replay.actions == d.actions


def test_a_big_foreach_is_one_plan_call_and_linear() -> None:
    values = list(range(2000))
    source = f"""
id: big
namespace: t
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: {values}
    concurrencyLimit: 0
    tasks:
      - id: r
        type: io.kestra.plugin.core.debug.Return
        format: "{{{{ taskrun.value }}}}"
"""
    d = Driver(source)
    actions = d.start()
    assert d.execution.state is State.SUCCESS
    assert len(d.execution.taskruns) == 2001
    assert len(d.execution.changed) == 2001
    assert d.execution.outputs_index["r"]["1999"] == {"value": "1999"}
    assert d.of_type(Finish, actions)[0].state is State.SUCCESS
    assert not d.of_type(Emit, actions)


def test_started_twice_is_harmless() -> None:
    d = Driver(SHELL)
    d.start()
    version = d.execution.version
    assert d.send(Started(at=at(1))) == []
    assert d.execution.version == version


def test_flow_retry_create_new_execution_starts_a_new_execution() -> None:
    result = run(
        """
id: again
namespace: t
retry:
  type: constant
  interval: PT1M
  maxAttempt: 3
  behavior: CREATE_NEW_EXECUTION
tasks:
  - id: boom
    type: io.kestra.plugin.core.execution.Fail
""",
        start=T0,
    )
    assert sorted(e.state for e in result.executions) == [State.FAILED, State.RETRIED, State.RETRIED]
    assert len({e.id for e in result.executions}) == 3
    assert result.execution.labels["system.retryAttempt"] == "3"
    assert result.execution.created - T0 == timedelta(minutes=2)


WORKING_DIRECTORY = """
id: wd
namespace: t
tasks:
  - id: worker
    type: io.kestra.plugin.core.flow.WorkingDirectory
    inputFiles:
      seed.txt: "{{ flow.id }}"
    tasks:
      - id: say
        type: io.kestra.plugin.core.log.Log
        message: inline, touches no file
      - id: first
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["echo 1 > a.txt"]
        retry:
          type: constant
          interval: PT1S
          maxAttempt: 2
      - id: skipped
        type: io.kestra.plugin.scripts.shell.Commands
        runIf: "false"
        commands: ["true"]
      - id: second
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["cat a.txt"]
    errors:
      - id: outside
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["true"]
"""


def test_a_working_directory_job_child_is_told_which_child_left_the_directory() -> None:
    """The shell carries the directory from job to job: the engine names the previous job child
    (its last attempt), skipping inline and skipped siblings; the first job child gets the
    WorkingDirectory's rendered inputFiles; errors tasks run outside the directory."""
    from control_plane.engine.actions import WORKSPACE_KEY

    d = Driver(WORKING_DIRECTORY)
    first = d.of_type(SubmitJob, d.start())[0]
    assert first.properties[WORKSPACE_KEY] == {"previous": None, "inputFiles": {"seed.txt": "wd"}}
    timer = d.of_type(StartTimer, done(d, first, 1, "FAILED", exit_code=1))[0]
    retried = d.of_type(SubmitJob, d.send(TimerFired(timer.at, timer.key)))[0]
    assert retried.attempt == 2 and retried.properties[WORKSPACE_KEY]["previous"] is None
    second = d.of_type(SubmitJob, done(d, retried, 3))[0]
    assert d.run("skipped").state is State.SKIPPED
    assert second.properties[WORKSPACE_KEY] == {"previous": {"taskrun": retried.taskrun_id, "attempt": 2}}
    outside = d.of_type(SubmitJob, done(d, second, 4, "FAILED", exit_code=1))[0]
    assert d.run("outside").id == outside.taskrun_id and WORKSPACE_KEY not in outside.properties
    done(d, outside, 5)
    assert d.execution.state is State.FAILED


def test_a_working_directory_keeps_the_files_its_last_successful_job_child_collected() -> None:
    from control_plane.engine.actions import WORKSPACE_KEY, WORKSPACE_OUTPUT_FILES

    d = Driver("""
id: wdo
namespace: t
tasks:
  - id: worker
    type: io.kestra.plugin.core.flow.WorkingDirectory
    outputFiles: ["{{ flow.id }}.txt"]
    tasks:
      - id: a
        type: io.kestra.plugin.scripts.shell.Commands
        timeout: PT1M
        commands: ["true"]
      - id: b
        type: io.kestra.plugin.scripts.shell.Commands
        allowFailure: true
        commands: ["false"]
""")  # a's timeout: one job per child (ADR 0012), the path this test is about
    a = d.of_type(SubmitJob, d.start())[0]
    assert a.properties[WORKSPACE_KEY]["outputFiles"] == ["wdo.txt"]  # rendered
    b = d.of_type(
        SubmitJob, done(d, a, 1, outputs={"vars": {}, WORKSPACE_OUTPUT_FILES: {"wdo.txt": "s://a"}})
    )[0]
    assert d.run("a").outputs == {"vars": {}}  # the collected files are not the child's outputs
    assert d.run("worker").outputs == {"outputFiles": {"wdo.txt": "s://a"}}
    # A failed child collects nothing: the last successful one's files stay.
    done(d, b, 2, "FAILED", exit_code=1, outputs={WORKSPACE_OUTPUT_FILES: {"wdo.txt": "s://b"}})
    assert d.execution.state is State.WARNING
    assert d.run("worker").outputs == {"outputFiles": {"wdo.txt": "s://a"}}
