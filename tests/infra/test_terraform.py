"""Terraform's own checks, offline: fmt; validate + test of the provider-free submodules; and
init + validate + test of the squall module and both examples with hashicorp/aws.

The submodules need no provider: `terraform test` runs their assertions and
`expect_failures` cases, and a small root module applies the settings module to feed its
rendered environment to the Python runtime that will read it in Lambda.

The registry cannot be reached, so hashicorp/aws comes from the machine's filesystem mirror
(the ``aws_provider`` fixture in conftest.py writes the CLI configuration that points there).
The module and each example are initialised from it, validated against the real provider
schema, and planned by `terraform test` with ``mock_provider "aws"`` (their
``tests/*.tftest.hcl``): no credentials, no AWS call.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from control_plane.flows.loader import load_flow_file
from control_plane.runtime import load_settings, open_runtime, secret_chain, task_storage
from control_plane.service.scripts import runner_of
from runners.aws_batch import AwsBatchRunner
from runners.aws_batch.options import BatchOptions
from runners.base import RunnerOptionsError, validate_options

from .conftest import INFRA, SUBMODULES, run_terraform

# terraform init/plan: seconds each. The provider mirror doubles as Terraform's plugin cache,
# which Terraform does not make safe for concurrent use: one worker runs them all.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("terraform")]

SUBMODULE_NAMES = sorted(p.name for p in SUBMODULES.iterdir() if p.is_dir())


def test_the_three_submodules_exist() -> None:
    assert SUBMODULE_NAMES == ["naming", "policies", "settings"]


def test_terraform_fmt(tmp_path: Path) -> None:
    result = run_terraform(["fmt", "-check", "-recursive", "-diff", str(INFRA)], tmp_path, check=False)
    assert result.returncode == 0, f"run `terraform fmt -recursive infra/`:\n{result.stdout}{result.stderr}"


def _copy(module: Path, tmp_path: Path) -> Path:
    target = tmp_path / module.name
    shutil.copytree(module, target)
    return target


# The squall module and the examples, each with its terraform tests (mocked provider).
WITH_PROVIDER = ["modules/squall", "examples/basic", "examples/cognito-ui", "examples/scheduled-etl"]
# Examples that need a provider the offline mirror lacks (hashicorp/google): `terraform init`
# cannot install it, so they are neither validated nor planned here. test_hcl.py checks their
# wiring with python-hcl2 and their README says so.
WITHOUT_MIRRORED_PROVIDER = {"examples/google-batch": "hashicorp/google"}


def test_the_module_and_every_example_have_provider_tests() -> None:
    examples = sorted(f"examples/{p.name}" for p in (INFRA / "examples").iterdir() if p.is_dir())
    assert sorted([*WITH_PROVIDER, *WITHOUT_MIRRORED_PROVIDER]) == sorted(["modules/squall", *examples])
    for example, provider in WITHOUT_MIRRORED_PROVIDER.items():
        assert f'source  = "{provider}"' in (INFRA / example / "versions.tf").read_text(), example
        assert "not `terraform validate`d" in (INFRA / example / "README.md").read_text(), example


@pytest.mark.parametrize("target", WITH_PROVIDER)
def test_validates_and_plans_against_the_mirrored_aws_provider(
    target: str, tmp_path: Path, aws_provider: Path
) -> None:
    # The whole infra tree: the examples use the module by relative path.
    infra = tmp_path / "infra"
    shutil.copytree(INFRA, infra, ignore=shutil.ignore_patterns(".terraform*", ".tfdata", "*.tfstate*"))
    work = infra / target
    assert list(work.glob("tests/*.tftest.hcl")), f"{target} has no terraform tests"
    init = run_terraform(["init", "-backend=false", "-input=false"], work, cli_config=aws_provider)
    assert "hashicorp/aws v" in init.stdout, init.stdout  # from the mirror, not the registry
    run_terraform(["validate"], work, cli_config=aws_provider)
    result = run_terraform(["test"], work, cli_config=aws_provider)
    assert "0 failed" in result.stdout and " passed" in result.stdout, result.stdout


@pytest.mark.parametrize("name", SUBMODULE_NAMES)
def test_submodule_validates_and_its_tests_pass(name: str, tmp_path: Path) -> None:
    work = _copy(SUBMODULES / name, tmp_path)
    assert list(work.glob("tests/*.tftest.hcl")), f"modules/{name} has no terraform tests"
    run_terraform(["init", "-backend=false", "-input=false"], work)
    run_terraform(["validate"], work)
    result = run_terraform(["test"], work)
    assert "0 failed" in result.stdout and " passed" in result.stdout, result.stdout


def _plan_settings(tmp_path: Path, variables: dict[str, Any]) -> tuple[int, str]:
    work = _copy(SUBMODULES / "settings", tmp_path)
    (work / "case.tfvars.json").write_text(json.dumps({"table_name": "squall", **variables}))
    run_terraform(["init", "-backend=false", "-input=false"], work)
    result = run_terraform(
        ["plan", "-input=false", "-lock=false", "-refresh=false", "-var-file=case.tfvars.json"],
        work,
        check=False,
    )
    return result.returncode, " ".join((result.stdout + result.stderr).split())


QUEUE = "arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"
GOOGLE = {"project_id": "my-project", "region": "europe-west1", "bucket": "my-squall-staging"}
# A workload identity federation credential configuration for AWS, as gcloud writes it.
CREDENTIALS_CONFIG = {
    "universe_domain": "googleapis.com",
    "type": "external_account",
    "audience": "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/squall-aws"
    "/providers/aws",
    "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
    "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
    "squall-control@my-project.iam.gserviceaccount.com:generateAccessToken",
    "token_url": "https://sts.googleapis.com/v1/token",
    "credential_source": {
        "environment_id": "aws1",
        "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
        "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
        "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
    },
}
# What the sweeper's environment leaves out of the others'.
SWEEPER_LACKS = {
    "SQUALL_SECRETS",
    "SQUALL_SECRETS_PREFIX",
    "SQUALL_AWS_ENDPOINT_ALLOWLIST",
    "SQUALL_STORAGE",
    "SQUALL_STORAGE_READ",
    "SECRET_TOKEN",
}

COGNITO_ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
JWT = {"api_authorization": "JWT", "jwt_authorizer": {"issuer": COGNITO_ISSUER, "audience": ["app-client"]}}
UI_OIDC = {"issuer": COGNITO_ISSUER, "client_id": "app-client"}

BAD_VALUES = [
    pytest.param({"ui_oidc": UI_OIDC}, "ui_oidc needs api_authorization = JWT", id="ui-oidc-iam"),
    pytest.param(
        {**JWT, "ui_oidc": {**UI_OIDC, "issuer": "https://other.example.com"}},
        "ui_oidc.issuer must be jwt_authorizer.issuer",
        id="ui-oidc-issuer",
    ),
    pytest.param(
        {**JWT, "ui_oidc": {**UI_OIDC, "client_id": "another"}},
        "ui_oidc.client_id must be one of jwt_authorizer.audience",
        id="ui-oidc-audience",
    ),
    pytest.param(
        {**JWT, "ui_oidc": {**UI_OIDC, "scopes": ["email"]}},
        "ui_oidc.scopes must include openid",
        id="ui-scopes",
    ),
    pytest.param(
        {**JWT, "ui_oidc": {**UI_OIDC, "token": "refresh"}},
        "ui_oidc.token must be access",
        id="ui-oidc-token",
    ),
    pytest.param(
        {**JWT, "ui_oidc": {**UI_OIDC, "origins": ["https://x.auth.eu-west-1.amazoncognito.com/oauth2"]}},
        "ui_oidc.origins are https origins with no path",
        id="ui-oidc-origin-path",
    ),
    pytest.param({"aws_batch": {"job_queue_arns": ["squall-fargate"]}}, "must be ARNs like", id="queue-name"),
    pytest.param({"log_retention_in_days": 45}, "must be a value CloudWatch Logs accepts", id="retention"),
    pytest.param(
        {"api_authorization": "JWT"}, "jwt_authorizer is required when api_authorization is JWT", id="jwt"
    ),
    pytest.param(
        {"api_authorization": "JWT", "jwt_authorizer": {"issuer": "https://idp.example.com", "audience": []}},
        "must list at least one non-empty audience",
        id="jwt-audience",
    ),
    pytest.param({"functions": {"api": {"memory_size": 64}}}, "between 128 and 10240", id="memory"),
    pytest.param({"functions": {"api": {"timeout": 60}}}, "must be at most 30 seconds", id="api-timeout"),
    pytest.param(
        {"aws_batch": {"job_queue_arns": [QUEUE], "task_role_arn": "squall-task"}},
        "must be IAM role ARNs",
        id="role-name",
    ),
    pytest.param(
        {
            "schedules": [
                {"namespace": "a", "flow_id": "f", "trigger_id": "t", "schedule_expression": "0 2 * * *"}
            ]
        },
        "must be EventBridge Scheduler syntax",
        id="unix-cron",
    ),
    pytest.param({"submit_budget": 0}, "submit_budget must be a whole number of jobs", id="submit-budget"),
    pytest.param(
        {"tick_submits": 5000}, "functions.tick.timeout is too short for tick_submits", id="tick-submits"
    ),
    pytest.param(
        {"functions": {"tick": {"reserved_concurrent_executions": 5}}},
        "two ticks running at once",
        id="tick-concurrency",
    ),
    pytest.param(
        {"application_log_level": "WARNING"}, "must be one of Lambda's levels", id="application-log-level"
    ),
    pytest.param(
        {"extra_environment_variables": {"POWERTOOLS_LOG_LEVEL": "DEBUG"}},
        "POWERTOOLS_LOG_LEVEL must agree with application_log_level",
        id="powertools-log-level",
    ),
    pytest.param(
        {"secret_backends": ["env", "file"]}, "a Lambda function has no secrets file", id="file-secrets"
    ),
    pytest.param({"secrets_prefix": ""}, "so it cannot be empty", id="empty-secrets-prefix"),
    pytest.param(
        {"aws_endpoint_allowlist": ["https://a.example.com,https://b.example.com"]},
        "no credentials, query, fragment, comma or space",
        id="endpoint-comma",
    ),
    pytest.param(
        {"aws_endpoint_allowlist": ["https://batch.example.com"]},
        "aws_endpoint_allowlist needs aws_batch",
        id="endpoint-no-batch",
    ),
    pytest.param(
        {"google_batch": {**GOOGLE, "region": "europe-west1-b"}},
        "google_batch.region must be a Google Cloud region",
        id="google-zone",
    ),
    pytest.param(
        {
            "google_batch": {
                **GOOGLE,
                "notification_topic": f"projects/{GOOGLE['project_id']}/topics/t-events",
            }
        },
        "google_batch.notification_topic needs pubsub_push_audience",
        id="google-topic-without-ingress",
    ),
    pytest.param(
        {"google_batch": {**GOOGLE, "credentials_config": '{"type": "service_account", "private_key": "k"}'}},
        "Not a service-account key",
        id="google-key-as-credentials",
    ),
    pytest.param(
        {"cloud_run": {**GOOGLE, "region": "europe-west1-b"}},
        "cloud_run.region must be a Google Cloud region",
        id="cloud-run-zone",
    ),
    pytest.param(
        {"cloud_run": {**GOOGLE, "bucket": "gs://my-squall-staging/jobs"}},
        "cloud_run.bucket must be a Cloud Storage bucket name",
        id="cloud-run-bucket-uri",
    ),
    pytest.param(
        {"cloud_run": {**GOOGLE, "credentials_config": '{"type": "service_account", "private_key": "k"}'}},
        "Not a service-account key",
        id="cloud-run-key-as-credentials",
    ),
]


@pytest.mark.parametrize(("variables", "message"), BAD_VALUES)
def test_a_bad_value_fails_with_its_own_message(
    tmp_path: Path, variables: dict[str, Any], message: str
) -> None:
    code, output = _plan_settings(tmp_path, variables)
    assert code != 0, f"terraform accepted {variables}"
    assert message in output, output


def test_a_good_value_plans(tmp_path: Path) -> None:
    """The negative cases above fail for their value, not because the harness cannot plan at all."""
    code, output = _plan_settings(tmp_path, {"aws_batch": {"job_queue_arns": [QUEUE]}})
    assert code == 0, output


def test_the_ui_login_reaches_the_api_function_only_and_the_runtime_reads_it(tmp_path: Path) -> None:
    domain = "https://squall-login.auth.eu-west-1.amazoncognito.com"
    outputs = _rendered(
        tmp_path,
        f"""
  table_name        = "squall"
  api_authorization = "JWT"
  jwt_authorizer    = {{ issuer = "{COGNITO_ISSUER}", audience = ["app-client"] }}
  ui_oidc           = {{ issuer = "{COGNITO_ISSUER}", client_id = "app-client", origins = ["{domain}"] }}
""",
    )
    environments: dict[str, dict[str, str]] = outputs["environments"]
    assert [k for k, env in environments.items() if "SQUALL_UI_OIDC" in env] == ["api"]
    api = environments["api"]
    oidc = load_settings({k: v for k, v in api.items() if k.startswith("SQUALL_")}).ui_oidc
    assert oidc is not None
    assert oidc.public() == {
        "issuer": COGNITO_ISSUER,
        "clientId": "app-client",
        "scopes": ["openid"],
        "token": "access",
        "origins": ["https://cognito-idp.eu-west-1.amazonaws.com", domain],
    }


def _rendered(tmp_path: Path, arguments: str) -> dict[str, Any]:
    """Apply the settings module (no provider: only outputs) and return its outputs."""
    work = tmp_path / "root"
    work.mkdir()
    (work / "main.tf").write_text(
        f"""
module "settings" {{
  source = "{(SUBMODULES / "settings").as_posix()}"
{arguments}
}}

output "environment" {{
  value = module.settings.environment
}}

output "functions" {{
  value = module.settings.functions
}}

output "environments" {{
  value = module.settings.environments
}}
"""
    )
    run_terraform(["init", "-backend=false", "-input=false"], work)
    state = str(tmp_path / "terraform.tfstate")
    run_terraform(["apply", "-auto-approve", "-input=false", "-lock=false", f"-state={state}"], work)
    result = run_terraform(["output", "-json", f"-state={state}"], work)
    return {name: entry["value"] for name, entry in json.loads(result.stdout).items()}


def test_the_rendered_environment_is_what_the_runtime_and_the_batch_runner_accept(tmp_path: Path) -> None:
    outputs = _rendered(
        tmp_path,
        f"""
  table_name  = "squall"
  bucket_name = "squall-123456789012-eu-west-1"
  aws_batch = {{
    job_queue_arns          = ["{QUEUE}"]
    execution_role_arn      = "arn:aws:iam::123456789012:role/exec"
    task_role_arn           = "arn:aws:iam::123456789012:role/task"
    compute_environment_arn = "arn:aws:batch:eu-west-1:123456789012:compute-environment/fargate"
  }}
  extra_environment_variables = {{ POWERTOOLS_LOG_LEVEL = "INFO", SECRET_TOKEN = "czNjcjN0" }}
  secret_backends             = ["env", "secretsmanager", "ssm"]
  secrets_prefix              = "/prod/squall/"
  aws_endpoint_allowlist      = ["https://VPCE-0abc.batch.eu-west-1.vpce.amazonaws.com/"]
  storage_read                = ["s3://shared-datasets/public"]
""",
    )
    env: dict[str, str] = outputs["environment"]
    settings = load_settings({k: v for k, v in env.items() if k.startswith("SQUALL_")})
    assert settings.store == "dynamodb"
    assert settings.table == "squall"
    assert settings.bucket == "squall-123456789012-eu-west-1"
    assert settings.auth == "gateway"
    assert (settings.reconcile_after, settings.submit_grace, settings.finished_ttl_days) == (300.0, 120.0, 30)
    assert (settings.submit_budget, settings.tick_submits) == (100, 500)
    assert {"SQUALL_SUBMIT_BUDGET", "SQUALL_TICK_SUBMITS"} <= env.keys()
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert env["PYDANTIC_DISABLE_PLUGINS"] == "__all__"  # no plugin scan at cold start (sweeper too: below)
    # The deployment storage: a prefix of the module's bucket, and the allowlist as prefixes.
    storage = task_storage(settings)
    assert storage.url == "s3://squall-123456789012-eu-west-1/squall/storage/"
    assert storage.storage.read_allowlist == ("s3://shared-datasets/public/",)

    # secret(): the chain the settings open asks each backend for the names IAM allows.
    assert settings.secrets == ("env", "secretsmanager", "ssm")
    chain = secret_chain(settings)
    assert [(b.name, b.where("X")) for b in chain.backends] == [
        ("env", "environment variable SECRET_X"),
        ("secretsmanager", "Secrets Manager /prod/squall/X"),
        ("ssm", "SSM parameter /prod/squall/X"),
    ]
    # The sweeper renders nothing: default settings, no SECRET_* value in its configuration.
    sweeper_env: dict[str, str] = outputs["environments"]["sweeper"]
    assert "SECRET_TOKEN" in env and "SECRET_TOKEN" not in sweeper_env
    assert sweeper_env == {k: v for k, v in env.items() if k not in SWEEPER_LACKS}
    swept = load_settings({k: v for k, v in sweeper_env.items() if k.startswith("SQUALL_")})
    assert (swept.secrets, swept.aws_endpoint_allowlist) == ((), ())
    assert all(outputs["environments"][f] == env for f in ("api", "tick", "events"))
    # The schedule function alone submits for longer: nobody waits on a scheduled start (issue 28).
    scheduled = outputs["environments"]["schedule"]
    assert scheduled == env | {"SQUALL_SUBMIT_SECONDS": "5"}
    scheduled_settings = load_settings({k: v for k, v in scheduled.items() if k.startswith("SQUALL_")})
    assert scheduled_settings.submit_seconds == 5.0
    assert settings.submit_seconds == 0.25

    # RunnerRegistry builds AwsBatchRunner(**SQUALL_RUNNERS["aws-batch"]): the keywords must exist,
    # and the defaults must be valid task options (no boto3 call is made to check this).
    rt = open_runtime(settings.model_copy(update={"store": "sqlite", "db": str(tmp_path / "s.db")}))
    try:
        runner = rt.service.runners.get("aws-batch")
        assert isinstance(runner, AwsBatchRunner)
    finally:
        rt.close()
    # SQUALL_AWS_ENDPOINT_ALLOWLIST reaches the runner, canonical (lowercase host, no trailing /).
    assert runner._allowed_endpoints == {"https://vpce-0abc.batch.eu-west-1.vpce.amazonaws.com"}
    options = validate_options(AwsBatchRunner, settings.runners["aws-batch"]["defaults"])
    assert isinstance(options, BatchOptions)
    assert options.job_queue_arn == QUEUE
    assert options.bucket == "squall-123456789012-eu-west-1"
    assert options.staging_prefix == "squall/jobs"
    assert options.execution_role_arn == "arn:aws:iam::123456789012:role/exec"
    assert (
        options.compute_environment_arn == "arn:aws:batch:eu-west-1:123456789012:compute-environment/fargate"
    )

    # The scheduled-etl flow names no queue: what the service validates at submission (the
    # task's options over the runner's defaults) is complete only with the module's defaults.
    flow = load_flow_file(INFRA / "examples" / "scheduled-etl" / "flows" / "nightly-etl.yaml")
    [task] = [t for t in flow.tasks if getattr(t, "taskRunner", None)]
    runner_name, task_options = runner_of(task.model_dump(by_alias=True, exclude_none=True))
    assert runner_name == "aws-batch" and "jobQueueArn" not in task_options
    with pytest.raises(RunnerOptionsError, match="jobQueueArn"):
        validate_options(AwsBatchRunner, task_options)
    merged = validate_options(AwsBatchRunner, {**runner.option_defaults, **task_options})
    assert isinstance(merged, BatchOptions)
    assert merged.job_queue_arn == QUEUE

    handlers = {key: f["handler"] for key, f in outputs["functions"].items()}
    assert handlers == {
        key: f"control_plane.handlers.{key}.handler"
        for key in ("api", "tick", "events", "schedule", "sweeper")
    }


def test_the_rendered_google_batch_settings_build_the_runner_the_sample_needs(tmp_path: Path) -> None:
    """SQUALL_RUNNERS["google-batch"] from the module builds a GoogleBatchRunner: its defaults are
    valid options, the sample's task validates over them, and the credential configuration
    reaches the runner as a document google-auth reads as federation from AWS."""
    google_auth_aws = pytest.importorskip("google.auth.aws")
    from runners.google_batch import GoogleBatchOptions, GoogleBatchRunner

    outputs = _rendered(
        tmp_path,
        f"""
  table_name                  = "squall"
  pubsub_push_audience        = "squall-pubsub-push"
  pubsub_push_service_account = "squall-pubsub-push@my-project.iam.gserviceaccount.com"
  google_batch = {{
    project_id          = "{GOOGLE["project_id"]}"
    region              = "{GOOGLE["region"]}"
    bucket              = "{GOOGLE["bucket"]}"
    notification_topic  = "projects/my-project/topics/squall-batch-events"
    job_service_account = "squall-batch-job@my-project.iam.gserviceaccount.com"
    credentials_config  = {json.dumps(json.dumps(CREDENTIALS_CONFIG))}
  }}
""",
    )
    env: dict[str, str] = outputs["environment"]
    settings = load_settings({k: v for k, v in env.items() if k.startswith("SQUALL_")})
    assert settings.runners["google-batch"]["credentials_config"] == CREDENTIALS_CONFIG
    rt = open_runtime(settings.model_copy(update={"store": "sqlite", "db": str(tmp_path / "s.db")}))
    try:
        runner = rt.service.runners.get("google-batch")
        assert isinstance(runner, GoogleBatchRunner)
    finally:
        rt.close()
    defaults = validate_options(GoogleBatchRunner, runner.option_defaults)
    assert isinstance(defaults, GoogleBatchOptions)
    assert (defaults.project_id, defaults.region, defaults.bucket) == (
        "my-project",
        "europe-west1",
        "my-squall-staging",
    )
    assert defaults.notification_topic == "projects/my-project/topics/squall-batch-events"
    assert defaults.deployment == "squall"

    # A task that names only the type runs on these defaults (the sample names its own).
    with pytest.raises(RunnerOptionsError, match="projectId"):
        validate_options(GoogleBatchRunner, {})
    flow = load_flow_file(INFRA.parent / "samples" / "google-batch.yaml")
    [task] = [t for t in flow.tasks if getattr(t, "taskRunner", None)]
    name, task_options = runner_of(task.model_dump(by_alias=True, exclude_none=True))
    assert name == "google-batch"
    merged = validate_options(GoogleBatchRunner, {**runner.option_defaults, **task_options})
    assert isinstance(merged, GoogleBatchOptions) and merged.spot

    # The deployment's identity: a document google-auth's AWS loader takes (offline; no token
    # is fetched until a call needs one).
    federated = google_auth_aws.Credentials.from_info(runner._credentials_config)
    assert federated.service_account_email == "squall-control@my-project.iam.gserviceaccount.com"


def test_the_rendered_cloud_run_settings_build_the_runner_the_sample_needs(tmp_path: Path) -> None:
    """SQUALL_RUNNERS["cloud-run"] from the module builds a CloudRunRunner whose defaults are
    valid options; a task naming only the type runs on them, and the sample's task validates
    over them; the credential configuration reaches the runner decoded."""
    pytest.importorskip("google.cloud.run_v2")
    from runners.cloud_run import CloudRunOptions, CloudRunRunner

    outputs = _rendered(
        tmp_path,
        f"""
  table_name = "squall"
  cloud_run = {{
    project_id          = "{GOOGLE["project_id"]}"
    region              = "{GOOGLE["region"]}"
    bucket              = "{GOOGLE["bucket"]}"
    job_service_account = "squall-run-job@my-project.iam.gserviceaccount.com"
    credentials_config  = {json.dumps(json.dumps(CREDENTIALS_CONFIG))}
  }}
""",
    )
    env: dict[str, str] = outputs["environment"]
    settings = load_settings({k: v for k, v in env.items() if k.startswith("SQUALL_")})
    assert set(settings.runners) == {"cloud-run"}
    assert settings.runners["cloud-run"]["credentials_config"] == CREDENTIALS_CONFIG
    rt = open_runtime(settings.model_copy(update={"store": "sqlite", "db": str(tmp_path / "s.db")}))
    try:
        runner = rt.service.runners.get("cloud-run")
        assert isinstance(runner, CloudRunRunner)
    finally:
        rt.close()
    defaults = validate_options(CloudRunRunner, runner.option_defaults)
    assert isinstance(defaults, CloudRunOptions)
    assert (defaults.project_id, defaults.region, defaults.bucket, defaults.deployment) == (
        "my-project",
        "europe-west1",
        "my-squall-staging",
        "squall",
    )
    assert defaults.job_service_account == "squall-run-job@my-project.iam.gserviceaccount.com"
    with pytest.raises(RunnerOptionsError, match="projectId"):
        validate_options(CloudRunRunner, {})
    flow = load_flow_file(INFRA.parent / "samples" / "cloud-run.yaml")
    [task] = [t for t in flow.tasks if getattr(t, "taskRunner", None)]
    name, task_options = runner_of(task.model_dump(by_alias=True, exclude_none=True))
    assert name == "cloud-run"
    merged = validate_options(CloudRunRunner, {**runner.option_defaults, **task_options})
    assert isinstance(merged, CloudRunOptions) and merged.resources.vcpus == 2.0
