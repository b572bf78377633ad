"""IAM least privilege: the statements the module renders, checked against the Python code.

The policies submodule is applied (no provider needed) with every feature on, and its
rendered statements are checked here: no ``*`` action, resource ``*`` only for actions IAM
cannot scope, and DynamoDB actions equal to the calls the ``control_plane/store/dynamodb/``
package makes, read from its source.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from .conftest import MODULE, ROOT, SUBMODULES, load_module, resources, run_terraform

STORE_PACKAGE = ROOT / "control_plane" / "store" / "dynamodb"
# TransactWriteItems is authorized per item: each kind of transaction item needs its action.
TRANSACTION_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def statement_problems(statements: Iterable[Mapping[str, Any]], wildcard_allowed: Iterable[str]) -> list[str]:
    """What is wrong with these statements; empty when they are least privilege."""
    allowed = set(wildcard_allowed)
    problems: list[str] = []
    for st in statements:
        actions = list(st.get("actions", []))
        resources_ = list(st.get("resources", []))
        allow = st.get("effect", "Allow") == "Allow"
        name = st.get("sid", "?")
        if "*" in actions:
            problems.append(f'{name}: action "*"')
        if allow and any(a.endswith(":*") for a in actions):
            problems.append(f"{name}: a whole service ({actions}) allowed")
        if allow and "*" in resources_:
            extra = sorted(set(actions) - allowed)
            if extra:
                problems.append(f'{name}: resource "*" for {extra}, which IAM can scope')
            if len(resources_) > 1:
                problems.append(f'{name}: resource "*" next to scoped resources')
    return problems


def store_source() -> str:
    """The DynamoDB store's source: every module of its package."""
    return "\n".join(path.read_text() for path in sorted(STORE_PACKAGE.glob("*.py")))


def store_dynamodb_actions(source: str) -> set[str]:
    """The IAM actions the DynamoDB store needs, from the operations its source calls."""
    calls = set(re.findall(r'(?<!\w)call\(\s*"([A-Z]\w+)"', source))
    for mapping in re.findall(
        r"(?<!\w)call\(\s*\{([^}]*)\}\[", source
    ):  # call({"Put": "PutItem", ...}[kind])
        calls |= set(re.findall(r':\s*"([A-Z]\w+)"', mapping))
    if "TransactWriteItems" in calls:
        calls.discard("TransactWriteItems")
        for kind, action in TRANSACTION_ITEM_ACTIONS.items():
            if re.search(rf'\{{\s*"{kind}"\s*:', source):
                calls.add(action)
    return {f"dynamodb:{c}" for c in calls}


# S3 calls of the store, as IAM actions. ListObjectsV2/DeleteObjects belong to
# purge_execution, which only the TTL sweeper (DynamoDB Streams; not deployed by the module
# yet) calls: the four functions do not get them.
STORE_S3_ACTIONS = {"PutObject": "s3:PutObject", "GetObject": "s3:GetObject"}
SWEEPER_ONLY_S3_CALLS = {"ListObjectsV2": "s3:ListBucket", "DeleteObjects": "s3:DeleteObject"}
SERVICE_FUNCTIONS = ("api", "tick", "events", "schedule")


def test_store_s3_calls_are_known() -> None:
    calls = set(re.findall(r'(?<!\w)s3_call\(\s*"([A-Z]\w+)"', store_source()))
    assert calls - set(SWEEPER_ONLY_S3_CALLS) == set(STORE_S3_ACTIONS), (
        f"new S3 calls in the store: {sorted(calls)}"
    )


def test_store_actions_are_read_from_the_source() -> None:
    actions = store_dynamodb_actions(store_source())
    # A sanity floor: reads, conditional writes and transactions are all there.
    assert {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"} <= actions
    assert "dynamodb:TransactWriteItems" not in actions


SECRETS_PREFIX = "/prod/squall/"  # with a leading /: the parameter ARN must not double it

POLICY_INPUTS = {
    "partition": "aws",
    "region": "eu-west-1",
    "account_id": "123456789012",
    "table_arn": "arn:aws:dynamodb:eu-west-1:123456789012:table/squall",
    "table_stream_arn": "arn:aws:dynamodb:eu-west-1:123456789012:table/squall/stream/2026-01-01T00:00:00.000",
    "bucket_arn": "arn:aws:s3:::squall-123456789012-eu-west-1",
    "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "function_log_group_arns": {
        f: f"arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/squall-{f}"
        for f in ("api", "tick", "events", "schedule", "sweeper")
    },
    "dlq_arns": {
        f: f"arn:aws:sqs:eu-west-1:123456789012:squall-{f}-dlq"
        for f in ("tick", "events", "schedule", "sweeper")
    },
    "schedule_function_arn": "arn:aws:lambda:eu-west-1:123456789012:function:squall-schedule",
    "tracing_enabled": True,
    "aws_batch": {
        "job_queue_arns": ["arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"],
        "job_definition_arns": [],
        "register_job_definitions": True,
        "execution_role_arn": "arn:aws:iam::123456789012:role/exec",
        "task_role_arn": "arn:aws:iam::123456789012:role/task",
        "compute_environment_arn": "arn:aws:batch:eu-west-1:123456789012:compute-environment/fargate",
        "log_group_name": "/aws/batch/job",
    },
    "secret_backends": ["env", "secretsmanager", "ssm"],
    "secrets_prefix": SECRETS_PREFIX,
    "secrets_kms_key_arns": ["arn:aws:kms:eu-west-1:123456789012:key/5678abcd-12ab-34cd-56ef-1234567890ab"],
    "storage": {
        "url": "s3://squall-123456789012-eu-west-1/squall/storage",
        "bucket": "squall-123456789012-eu-west-1",
        "prefix": "squall/storage/",
    },
    "storage_read": [{"bucket": "shared-datasets", "prefix": "public/"}],
    "webhook_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:squall-webhook-AbCdEf",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The policies module's outputs, with every feature on."""
    tmp = tmp_path_factory.mktemp("policies")
    work = tmp / "root"
    work.mkdir()
    (work / "main.tf").write_text(
        f'module "policies" {{\n  source = "{(SUBMODULES / "policies").as_posix()}"\n'
        + "".join(f"  {k} = {json.dumps(v)}\n" for k, v in POLICY_INPUTS.items())
        + "}\n"
        + "".join(
            f'output "{o}" {{\n  value = module.policies.{o}\n}}\n'
            for o in ("statements", "scheduler_statements", "wildcard_actions", "managed_tag")
        )
    )
    run_terraform(["init", "-backend=false", "-input=false"], work)
    state = str(tmp / "terraform.tfstate")
    run_terraform(["apply", "-auto-approve", "-input=false", "-lock=false", f"-state={state}"], work)
    result = run_terraform(["output", "-json", f"-state={state}"], work)
    return {name: entry["value"] for name, entry in json.loads(result.stdout).items()}


def test_rendered_statements_are_least_privilege(rendered: dict[str, Any]) -> None:
    allowed = rendered["wildcard_actions"]
    every = [st for sts in rendered["statements"].values() for st in sts] + rendered["scheduler_statements"]
    assert len(every) > 20
    assert statement_problems(every, allowed) == []
    # The allow-list itself: Batch and stream reads, X-Ray writers; each with a reason.
    readers = r"(batch:(Describe|List)\w+|dynamodb:ListStreams|xray:Put\w+)"
    assert all(re.fullmatch(readers, a) for a in allowed)
    assert all(len(reason.split()) >= 4 for reason in allowed.values())


def test_the_check_catches_a_wildcard_action_and_an_unjustified_wildcard_resource() -> None:
    allowed = {"batch:DescribeJobs"}
    assert statement_problems([{"sid": "Bad", "actions": ["*"], "resources": ["arn:aws:s3:::b"]}], allowed)
    assert statement_problems([{"sid": "Bad", "actions": ["s3:*"], "resources": ["arn:aws:s3:::b"]}], allowed)
    assert statement_problems([{"sid": "Bad", "actions": ["batch:SubmitJob"], "resources": ["*"]}], allowed)
    assert statement_problems(
        [{"sid": "Bad", "actions": ["batch:DescribeJobs"], "resources": ["*", "x"]}], allowed
    )
    assert (
        statement_problems([{"sid": "Ok", "actions": ["batch:DescribeJobs"], "resources": ["*"]}], allowed)
        == []
    )


def test_dynamodb_actions_are_exactly_the_stores_calls(rendered: dict[str, Any]) -> None:
    expected = store_dynamodb_actions(store_source())
    for function in SERVICE_FUNCTIONS:
        sts = rendered["statements"][function]
        granted = {a for st in sts for a in st["actions"] if a.startswith("dynamodb:")}
        assert granted == expected, (
            f"{function}: grants {sorted(granted)}, the store calls {sorted(expected)}"
        )
        table = [st for st in sts if any(a.startswith("dynamodb:") for a in st["actions"])]
        resources_ = {r for st in table for r in st["resources"]}
        assert resources_ == {POLICY_INPUTS["table_arn"], POLICY_INPUTS["table_arn"] + "/index/*"}


def test_the_sweeper_only_purges(rendered: dict[str, Any]) -> None:
    """purge_execution: GetItem (META gone?), Query (the partition), BatchWriteItem (delete), S3 cleanup."""
    sts = rendered["statements"]["sweeper"]
    on_table = {a for st in sts if st["resources"] == [POLICY_INPUTS["table_arn"]] for a in st["actions"]}
    assert on_table == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchWriteItem"}
    assert on_table <= store_dynamodb_actions(store_source())
    on_stream = {
        a for st in sts if st["resources"] == [POLICY_INPUTS["table_stream_arn"]] for a in st["actions"]
    }
    assert on_stream == {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}
    s3 = {a for st in sts for a in st["actions"] if a.startswith("s3:")}
    assert s3 == set(SWEEPER_ONLY_S3_CALLS.values())
    assert not any(a.startswith("batch:") or a == "iam:PassRole" for st in sts for a in st["actions"])


def test_batch_actions_cover_every_call_the_runner_makes(rendered: dict[str, Any]) -> None:
    source = (ROOT / "runners" / "aws_batch" / "runner.py").read_text()
    called = {
        "batch:" + "".join(part.title() for part in name.split("_"))
        for name in re.findall(r"clients\.batch\.(\w+)", source)
    }
    granted = {a for st in rendered["statements"]["tick"] for a in st["actions"] if a.startswith("batch:")}
    assert called <= granted, f"the runner calls {sorted(called - granted)} without permission"
    logs_called = {
        "logs:" + "".join(p.title() for p in n.split("_"))
        for n in re.findall(r"clients\.logs\.(\w+)", source)
    }
    assert logs_called <= {a for st in rendered["statements"]["tick"] for a in st["actions"]}


# Batch actions whose request carries the job's (or definition's) tags, and those that act on
# an existing job: the Service Authorization Reference lists aws:RequestTag for the first,
# aws:ResourceTag (on the job resource) for the second.
TAGGING_REQUESTS = {"batch:SubmitJob", "batch:RegisterJobDefinition", "batch:TagResource"}
JOB_CONTROL = {"batch:CancelJob", "batch:TerminateJob"}


def test_the_managed_tag_is_the_one_the_runner_puts_on_every_job(rendered: dict[str, Any]) -> None:
    from runners.aws_batch.runner import MANAGED_TAG, MANAGED_VALUE

    assert rendered["managed_tag"] == {"key": MANAGED_TAG, "value": MANAGED_VALUE}


def test_batch_jobs_are_cancelled_only_when_squall_tagged_them(rendered: dict[str, Any]) -> None:
    tag = rendered["managed_tag"]
    on_job = [{"test": "StringEquals", "variable": f"aws:ResourceTag/{tag['key']}", "values": [tag["value"]]}]
    in_request = [
        {"test": "StringEquals", "variable": f"aws:RequestTag/{tag['key']}", "values": [tag["value"]]}
    ]
    every = [(f, st) for f, sts in rendered["statements"].items() for st in sts]
    control = [(f, st) for f, st in every if JOB_CONTROL & set(st["actions"])]
    tagging = [(f, st) for f, st in every if TAGGING_REQUESTS & set(st["actions"])]
    assert sorted(f for f, _ in control) == sorted(SERVICE_FUNCTIONS)
    assert len(tagging) == 3 * len(SERVICE_FUNCTIONS)  # submit, register, tag
    for function, st in control:
        assert set(st["actions"]) == JOB_CONTROL and st["condition"] == on_job, (function, st)
        assert all(r.endswith(":job/*") for r in st["resources"]), (function, st)
    for function, st in tagging:
        assert len(st["actions"]) == 1 and st["condition"] == in_request, (function, st)


# boto3 method -> IAM action of the calls control_plane/secrets/aws.py makes.
SECRET_CALLS = {"get_secret_value": "secretsmanager:GetSecretValue", "get_parameter": "ssm:GetParameter"}


def test_secret_permissions_are_the_backends_calls_under_the_prefix(rendered: dict[str, Any]) -> None:
    from control_plane.secrets.aws import ParameterStoreSecrets, SecretsManagerSecrets

    source = (ROOT / "control_plane" / "secrets" / "aws.py").read_text()
    called = set(re.findall(r"self\.client\(\)\.(\w+)", source))
    assert called == set(SECRET_CALLS), f"new calls in control_plane/secrets/aws.py: {sorted(called)}"
    prefix = SECRETS_PREFIX
    # The names the backends ask for, as ARNs; Secrets Manager appends -<6 characters> to its.
    secret = SecretsManagerSecrets(prefix=prefix).prefix + "NAME"
    parameter = ParameterStoreSecrets(prefix=prefix).parameter("NAME")
    scope = "eu-west-1:123456789012"
    wanted = {
        "secretsmanager:GetSecretValue": f"arn:aws:secretsmanager:{scope}:secret:{secret}-AbCdEf",
        "ssm:GetParameter": f"arn:aws:ssm:{scope}:parameter{parameter}",
    }
    for function in SERVICE_FUNCTIONS:
        sts = [
            st
            for st in rendered["statements"][function]
            if st["actions"][0].split(":")[0] in ("secretsmanager", "ssm")
            and st["sid"] != "ReadWebhookSecret"
        ]
        assert sorted(a for st in sts for a in st["actions"]) == sorted(SECRET_CALLS.values()), function
        for st in sts:
            [action], [resource] = st["actions"], st["resources"]
            assert resource.endswith("*") and "*" not in resource[:-1], (function, st)
            assert wanted[action].startswith(resource[:-1]), (function, st)
            assert "//" not in resource, (function, st)  # parameter/prod/..., never parameter//prod/...
            # Nothing outside the prefix: a sibling name is not covered.
            assert not wanted[action].replace(prefix.strip("/"), "other").startswith(resource[:-1])
        [decrypt] = [st for st in rendered["statements"][function] if st["sid"] == "DecryptSecrets"]
        assert decrypt["resources"] == POLICY_INPUTS["secrets_kms_key_arns"]
        assert decrypt["condition"] == [
            {
                "test": "StringEquals",
                "variable": "kms:ViaService",
                "values": ["secretsmanager.eu-west-1.amazonaws.com", "ssm.eu-west-1.amazonaws.com"],
            }
        ]
    for sts in (rendered["statements"]["sweeper"], rendered["scheduler_statements"]):
        assert not [a for st in sts for a in st["actions"] if a.split(":")[0] in ("secretsmanager", "ssm")]
        assert not [st for st in sts if st["sid"] == "DecryptSecrets"]


def test_only_the_events_function_reads_the_webhook_secret_and_only_it(rendered: dict[str, Any]) -> None:
    """control_plane/ingress/webhook.py calls GetSecretValue on the configured ARN (two stages)."""
    source = (ROOT / "control_plane" / "ingress" / "webhook.py").read_text()
    assert set(re.findall(r"client\.(\w+)\(", source)) == {"get_secret_value"}
    readers = {
        function: [st for st in sts if st["sid"] == "ReadWebhookSecret"]
        for function, sts in rendered["statements"].items()
    }
    assert readers.pop("events") == [
        {
            "sid": "ReadWebhookSecret",
            "actions": ["secretsmanager:GetSecretValue"],
            "resources": [POLICY_INPUTS["webhook_secret_arn"]],
            "condition": [],
        }
    ]
    assert all(found == [] for found in readers.values()), readers
    assert not [st for st in rendered["scheduler_statements"] if st["sid"] == "ReadWebhookSecret"]


def test_store_s3_actions_are_granted_on_the_store_prefix(rendered: dict[str, Any]) -> None:
    bucket = POLICY_INPUTS["bucket_arn"]
    for function in SERVICE_FUNCTIONS:
        sts = rendered["statements"][function]
        store = [st for st in sts if st["resources"] == [f"{bucket}/squall/outputs/*"]]
        assert [sorted(st["actions"]) for st in store] == [sorted(STORE_S3_ACTIONS.values())], function


def test_only_async_functions_write_dead_letters(rendered: dict[str, Any]) -> None:
    for function, sts in rendered["statements"].items():
        sqs = [st for st in sts if "sqs:SendMessage" in st["actions"]]
        if function == "api":
            assert sqs == []
        else:
            assert [st["resources"] for st in sqs] == [[POLICY_INPUTS["dlq_arns"][function]]]


def _policy_documents(module: dict[str, list[Any]]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for body in resources(module, "data").values():
        statements.extend(s for s in body.get("statement", []) if isinstance(s, dict))
    return statements


@pytest.mark.parametrize(
    "directory", [MODULE, *sorted(p for p in (MODULE / "modules").iterdir() if p.is_dir())]
)
def test_inline_policy_documents_have_no_wildcard_action(directory: Path) -> None:
    """Statements written directly as blocks (trust policies, queue and bucket policies)."""
    statements = _policy_documents(load_module(directory))
    assert statement_problems(statements, set()) == []
    text = "\n".join(p.read_text() for p in directory.glob("*.tf"))
    assert not re.search(r'actions\s*=\s*\[[^\]]*"\*"', text), 'an actions list holds "*"'


def test_storage_actions_are_the_s3_backends_calls_on_the_storage_prefix(rendered: dict[str, Any]) -> None:
    """runners/storage/s3.py: get (and head), put, delete (DeleteObjects is per key), list."""
    bucket = POLICY_INPUTS["bucket_arn"]
    for function in SERVICE_FUNCTIONS:
        sts = {st["sid"]: st for st in rendered["statements"][function] if st["sid"].startswith("Storage")}
        assert sts["StorageObjects"]["resources"] == [f"{bucket}/squall/storage/*"]
        assert sorted(sts["StorageObjects"]["actions"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
        assert sts["StorageList"]["condition"] == [
            {"test": "StringLike", "variable": "s3:prefix", "values": ["squall/storage/*"]}
        ]
        assert sts["StorageRead0"]["actions"] == ["s3:GetObject"]  # the allowlist: read only
        assert sts["StorageRead0"]["resources"] == ["arn:aws:s3:::shared-datasets/public/*"]
    assert not [st for st in rendered["statements"]["sweeper"] if st["sid"].startswith("Storage")]
