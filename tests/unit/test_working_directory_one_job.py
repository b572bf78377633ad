"""A WorkingDirectory's children as one runner job (ADR 0016), driven event by event.

The job's end carries each child's part (:data:`WORKSPACE_CHILDREN`, as the supervisor cuts it
out of the log); these tests give it by hand and check what the engine makes of it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from control_plane.engine import CancelJob, Emit, JobStatusChanged, Kill, Restart, State, SubmitJob
from control_plane.engine.actions import WORKSPACE_CHILDREN, WORKSPACE_KEY

from .helpers import T0, Driver, at

FLOW = """
id: wd1
namespace: t
tasks:
  - id: worker
    type: io.kestra.plugin.core.flow.WorkingDirectory
    inputFiles:
      seed.txt: "{{ flow.id }}"
    tasks:
      - id: a
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["echo {{ taskrun.id }} > a.txt"]
      - id: b
        type: io.kestra.plugin.scripts.python.Script
        allowFailure: {allow}
        script: "print('{{ task.id }}')"
      - id: c
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["cat a.txt"]
    errors:
      - id: alert
        type: io.kestra.plugin.core.debug.Return
        format: failed
"""


def driver(allow: bool = False) -> Driver:
    return Driver(FLOW.replace("{allow}", "true" if allow else "false"))


def part(code: int | None, started: int, ended: int, **vars: Any) -> dict[str, Any]:
    epoch = int(T0.timestamp())
    return {
        "exitCode": code,
        "outputs": {"vars": vars, "exitCode": code},
        "started": epoch + started,
        "ended": epoch + ended,
    }


def end(
    d: Driver, job: SubmitJob, seconds: float, parts: dict[str, Any], status: str = "SUCCEEDED", **kw: Any
) -> list:
    outputs = {WORKSPACE_CHILDREN: parts}
    return d.send(JobStatusChanged(at(seconds), job.taskrun_id, job.attempt, status, outputs=outputs, **kw))


def ids(job: SubmitJob) -> list[str]:
    return [c["taskrun"] for c in job.properties[WORKSPACE_KEY]["children"]]


def test_one_job_carries_every_child_rendered_in_its_own_context() -> None:
    d = driver()
    jobs = d.of_type(SubmitJob, d.start())
    assert len(jobs) == 1
    hint = jobs[0].properties[WORKSPACE_KEY]
    assert hint["previous"] is None and hint["inputFiles"] == {"seed.txt": "wd1"}
    children = hint["children"]
    assert [c["task_id"] for c in children] == ["a", "b", "c"]
    assert children[0]["taskrun"] == jobs[0].taskrun_id
    assert children[0]["properties"]["commands"] == [f"echo {jobs[0].taskrun_id} > a.txt"]
    assert children[1]["properties"]["script"] == "print('b')"  # its own task.id
    assert len(set(ids(jobs[0]))) == 3 and [c["attempt"] for c in children] == [1, 1, 1]


def test_each_child_ends_with_its_own_part_and_no_other_job_starts() -> None:
    d = driver()
    job = d.of_type(SubmitJob, d.start())[0]
    a, b, c = ids(job)
    actions = end(d, job, 9, {a: part(0, 1, 2, x=1), b: part(0, 2, 5, y=2), c: part(0, 5, 8)})
    assert not d.of_type(SubmitJob, actions)
    assert d.execution.state is State.SUCCESS
    assert d.states() == {"worker": "SUCCESS", "a": "SUCCESS", "b": "SUCCESS", "c": "SUCCESS"}
    assert d.run("a").outputs == {"vars": {"x": 1}, "exitCode": 0}
    assert d.run("b").outputs == {"vars": {"y": 2}, "exitCode": 0}
    run_b = d.run("b")
    assert run_b.attempts[0].started == T0.replace(microsecond=0) + timedelta(seconds=2)  # its own start
    assert (run_b.attempts[0].ended - run_b.attempts[0].started).total_seconds() == 3
    assert {tr.attempts[0].job for tr in d.execution.taskruns.values() if tr.task_id in "abc"} == {
        job.job_name
    }
    assert d.execution.outputs_index["b"]["vars"]["y"] == 2


def test_a_failing_child_stops_the_rest_and_the_working_directory_fails() -> None:
    d = driver()
    job = d.of_type(SubmitJob, d.start())[0]
    a, b, _ = ids(job)
    end(d, job, 9, {a: part(0, 1, 2), b: part(3, 2, 5)}, "FAILED", exit_code=3)
    assert d.execution.state is State.FAILED
    assert d.states() == {"worker": "FAILED", "a": "SUCCESS", "b": "FAILED", "alert": "SUCCESS"}
    assert d.run("b").error == "exit code 3"


def test_an_allowed_failure_goes_on_to_the_next_child() -> None:
    d = driver(allow=True)
    job = d.of_type(SubmitJob, d.start())[0]
    a, b, c = ids(job)
    assert [ch["allowFailure"] for ch in job.properties[WORKSPACE_KEY]["children"]] == [False, True, False]
    end(d, job, 9, {a: part(0, 1, 2), b: part(1, 2, 5), c: part(0, 5, 8)})
    assert d.states() == {"worker": "WARNING", "a": "SUCCESS", "b": "WARNING", "c": "SUCCESS"}
    assert d.execution.state is State.WARNING


def test_a_child_the_job_died_in_fails_with_the_jobs_reason() -> None:
    d = driver()
    job = d.of_type(SubmitJob, d.start())[0]
    a, b, _ = ids(job)
    end(d, job, 9, {a: part(0, 1, 2), b: part(None, 2, 0)}, "FAILED", exit_code=137, reason="OOM killed")
    assert d.states()["b"] == "FAILED" and "c" not in d.states()
    assert d.run("b").error == "it started and never ended (OOM killed)"


def test_kill_cancels_the_one_job() -> None:
    d = driver()
    job = d.of_type(SubmitJob, d.start())[0]
    cancels = d.of_type(CancelJob, d.send(Kill(at(1))))
    assert [c.job_name for c in cancels] == [job.job_name]
    a, _, _ = ids(job)
    end(d, job, 2, {a: part(None, 1, 0)}, "CANCELLED")
    assert d.execution.state is State.KILLED
    assert d.states() == {"worker": "KILLED", "a": "KILLED"}


def test_a_kill_during_a_later_child_keeps_what_the_earlier_ones_did() -> None:
    d = driver()
    job = d.of_type(SubmitJob, d.start())[0]
    d.send(Kill(at(1)))
    a, b, _ = ids(job)
    actions = end(d, job, 2, {a: part(0, 1, 2, x=1), b: part(None, 2, 0)}, "CANCELLED")
    assert not d.of_type(SubmitJob, actions)
    assert d.execution.state is State.KILLED
    assert d.states() == {"worker": "KILLED", "a": "SUCCESS", "b": "KILLED"}  # c never started


def test_an_infrastructure_failure_runs_the_whole_job_again() -> None:
    d = driver()
    job = d.of_type(SubmitJob, d.start())[0]
    a, _, _ = ids(job)
    again = d.of_type(SubmitJob, end(d, job, 2, {a: part(0, 1, 2)}, "FAILED", failure="PREEMPTED"))
    assert len(again) == 1 and again[0].attempt == 2 and again[0].job_name != job.job_name
    assert ids(again[0])[0] == a and len(ids(again[0])) == 3


def test_restart_runs_the_whole_working_directory_again_as_a_new_job() -> None:
    d = driver()
    job = d.of_type(SubmitJob, d.start())[0]
    a, b, _ = ids(job)
    end(d, job, 9, {a: part(0, 1, 2), b: part(3, 2, 5)}, "FAILED", exit_code=3)
    again = d.of_type(SubmitJob, d.send(Restart(at(10))))
    assert len(again) == 1 and again[0].job_name != job.job_name
    assert [c["task_id"] for c in again[0].properties[WORKSPACE_KEY]["children"]] == ["a", "b", "c"]
    assert "alert" not in d.states() and set(ids(again[0])).isdisjoint(ids(job))
    a2, b2, c2 = ids(again[0])
    end(d, again[0], 20, {a2: part(0, 11, 12), b2: part(0, 12, 13), c2: part(0, 13, 14)})
    assert d.execution.state is State.SUCCESS
    assert d.states() == {"worker": "SUCCESS", "a": "SUCCESS", "b": "SUCCESS", "c": "SUCCESS"}


def test_a_child_reading_a_siblings_outputs_makes_it_one_job_per_child() -> None:
    d = Driver(FLOW.replace("{allow}", "false").replace('["cat a.txt"]', '["echo {{ outputs.b.vars.y }}"]'))
    actions = d.start()
    job = d.of_type(SubmitJob, actions)[0]
    assert "children" not in job.properties[WORKSPACE_KEY]
    logs = [line.message for emit in d.of_type(Emit, actions) for line in emit.logs]
    assert "one job per child (ADR 0012): 'c' reads the outputs of 'b'" in logs


def test_a_child_that_cannot_be_rendered_before_the_job_makes_it_one_job_per_child() -> None:
    d = Driver(FLOW.replace("{allow}", "false").replace('["cat a.txt"]', '["echo {{ vars.nope }}"]'))
    actions = d.start()
    job = d.of_type(SubmitJob, actions)[0]
    assert "children" not in job.properties[WORKSPACE_KEY]
    logs = [line.message for emit in d.of_type(Emit, actions) for line in emit.logs]
    assert any(m.startswith("one job per child (ADR 0012): 'c' cannot be rendered") for m in logs)
    b = d.of_type(SubmitJob, d.send(JobStatusChanged(at(1), job.taskrun_id, 1, "SUCCEEDED")))[0]
    d.send(JobStatusChanged(at(2), b.taskrun_id, 1, "SUCCEEDED"))
    assert d.states()["c"] == "FAILED" and d.execution.state is State.FAILED  # at its turn, as in Kestra


def test_children_in_different_images_run_one_job_each() -> None:
    docker = "\n        taskRunner:\n          type: io.kestra.plugin.scripts.runner.docker.Docker"
    source = FLOW.replace("{allow}", "false")
    # a shell and a python child on Docker without containerImage: ubuntu and python images
    d = Driver(
        source.replace('commands: ["echo {{ taskrun.id }} > a.txt"]', 'commands: ["true"]' + docker)
        .replace("script: \"print('{{ task.id }}')\"", 'script: "print(1)"' + docker)
        .replace('commands: ["cat a.txt"]', 'commands: ["true"]' + docker)
    )
    actions = d.start()
    assert "children" not in d.of_type(SubmitJob, actions)[0].properties[WORKSPACE_KEY]
    logs = [line.message for emit in d.of_type(Emit, actions) for line in emit.logs]
    assert "one job per child (ADR 0012): 'b' has another taskRunner or containerImage than 'a'" in logs


def test_a_childs_times_stay_between_the_jobs_submission_and_its_end() -> None:
    d = driver()
    job = d.of_type(SubmitJob, d.start())[0]
    a, b, c = ids(job)
    # a job clock behind the control plane's (a before the submission) and ahead (c after now)
    end(d, job, 9, {a: part(0, -50, -40), b: part(0, 2, 5), c: part(0, 5, 100)})
    first, last = d.run("a").attempts[0], d.run("c").attempts[0]
    assert first.started == first.ended == T0
    assert last.started == T0.replace(microsecond=0) + timedelta(seconds=5) and last.ended == at(9)


def test_a_child_naming_the_default_runner_runs_in_the_same_job() -> None:
    process = "\n        taskRunner:\n          type: io.kestra.plugin.core.runner.Process"
    d = Driver(
        FLOW.replace("{allow}", "false").replace(
            'commands: ["cat a.txt"]', 'commands: ["cat a.txt"]' + process
        )
    )
    assert len(ids(d.of_type(SubmitJob, d.start())[0])) == 3
