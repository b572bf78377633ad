"""samples/kubernetes.yaml and docs/runners/kubernetes.md against the Kubernetes runner.

The sample's options must validate and build the Job the doc describes; the doc's options
table must list every option of ``KubernetesOptions`` with its default and whose name it is;
its snippet must be the sample's; its RBAC Role must grant exactly the verbs the runner uses.
No API server is called (tests/integration/test_kubernetes_runner.py runs the sample).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.flows.aliases import RUNNER_ALIASES
from runners.base import JobSpec, validate_options
from runners.kubernetes import KubernetesOptions, KubernetesRunner
from runners.kubernetes import options as options_module
from tests.unit.runner_docs import check_options_table, check_snippet

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "kubernetes.yaml"
DOC = ROOT / "docs" / "runners" / "kubernetes.md"
TYPES = sorted(name for name, runner in RUNNER_ALIASES.items() if runner == "kubernetes" != name)


def _task() -> dict[str, Any]:
    flow = yaml.safe_load(SAMPLE.read_text())
    [task] = [t for t in flow["tasks"] if "taskRunner" in t]
    return dict(task)


def _options() -> dict[str, Any]:
    return {k: v for k, v in _task()["taskRunner"].items() if k != "type"}


def test_the_type_names() -> None:
    assert TYPES == [
        "io.kestra.plugin.ee.kubernetes.runner.Kubernetes",
        "io.kestra.plugin.kubernetes.runner.Kubernetes",
        "squall.runner.Kubernetes",
    ]
    assert _task()["taskRunner"]["type"] in TYPES


def test_the_sample_options_validate_and_build_the_job_the_doc_describes() -> None:
    opts = validate_options(KubernetesRunner, _options())
    assert isinstance(opts, KubernetesOptions)
    assert (opts.resources.vcpus, opts.resources.gib) == (0.5, 1.0)
    runner = KubernetesRunner(defaults={"stagingUri": "s3://my-bucket/squall", "toolsImage": "tools:1"})
    spec = JobSpec(
        name="daily-revenue-summarise-3k2j4h5a",
        command=("python", "main.py"),
        image=_task()["containerImage"],
        output_files=("revenue.json",),
        options=_options(),
    )
    merged = runner._options(spec)
    job = runner._manifest(
        spec, merged, "daily-revenue-summarise-3k2j4h5a", "s3://my-bucket/squall/x/", "n" * 16, {}, {}
    )
    pod = job["spec"]["template"]["spec"]
    assert job["metadata"]["namespace"] == "squall-jobs" and job["spec"]["ttlSecondsAfterFinished"] == 86400
    assert [c["name"] for c in pod["containers"]] == ["main", "squall-stage-out"]
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"memory": "1Gi"},
    }
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"} and pod["restartPolicy"] == "Never"


def test_the_options_table_and_snippet() -> None:
    check_options_table(DOC, KubernetesOptions, options_module, kestra_until="; the rest")
    check_snippet(DOC, _task()["taskRunner"])


def test_the_rbac_role_grants_exactly_the_verbs_used() -> None:
    text = DOC.read_text()
    role = yaml.safe_load(re.search(r"```yaml\n(apiVersion: rbac.*?)```", text, flags=re.S).group(1))  # type: ignore[union-attr]
    granted = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    source = (ROOT / "runners" / "kubernetes" / "runner.py").read_text()
    source += (ROOT / "runners" / "kubernetes" / "watch.py").read_text()
    used = set(re.findall(r"\b(create|read|list|patch|delete)_namespaced_(job|pod|event)\b", source))
    jobs = {"get" if verb == "read" else verb for verb, kind in used if kind == "job"} | {"watch"}  # JobWatch
    core = {(verb, kind) for verb, kind in used if kind != "job"}
    assert core == {("list", "pod"), ("list", "event")}
    assert granted == {(("batch",), ("jobs",)): jobs, (("",), ("pods", "events")): {"list"}}


@pytest.mark.parametrize("option", ["resume", "podSpec", "containerSpec", "config"])
def test_refused_options_name_themselves(option: str) -> None:
    bad = {
        "resume": False,
        "podSpec": {"volumes": []},
        "containerSpec": {"command": ["x"]},
        "config": {"masterUrl": "http://k8s.example", "oauthToken": "t"},
    }
    with pytest.raises(Exception, match=option):
        validate_options(KubernetesRunner, {option: bad[option]})
