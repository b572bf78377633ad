"""Assertions over the module's HCL (python-hcl2): what the Python code needs exists, as it needs it.

The expected values are read from the Python code (the DynamoDB schema constants, the
runtime's Settings, the handler modules), never repeated here, so the two cannot drift.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from control_plane.flows.loader import load_flow_file
from control_plane.flows.models import Schedule
from control_plane.runtime import ENV_PREFIX, Settings
from control_plane.store import dynamodb_schema as schema
from runners.aws_batch.taxonomy import PUSHED_STATES

from .conftest import INFRA, MODULE, SUBMODULES, load_module, locals_of, named_blocks, resources

FUNCTIONS = ("api", "tick", "events", "schedule", "sweeper")


@pytest.fixture(scope="module")
def res(squall_module: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    return resources(squall_module)


@pytest.fixture(scope="module")
def settings_locals() -> dict[str, Any]:
    return locals_of(load_module(SUBMODULES / "settings"))


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {name} block"
    return blocks[0]


def _dynamic(body: dict[str, Any], name: str) -> dict[str, Any]:
    found = [block[name] for block in body.get("dynamic", []) if name in block]
    assert len(found) == 1, f"expected one dynamic {name} block"
    return found[0]


# ---------------------------------------------------------------- DynamoDB


def test_table_keys_billing_and_ttl_match_the_store_schema(res: dict[str, dict[str, Any]]) -> None:
    table = res["aws_dynamodb_table.this"]
    definition = schema.table_definition("any")
    key = {k["KeyType"]: k["AttributeName"] for k in definition["KeySchema"]}
    assert (
        (table["hash_key"], table["range_key"])
        == (key["HASH"], key["RANGE"])
        == (schema.HASH_KEY, schema.RANGE_KEY)
    )
    assert table["billing_mode"] == definition["BillingMode"] == schema.BILLING_MODE
    assert definition["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": schema.STREAM_VIEW_TYPE,
    }
    assert (table["stream_enabled"], table["stream_view_type"]) == (True, schema.STREAM_VIEW_TYPE)
    ttl = _block(table, "ttl")
    assert (ttl["attribute_name"], ttl["enabled"]) == (schema.TTL_ATTRIBUTE, True)


def test_table_attributes_match_the_store_schema(res: dict[str, dict[str, Any]]) -> None:
    attributes = {(a["name"], a["type"]) for a in res["aws_dynamodb_table.this"]["attribute"]}
    expected = {(a["AttributeName"], a["AttributeType"]) for a in schema.ATTRIBUTE_DEFINITIONS}
    assert attributes == expected


def test_table_indexes_match_the_store_schema(res: dict[str, dict[str, Any]]) -> None:
    declared = {
        gsi["name"]: (
            gsi["hash_key"],
            gsi["range_key"],
            gsi["projection_type"],
            sorted(gsi.get("non_key_attributes", [])),
        )
        for gsi in res["aws_dynamodb_table.this"]["global_secondary_index"]
    }
    expected = {}
    for gsi in schema.GLOBAL_SECONDARY_INDEXES:
        keys = {k["KeyType"]: k["AttributeName"] for k in gsi["KeySchema"]}
        projection = gsi["Projection"]
        expected[gsi["IndexName"]] = (
            keys["HASH"],
            keys["RANGE"],
            projection["ProjectionType"],
            sorted(projection.get("NonKeyAttributes", [])),
        )
    assert declared == expected


def test_table_is_protected_recoverable_and_encrypted(res: dict[str, dict[str, Any]]) -> None:
    table = res["aws_dynamodb_table.this"]
    assert _block(table, "point_in_time_recovery")["enabled"] == "${var.point_in_time_recovery_enabled}"
    sse = _block(table, "server_side_encryption")
    assert sse["enabled"] is True and sse["kms_key_arn"] == "${local.kms_key_arn}"
    assert table["deletion_protection_enabled"] == "${var.deletion_protection_enabled}"
    defaults = named_blocks(load_module(MODULE), "variable")
    assert defaults["deletion_protection_enabled"]["default"] is True
    assert defaults["point_in_time_recovery_enabled"]["default"] is True


# ---------------------------------------------------------------- Lambda


def test_handlers_exist_and_are_callable(settings_locals: dict[str, Any]) -> None:
    roles = settings_locals["function_roles"]
    assert sorted(roles) == sorted(FUNCTIONS)
    for key, role in roles.items():
        module_name, _, attribute = role["handler"].rpartition(".")
        assert module_name == f"control_plane.handlers.{key}"
        assert callable(getattr(importlib.import_module(module_name), attribute))
        assert role["async"] is (key in ("tick", "events", "schedule"))
        assert role["dead_letters"] is (key != "api")
        assert role["runs_flows"] is (key != "sweeper")


def test_functions_are_arm64_python_with_a_hashed_zip(res: dict[str, dict[str, Any]]) -> None:
    fn = res["aws_lambda_function.this"]
    assert fn["for_each"] == "${local.functions}"
    assert fn["architectures"] == ["arm64"]
    assert fn["runtime"] == "${module.settings.lambda_runtime}"
    assert fn["filename"] == "${var.lambda_zip_path}"
    assert fn["source_code_hash"] == "${filebase64sha256(var.lambda_zip_path)}"
    assert _block(fn, "environment")["variables"] == "${module.settings.environments[each.key]}"
    for attribute in ("memory_size", "timeout", "reserved_concurrent_executions"):
        assert fn[attribute] == f"${{each.value.{attribute}}}"
    assert fn["tracing_config"][0]["mode"] == '${module.settings.tracing_enabled ? "Active" : "PassThrough"}'
    dlq = _dynamic(fn, "dead_letter_config")
    assert "each.value.async" in dlq["for_each"]
    variables = named_blocks(load_module(MODULE), "variable")
    assert variables["lambda_zip_path"]["default"] == "dist/lambda.zip"
    runtimes = load_module(SUBMODULES / "settings")["variable"]
    runtime = next(v["lambda_runtime"] for v in runtimes if "lambda_runtime" in v)
    assert runtime["default"] in ("python3.12", "python3.13")


def test_every_function_has_a_log_group_with_retention(res: dict[str, dict[str, Any]]) -> None:
    groups = res["aws_cloudwatch_log_group.lambda"]
    assert groups["for_each"] == res["aws_lambda_function.this"]["for_each"]
    assert groups["name"] == "${module.naming.log_group_names[each.key]}"
    for body in (groups, res["aws_cloudwatch_log_group.api_access"]):
        assert body["retention_in_days"] == "${module.settings.log_retention_in_days}"
    # The function waits for its group, or Lambda would create one without retention first.
    assert "${aws_cloudwatch_log_group.lambda}" in res["aws_lambda_function.this"]["depends_on"]


def test_every_squall_variable_the_module_sets_is_a_runtime_setting(settings_locals: dict[str, Any]) -> None:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    every_tf = "\n".join(p.read_text() for p in INFRA.rglob("*.tf"))
    mentioned = set(re.findall(r"\b(SQUALL_[A-Z_]+)\s*=", every_tf))
    set_here = set(re.findall(r"\b(SQUALL_[A-Z_]+)\s*=", settings_locals["squall_environment"]))
    assert set_here >= {
        "SQUALL_STORE",
        "SQUALL_TABLE",
        "SQUALL_BUCKET",
        "SQUALL_AUTH",
        "SQUALL_RUNNERS",
        "SQUALL_SUBMIT_BUDGET",
        "SQUALL_TICK_SUBMITS",
    }
    assert mentioned <= known, f"not runtime settings: {sorted(mentioned - known)}"


# Module variable -> the Settings field it sets: their defaults must agree, or a deployment
# would quietly run with other values than `squall server` and the docs.
VARIABLE_SETTINGS = {
    "max_body_bytes": "max_body_bytes",
    "reconcile_after_seconds": "reconcile_after",
    "submit_grace_seconds": "submit_grace",
    "submit_budget": "submit_budget",
    "tick_submits": "tick_submits",
    "finished_ttl_days": "finished_ttl_days",
    "secrets_prefix": "secrets_prefix",
}


def test_setting_variables_default_to_the_runtime_defaults(settings_locals: dict[str, Any]) -> None:
    rendered = settings_locals["squall_environment"] + settings_locals["flow_environment"]
    for module in (MODULE, SUBMODULES / "settings"):
        variables = named_blocks(load_module(module), "variable")
        for variable, field in VARIABLE_SETTINGS.items():
            assert variables[variable]["default"] == Settings.model_fields[field].default, (module, variable)
            assert f"{ENV_PREFIX}{field.upper()}" in rendered and f"var.{variable}" in rendered, variable


def test_secret_backends_are_the_runtimes_but_file(settings_locals: dict[str, Any]) -> None:
    """The validation admits exactly the backends control_plane/secrets knows, less `file`."""
    from control_plane.secrets import BACKENDS

    variables = named_blocks(load_module(SUBMODULES / "settings"), "variable")
    conditions = [v["condition"] for v in variables["secret_backends"]["validation"]]
    admitted = {
        name
        for condition in conditions
        for listed in re.findall(r"contains\(\[([^\]]*)\], b\)", condition)
        for name in re.findall(r'"(\w+)"', listed)
    }
    assert admitted == set(BACKENDS) - {"file"}
    assert set(variables["secret_backends"]["default"]) <= admitted
    environment = settings_locals["flow_environment"]
    for name in ("SQUALL_SECRETS", "SQUALL_SECRETS_PREFIX", "SQUALL_AWS_ENDPOINT_ALLOWLIST"):
        assert name in environment, name


def test_the_module_and_settings_variables_agree() -> None:
    """The parent module repeats the settings module's types and defaults: they must not drift."""
    parent = named_blocks(load_module(MODULE), "variable")
    for name, body in named_blocks(load_module(SUBMODULES / "settings"), "variable").items():
        if name == "table_name":
            continue
        assert parent[name]["type"] == body["type"], name
        assert parent[name].get("default") == body.get("default"), name


def _function_defaults(functions_type: str, key: str) -> dict[str, int]:
    match = re.search(
        rf"\b{key} = optional\(object\(\{{memory_size = optional\(number, (\d+)\), "
        r"timeout = optional\(number, (\d+)\), reserved_concurrent_executions = optional\(number, (-?\d+)\)",
        functions_type,
    )
    assert match, f"functions.{key} defaults not found"
    memory, timeout, reserved = (int(g) for g in match.groups())
    return {"memory_size": memory, "timeout": timeout, "reserved_concurrent_executions": reserved}


def test_the_tick_runs_alone_long_enough_and_late_ticks_are_dropped(res: dict[str, dict[str, Any]]) -> None:
    variables = named_blocks(load_module(MODULE), "variable")
    tick = _function_defaults(variables["functions"]["type"], "tick")
    assert tick["reserved_concurrent_executions"] == 1  # two ticks could recover one job twice
    for key in ("api", "events", "schedule", "sweeper"):
        assert _function_defaults(variables["functions"]["type"], key)["reserved_concurrent_executions"] == -1
    # find + submit per job at ~40 AWS Batch calls a second, then polling: >= 60 s by default,
    # and below the submit grace so a live tick's submissions are never recovered under it.
    submits = Settings.model_fields["tick_submits"].default
    assert tick["timeout"] >= max(60, submits * 2 / 40)
    assert tick["timeout"] < variables["submit_grace_seconds"]["default"]
    # A tick waiting for the running one is dropped after a minute, never retried or queued.
    invoke = res["aws_lambda_function_event_invoke_config.this"]
    assert invoke["maximum_event_age_in_seconds"] == '${each.key == "tick" ? 60 : 21600}'
    assert invoke["maximum_retry_attempts"] == '${each.key == "tick" ? 0 : 2}'
    retry = _block(res["aws_cloudwatch_event_target.tick"], "retry_policy")
    assert (retry["maximum_event_age_in_seconds"], retry["maximum_retry_attempts"]) == (60, 0)


def test_every_function_logs_json_to_its_own_group(res: dict[str, dict[str, Any]]) -> None:
    fn = res["aws_lambda_function.this"]
    logging_config = _block(fn, "logging_config")
    assert logging_config == {
        "log_format": "${module.settings.logging.log_format}",
        "application_log_level": "${module.settings.logging.application_log_level}",
        "system_log_level": "${module.settings.logging.system_log_level}",
        "log_group": "${aws_cloudwatch_log_group.lambda[each.key].name}",
        "__is_block__": True,
    }
    settings = load_module(SUBMODULES / "settings")
    assert named_blocks(settings, "output")["logging"]["value"]["log_format"] == "JSON"
    # Lambda sets AWS_LAMBDA_LOG_LEVEL from logging_config; the module sets no level of its own
    # (POWERTOOLS_LOG_LEVEL would be overridden by it, and only mislead).
    assert "LOG_LEVEL" not in str(locals_of(settings))
    levels = named_blocks(settings, "variable")["application_log_level"]
    assert levels["default"] == "INFO"
    assert all(level in str(levels["validation"]) for level in ("TRACE", "DEBUG", "WARN", "ERROR", "FATAL"))


def test_snap_start_publishes_the_api_and_routes_through_its_alias(res: dict[str, dict[str, Any]]) -> None:
    fn = res["aws_lambda_function.this"]
    only_api = 'local.api_snap_start && each.key == "api"'
    assert fn["publish"] == f"${{{only_api}}}"
    snap = _dynamic(fn, "snap_start")
    assert snap["for_each"] == f'${{{only_api} ? ["PublishedVersions"] : []}}'
    assert snap["content"][0]["apply_on"] == "${snap_start.value}"
    alias = res["aws_lambda_alias.api"]
    assert alias["count"] == "${local.api_snap_start ? 1 : 0}"
    assert alias["function_name"] == '${aws_lambda_function.this["api"].function_name}'
    assert alias["function_version"] == '${aws_lambda_function.this["api"].version}'
    assert res["aws_apigatewayv2_integration.api"]["integration_uri"] == (
        "${local.api_snap_start ? aws_lambda_alias.api[0].invoke_arn"
        ' : aws_lambda_function.this["api"].invoke_arn}'
    )
    permission = res["aws_lambda_permission.api"]
    assert permission["qualifier"] == "${local.api_snap_start ? aws_lambda_alias.api[0].name : null}"
    assert permission["function_name"] == '${aws_lambda_function.this["api"].function_name}'
    assert locals_of(load_module(MODULE))["api_snap_start"] == "${module.settings.snap_start}"
    variables = named_blocks(load_module(MODULE), "variable")
    assert variables["snap_start"]["default"] is False
    # SnapStart for Python needs 3.12 or later: every runtime the module accepts has it.
    runtimes = named_blocks(load_module(SUBMODULES / "settings"), "variable")["lambda_runtime"]
    minors = [int(m) for m in re.findall(r"python3\.(\d+)", str(runtimes["validation"]))]
    assert minors and min(minors) >= 12


def test_the_check_on_variable_names_would_catch_a_typo() -> None:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert {"SQUALL_RECONCILE_AFTER_SECONDS"} - known == {"SQUALL_RECONCILE_AFTER_SECONDS"}


# ---------------------------------------------------------------- API, events, IAM wiring


def test_http_api_routes_authorizer_logs_and_throttling(
    res: dict[str, dict[str, Any]], squall_module: Any
) -> None:
    assert res["aws_apigatewayv2_api.this"]["protocol_type"] == "HTTP"
    integration = res["aws_apigatewayv2_integration.api"]
    assert integration["payload_format_version"] == "2.0"
    assert integration["timeout_milliseconds"] == "${module.settings.api_integration_timeout_ms}"
    routes = locals_of(squall_module)["routes"]
    assert routes["ANY /api/{proxy+}"] == "${module.settings.api_authorization}"
    assert {k for k, v in routes.items() if v == "NONE"} == {
        "GET /openapi.json",
        "GET /api/v1/configs",
        "GET /webhooks/{proxy+}",
        "POST /webhooks/{proxy+}",
        "PUT /webhooks/{proxy+}",
        "GET /api/v1/main/executions/webhook/{proxy+}",
        "POST /api/v1/main/executions/webhook/{proxy+}",
        "PUT /api/v1/main/executions/webhook/{proxy+}",
        "GET /ui",
        "GET /ui/{proxy+}",
    }
    stage = res["aws_apigatewayv2_stage.default"]
    assert (
        _block(stage, "access_log_settings")["destination_arn"]
        == "${aws_cloudwatch_log_group.api_access.arn}"
    )
    throttling = _block(stage, "default_route_settings")
    assert throttling["throttling_rate_limit"] == "${module.settings.api_throttling.rate_limit}"
    assert throttling["throttling_burst_limit"] == "${module.settings.api_throttling.burst_limit}"


def test_the_event_ingress_routes_post_to_the_events_function_authenticated_by_the_handler(
    res: dict[str, dict[str, Any]], squall_module: Any
) -> None:
    from control_plane.ingress import PUBSUB_PATH, WEBHOOK_PREFIX

    event_routes = locals_of(squall_module)["event_routes"]
    assert f'"POST {PUBSUB_PATH}" = "NONE"' in event_routes
    assert f'"POST {WEBHOOK_PREFIX}{{key}}" = "NONE"' in event_routes
    integration = res["aws_apigatewayv2_integration.events"]
    assert integration["integration_uri"] == '${aws_lambda_function.this["events"].invoke_arn}'
    assert integration["payload_format_version"] == "2.0"  # what control_plane.ingress.http_request reads
    assert integration["count"] == "${local.ingress.enabled ? 1 : 0}"
    route = res["aws_apigatewayv2_route.events"]
    assert route["for_each"] == "${local.event_routes}"
    assert route["target"] == "integrations/${aws_apigatewayv2_integration.events[0].id}"
    assert "authorizer_id" not in route  # the handler verifies the token or the signature
    permission = res["aws_lambda_permission.events_ingress"]
    assert permission["function_name"] == '${aws_lambda_function.this["events"].function_name}'
    assert permission["source_arn"] == "${aws_apigatewayv2_api.this.execution_arn}/*/POST/events/*"
    assert permission["principal"] == "apigateway.amazonaws.com"
    # The ingress settings reach the events function only.
    environments = locals_of(load_module(SUBMODULES / "settings"))["environments"]
    assert 'key == "events" ? local.ingress_environment : {}' in environments


def test_eventbridge_tick_batch_rule_and_scheduler(res: dict[str, dict[str, Any]]) -> None:
    assert (
        res["aws_cloudwatch_event_rule.tick"]["schedule_expression"]
        == "${module.settings.tick_schedule_expression}"
    )
    assert res["aws_cloudwatch_event_target.tick"]["arn"] == '${aws_lambda_function.this["tick"].arn}'
    pattern = res["aws_cloudwatch_event_rule.batch"]["event_pattern"]
    assert (
        '"Batch Job State Change"' in pattern and '["aws.batch"]' in pattern and "job_queue_arns" in pattern
    )
    # only the statuses the engine acts on: every other change would be an events invocation for nothing
    assert f"status = {json.dumps(list(PUSHED_STATES))}" in pattern
    assert res["aws_cloudwatch_event_target.batch"]["arn"] == '${aws_lambda_function.this["events"].arn}'
    schedule = res["aws_scheduler_schedule.this"]
    target = _block(schedule, "target")
    assert target["arn"] == '${aws_lambda_function.this["schedule"].arn}'
    assert target["input"] == "${each.value.input}"
    assert target["role_arn"] == "${aws_iam_role.scheduler.arn}"


def test_the_sweeper_reads_only_ttl_expiries_of_execution_meta(res: dict[str, dict[str, Any]]) -> None:
    from control_plane.handlers.sweeper import TTL_PRINCIPAL, expired_executions

    mapping = res["aws_lambda_event_source_mapping.sweeper"]
    assert mapping["event_source_arn"] == "${aws_dynamodb_table.this.stream_arn}"
    assert mapping["function_name"] == '${aws_lambda_function.this["sweeper"].arn}'
    pattern = mapping["filter_criteria"][0]["filter"][0]["pattern"]
    for fragment in ('["REMOVE"]', f'["{TTL_PRINCIPAL}"]', '["META"]', '"EXEC#"'):
        assert fragment in pattern, fragment
    # The handler agrees with the filter on a record the filter lets through.
    record = {
        "eventName": "REMOVE",
        "userIdentity": {"type": "Service", "principalId": TTL_PRINCIPAL},
        "dynamodb": {"Keys": {"PK": {"S": "EXEC#e1"}, "SK": {"S": "META"}}},
    }
    assert list(expired_executions({"Records": [record]})) == ["e1"]
    on_failure = mapping["destination_config"][0]["on_failure"][0]
    assert on_failure["destination_arn"] == '${aws_sqs_queue.dlq["sweeper"].arn}'


def test_each_function_has_its_own_role_and_policy_document(
    res: dict[str, dict[str, Any]], squall_module: Any
) -> None:
    assert res["aws_iam_role.lambda"]["for_each"] == "${local.functions}"
    assert res["aws_lambda_function.this"]["role"] == "${aws_iam_role.lambda[each.key].arn}"
    data = resources(squall_module, "data")
    document = data["aws_iam_policy_document.lambda"]
    assert document["dynamic"][0]["statement"]["for_each"] == "${module.policies.statements[each.key]}"
    for source in ("aws_caller_identity.current", "aws_partition.current", "aws_region.current"):
        assert source in data


def test_settings_module_receives_every_validated_variable(squall_module: Any) -> None:
    """Validation lives in modules/settings: each of its inputs must be forwarded unchanged."""
    call = named_blocks(squall_module, "module")["settings"]
    inputs = named_blocks(load_module(SUBMODULES / "settings"), "variable")
    computed = {"table_name", "bucket_name"}
    for name in set(inputs) - computed:
        assert call.get(name) == f"${{var.{name}}}", f"module.settings.{name} must be var.{name}"
    main_variables = named_blocks(squall_module, "variable")
    for name in set(inputs) - computed:
        assert "validation" not in main_variables[name], f"var.{name}: validate in modules/settings only"


TAGLESS = {
    "aws_apigatewayv2_authorizer",
    "aws_apigatewayv2_integration",
    "aws_apigatewayv2_route",
    "aws_cloudwatch_event_target",
    "aws_iam_role_policy",
    "aws_iam_role_policy_attachment",
    "aws_lambda_alias",
    "aws_lambda_function_event_invoke_config",
    "aws_lambda_permission",
    "aws_s3_bucket_lifecycle_configuration",
    "aws_s3_bucket_ownership_controls",
    "aws_s3_bucket_policy",
    "aws_s3_bucket_public_access_block",
    "aws_s3_bucket_server_side_encryption_configuration",
    "aws_scheduler_schedule",
    "aws_sqs_queue_policy",
}


def test_tags_are_applied_to_every_taggable_resource(res: dict[str, dict[str, Any]]) -> None:
    untagged = [
        name
        for name, body in res.items()
        if name.split(".")[0] not in TAGLESS and body.get("tags") != "${var.tags}"
    ]
    assert untagged == []


def test_no_hard_coded_account_or_region() -> None:
    """Account, partition and region come from data sources. Messages and comments may show examples."""
    for path in MODULE.rglob("*.tf"):
        text = "\n".join(
            line
            for line in path.read_text().splitlines()
            if not re.match(r"\s*(#|error_message\s*=|description\s*=)", line)
        )
        assert not re.search(r"(?<![\w-])\d{12}(?![\w-])", text), f"{path}: an account id"
        assert not re.search(
            r"\b(us|eu|ap|sa|ca|me|af|il|mx)-(north|south|east|west|central|northeast|southeast)-\d\b", text
        ), path


# ---------------------------------------------------------------- docs and examples


def test_every_variable_and_output_is_typed_described_and_in_the_readme(squall_module: Any) -> None:
    readme = (MODULE / "README.md").read_text()
    for name, body in named_blocks(squall_module, "variable").items():
        assert body.get("description") and body.get("type"), f"variable {name}"
        assert f"| `{name}` |" in readme, f"variable {name} missing from the README inputs table"
    for name, body in named_blocks(squall_module, "output").items():
        assert body.get("description"), f"output {name}"
        assert f"| `{name}` |" in readme, f"output {name} missing from the README outputs table"


EXAMPLES = sorted(p for p in (INFRA / "examples").iterdir() if p.is_dir())
AWS_BATCH_EXAMPLES = ("basic", "scheduled-etl")


def test_the_four_examples_exist() -> None:
    assert [p.name for p in EXAMPLES] == ["basic", "cognito-ui", "google-batch", "scheduled-etl"]


def test_cognito_example_wires_one_issuer_and_the_ui_client_as_the_audience() -> None:
    """The UI's tokens pass the authorizer only if both name the same issuer and the client."""
    example = INFRA / "examples" / "cognito-ui"
    module = load_module(example)
    call = named_blocks(module, "module")["squall"]
    client = "${aws_cognito_user_pool_client.ui.id}"
    assert call["api_authorization"] == "JWT"
    assert call["jwt_authorizer"] == {"issuer": "${local.issuer}", "audience": [client]}
    assert call["ui_oidc"]["issuer"] == "${local.issuer}" and call["ui_oidc"]["client_id"] == client
    assert "openid" in call["ui_oidc"]["scopes"] and call["ui_oidc"]["origins"] == ["${local.login_origin}"]
    local = locals_of(module)
    assert local["issuer"] == "https://cognito-idp.${var.region}.amazonaws.com/${aws_cognito_user_pool.ui.id}"
    assert local["ui_url"] == "${module.squall.api_url}/ui/"
    app = resources(module)["aws_cognito_user_pool_client.ui"]
    assert app["generate_secret"] is False and app["allowed_oauth_flows"] == ["code"]
    assert app["callback_urls"] == ["${local.ui_url}"] and app["logout_urls"] == ["${local.ui_url}"]
    assert set(call["ui_oidc"]["scopes"]) <= set(app["allowed_oauth_scopes"])


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_uses_the_module_and_documents_the_commands(example: Path) -> None:
    module = load_module(example)
    call = named_blocks(module, "module")["squall"]
    assert call["source"] == "../../modules/squall"
    if example.name in AWS_BATCH_EXAMPLES:
        assert call["aws_batch"]["job_queue_arns"] == ["${var.job_queue_arn}"]
    readme = (example / "README.md").read_text()
    for command in ("squall package --output dist/lambda.zip", "terraform init", "terraform apply"):
        assert command in readme, f"{example.name}/README.md lacks `{command}`"
    main_variables = named_blocks(load_module(MODULE), "variable")
    for argument in call:
        assert argument in {"source", "__is_block__"} or argument in main_variables, argument


def test_scheduled_etl_flow_leaves_the_queue_to_the_deployment() -> None:
    example = INFRA / "examples" / "scheduled-etl"
    flow = load_flow_file(example / "flows" / "nightly-etl.yaml")
    batch_tasks = [t for t in flow.tasks if getattr(t, "taskRunner", None)]
    assert batch_tasks, "the example runs a task on AWS Batch"
    for task in batch_tasks:
        runner = task.model_dump(by_alias=True, exclude_none=True)["taskRunner"]
        assert runner["type"] == "io.kestra.plugin.ee.aws.runner.Batch"
        assert "jobQueueArn" not in runner  # SQUALL_RUNNERS' defaults name the queue
    readme = (example / "README.md").read_text()
    assert "sed " not in readme and "--data-binary @flows/nightly-etl.yaml" in readme


def test_scheduled_etl_schedule_matches_the_flows_trigger() -> None:
    example = INFRA / "examples" / "scheduled-etl"
    flow = load_flow_file(example / "flows" / "nightly-etl.yaml")
    [entry] = named_blocks(load_module(example), "module")["squall"]["schedules"]
    [trigger] = [t for t in flow.triggers or [] if isinstance(t, Schedule)]
    assert (entry["namespace"], entry["flow_id"], entry["trigger_id"]) == (
        flow.namespace,
        flow.id,
        trigger.id,
    )
    assert entry["timezone"] == trigger.timezone
    minute, hour, *_ = trigger.cron.split()
    assert entry["schedule_expression"].startswith(f"cron({minute} {hour} ")


# ---------------------------------------------------------------- the Google Batch example
# Its google provider is not in the offline mirror, so Terraform never validates it here: these
# assertions are what checks it (infra/examples/google-batch/README.md says so).

GOOGLE_EXAMPLE = INFRA / "examples" / "google-batch"


@pytest.fixture(scope="module")
def google_example() -> dict[str, list[Any]]:
    return load_module(GOOGLE_EXAMPLE)


def _one(body: dict[str, Any], name: str) -> dict[str, Any]:
    blocks = body[name]
    assert isinstance(blocks, list) and len(blocks) == 1, name
    return dict(blocks[0])


def test_google_example_pushes_batch_notifications_to_the_events_function(
    google_example: dict[str, list[Any]],
) -> None:
    res = resources(google_example)
    call = named_blocks(google_example, "module")["squall"]
    topic = "${google_pubsub_topic.batch_events.id}"
    # Batch publishes to the topic the runner names in every job...
    assert call["google_batch"]["notification_topic"] == topic
    # ...whose push subscription reaches POST /events/pubsub with an OIDC token that the events
    # function accepts: the same audience and service account on both sides.
    subscription = res["google_pubsub_subscription.batch_events"]
    assert subscription["topic"] == topic
    push = _one(subscription, "push_config")
    assert push["push_endpoint"] == "${module.squall.event_ingress_urls.pubsub}"
    token = _one(push, "oidc_token")
    assert token["audience"] == call["pubsub_push_audience"] == "${local.pubsub_audience}"
    assert token["service_account_email"] == call["pubsub_push_service_account"]
    assert token["service_account_email"] == "${google_service_account.push.email}"
    assert _one(subscription, "expiration_policy")["ttl"] == ""  # never expires while quiet
    # The events function acknowledges within its timeout: the ack deadline leaves it that long.
    events_timeout = _function_defaults(
        named_blocks(load_module(MODULE), "variable")["functions"]["type"], "events"
    )["timeout"]
    assert subscription["ack_deadline_seconds"] >= events_timeout


IAM_MEMBERS = {
    "google_project_iam_member": "project",
    "google_pubsub_topic_iam_member": "topic",
    "google_storage_bucket_iam_member": "bucket",
    "google_service_account_iam_member": "service account",
}
BATCH_SERVICE_AGENT = "service-${data.google_project.this.number}@gcp-sa-cloudbatch.iam.gserviceaccount.com"


def test_google_example_grants_the_roles_the_doc_lists(google_example: dict[str, list[Any]]) -> None:
    res = resources(google_example)
    job, control = "${google_service_account.job.email}", "${google_service_account.control.email}"
    granted = {
        (body["role"], body["member"], IAM_MEMBERS[name.split(".")[0]])
        for name, body in res.items()
        if name.split(".")[0] in IAM_MEMBERS and "each." not in body["role"]
    }
    assert ("roles/batch.jobsEditor", f"serviceAccount:{control}", "project") in granted
    assert ("roles/iam.serviceAccountUser", f"serviceAccount:{control}", "service account") in granted
    assert ("roles/storage.objectAdmin", f"serviceAccount:{control}", "bucket") in granted
    assert ("roles/storage.objectAdmin", f"serviceAccount:{job}", "bucket") in granted
    assert ("roles/pubsub.publisher", f"serviceAccount:{job}", "topic") in granted
    assert ("roles/pubsub.publisher", "${local.batch_service_agent}", "topic") in granted
    assert locals_of(google_example)["batch_service_agent"] == f"serviceAccount:{BATCH_SERVICE_AGENT}"
    # What every Batch job's service account needs, on the project.
    job_roles = res["google_project_iam_member.job"]
    assert job_roles["member"] == f"serviceAccount:{job}" and job_roles["role"] == "${each.value}"
    assert {"roles/batch.agentReporter", "roles/logging.logWriter"} <= set(
        re.findall(r'"(roles/[\w.]+)"', job_roles["for_each"])
    )
    # The control account may act as the jobs' account, which the jobs' VMs run as.
    acts_as = res["google_service_account_iam_member.control_runs_jobs_as_job_account"]
    assert acts_as["service_account_id"] == "${google_service_account.job.name}"
    assert named_blocks(google_example, "module")["squall"]["google_batch"]["job_service_account"] == job
    # The doc lists the same roles.
    doc = (INFRA.parent / "docs" / "runners" / "google-batch.md").read_text()
    for role in (
        "roles/batch.jobsEditor",
        "roles/iam.serviceAccountUser",
        "roles/storage.objectAdmin",
        "roles/pubsub.publisher",
        "roles/batch.agentReporter",
        "roles/logging.logWriter",
    ):
        assert f"`{role}`" in doc, role
    assert "gcp-sa-cloudbatch.iam.gserviceaccount.com" in doc


def test_google_example_federates_only_the_roles_of_the_functions_that_run_flows(
    google_example: dict[str, list[Any]],
) -> None:
    """The credential configuration is one google-auth reads as AWS federation, for the control
    account, and only the api, tick, events and schedule functions' roles may use it."""
    google_auth_aws = pytest.importorskip("google.auth.aws")
    import json

    res = resources(google_example)
    settings = locals_of(google_example)
    call = named_blocks(google_example, "module")["squall"]
    assert call["google_batch"]["credentials_config"] == "${local.credentials_config}"
    # python-hcl2 keeps the jsonencode({...}) call as text: its object of string literals, with
    # ${...} references left inside the strings, reads as JSON once its keys are quoted.
    found = re.fullmatch(r"\$\{jsonencode\((\{.*\})\)\}", settings["credentials_config"], flags=re.S)
    assert found, settings["credentials_config"]
    document = json.loads(re.sub(r"(\w+) = ", r'"\1": ', found.group(1)))
    assert document["type"] == "external_account"
    assert (
        document["audience"] == "//iam.googleapis.com/${google_iam_workload_identity_pool_provider.aws.name}"
    )
    federated = google_auth_aws.Credentials.from_info(document)
    assert federated.service_account_email == "${google_service_account.control.email}"
    binding = res["google_service_account_iam_member.control_federated"]
    assert binding["for_each"] == "${toset(local.control_functions)}"
    assert settings["control_functions"] == ["api", "tick", "events", "schedule"]
    assert binding["role"] == "roles/iam.workloadIdentityUser"
    assert binding["member"].endswith(":assumed-role/${module.squall.role_names[each.key]}")
    assert "attribute.aws_role" in binding["member"]


def test_google_example_readme_says_it_is_not_validated_offline() -> None:
    readme = (GOOGLE_EXAMPLE / "README.md").read_text()
    assert "not `terraform validate`d" in readme and "tests/infra/test_hcl.py" in readme


@pytest.mark.parametrize("variable_name", ["google_batch", "cloud_run"])
def test_the_google_deployment_labels_default_to_the_runners(variable_name: str) -> None:
    from runners.cloud_run import CloudRunOptions
    from runners.google_batch import GoogleBatchOptions

    options = {"google_batch": GoogleBatchOptions, "cloud_run": CloudRunOptions}[variable_name]
    default = options.model_fields["deployment"].default
    for module in (MODULE, SUBMODULES / "settings"):
        variable = named_blocks(load_module(module), "variable")[variable_name]
        assert f'deployment = optional(string, "{default}")' in variable["type"], module


def test_function_memory_is_what_the_cost_benchmark_sized() -> None:
    """events and schedule wait on DynamoDB, Batch and S3 for most of their time, so 256 MB
    (a smaller CPU share) costs less per task than 512 (docs/cost.md, its sizing table); the
    api keeps 1,024 MB for latency, the tick 512 for its bursts of submits. The benchmark reads
    the sizes from here, so a change shows up in its figures."""
    from benchmarks.cost import read_module

    module = read_module(MODULE)
    assert module.memory_mb == {"api": 1024, "tick": 512, "events": 256, "schedule": 256, "sweeper": 512}
    assert module.batch_rule_statuses == ("SUCCEEDED", "FAILED")
    assert module.log_level == "INFO"
    assert {"requestId", "status", "path"} <= module.access_log_format.keys()
