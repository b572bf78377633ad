# Good values produce the environment the Python runtime reads; bad values are refused with
# a message naming the rule. Each expect_failures run fails if its validation lets it pass.

variables {
  table_name  = "squall"
  bucket_name = "squall-123456789012-eu-west-1"
  aws_batch = {
    job_queue_arns     = ["arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"]
    execution_role_arn = "arn:aws:iam::123456789012:role/squall-batch-execution"
    task_role_arn      = "arn:aws:iam::123456789012:role/squall-batch-task"
  }
}

run "defaults" {
  command = plan

  assert {
    condition     = output.environment["SQUALL_STORE"] == "dynamodb" && output.environment["SQUALL_TABLE"] == "squall" && output.environment["SQUALL_AUTH"] == "gateway"
    error_message = "The functions run the DynamoDB store, in gateway auth mode."
  }

  assert {
    condition     = output.environment["SQUALL_RECONCILE_AFTER"] == "300" && output.environment["SQUALL_SUBMIT_GRACE"] == "120" && output.environment["SQUALL_FINISHED_TTL_DAYS"] == "30"
    error_message = "Defaults must match runtime.py's."
  }

  assert {
    condition = jsondecode(output.environment["SQUALL_RUNNERS"]) == {
      "aws-batch" = {
        defaults = {
          jobQueueArn      = "arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"
          executionRoleArn = "arn:aws:iam::123456789012:role/squall-batch-execution"
          taskRoleArn      = "arn:aws:iam::123456789012:role/squall-batch-task"
          logGroupName     = "/aws/batch/job"
          bucket           = "squall-123456789012-eu-west-1"
          stagingPrefix    = "squall/jobs"
        }
      }
    }
    error_message = "SQUALL_RUNNERS holds the AwsBatchRunner keywords: task-option defaults under `defaults`."
  }

  assert {
    condition     = output.functions.api.handler == "control_plane.handlers.api.handler" && !output.functions.api.async && output.functions.tick.async
    error_message = "Handlers and async flags."
  }

  assert {
    condition     = output.api_integration_timeout_ms == 29000 && output.lambda_runtime == "python3.12"
    error_message = "The integration waits as long as the api function may run."
  }

  assert {
    condition     = output.environment["SQUALL_SUBMIT_BUDGET"] == "100" && output.environment["SQUALL_TICK_SUBMITS"] == "500"
    error_message = "Submit budget and tick submissions default to runtime.py's 100 and 500."
  }

  assert {
    condition     = output.functions.tick.reserved_concurrent_executions == 1 && alltrue([for k, f in output.functions : f.reserved_concurrent_executions == -1 if k != "tick"])
    error_message = "Only the tick reserves concurrency, 1, so that two ticks never overlap."
  }

  assert {
    # 500 jobs x (find + submit) at ~40 AWS Batch calls a second is ~25 s, plus polling.
    condition     = output.functions.tick.timeout >= 60 && output.functions.tick.timeout < 120
    error_message = "The tick's default timeout covers its submissions and polling, and stays under the submit grace."
  }

  assert {
    condition     = output.logging == { log_format = "JSON", application_log_level = "INFO", system_log_level = "WARN" }
    error_message = "Every function logs JSON at INFO (the handlers' structured lines depend on the JSON format), and Lambda's own START/REPORT lines only from WARN (issue 28: their ingestion cost)."
  }

  assert {
    condition     = output.snap_start == false
    error_message = "SnapStart is opt-in: Python SnapStart bills snapshot caching and restores."
  }

  assert {
    condition     = output.environment["SQUALL_SECRETS"] == "env,secretsmanager" && output.environment["SQUALL_SECRETS_PREFIX"] == "squall/" && !contains(keys(output.environment), "SQUALL_AWS_ENDPOINT_ALLOWLIST")
    error_message = "By default secret() reads SECRET_<NAME> variables, then Secrets Manager under squall/; no flow may name an endpoint."
  }

  assert {
    condition     = alltrue([for k in ["api", "tick", "events"] : output.environments[k] == output.environment]) && merge(output.environments.schedule, { SQUALL_SUBMIT_SECONDS = output.environment.SQUALL_SUBMIT_SECONDS }) == output.environment && output.environments.schedule.SQUALL_SUBMIT_SECONDS == "5" && length(setintersection(keys(output.environments.sweeper), ["SQUALL_SECRETS", "SQUALL_SECRETS_PREFIX"])) == 0
    error_message = "The four functions that run flows share the environment (but the schedule function's submit seconds); the sweeper gets no secrets settings."
  }

  assert {
    condition     = alltrue([for k, env in output.environments : lookup(env, "PYDANTIC_DISABLE_PLUGINS", "") == "__all__"])
    error_message = "Every function, the sweeper included, starts without pydantic's plugin scan (PYDANTIC_DISABLE_PLUGINS=__all__)."
  }
}

run "log_levels_and_matching_powertools_level" {
  command = plan

  variables {
    application_log_level       = "WARN"
    system_log_level            = "WARN"
    extra_environment_variables = { POWERTOOLS_LOG_LEVEL = "warning", POWERTOOLS_SERVICE_NAME = "squall" }
  }

  assert {
    condition     = output.logging.application_log_level == "WARN" && output.logging.system_log_level == "WARN" && output.logging.log_format == "JSON"
    error_message = "The chosen levels reach the logging_config; the format stays JSON."
  }

  assert {
    condition     = output.environment["POWERTOOLS_LOG_LEVEL"] == "warning"
    error_message = "A POWERTOOLS_LOG_LEVEL equal to the application level (WARNING is Python's WARN) is passed on."
  }
}

run "more_tick_submissions_with_a_longer_tick" {
  command = plan

  variables {
    tick_submits         = 2000
    submit_budget        = 250
    functions            = { tick = { timeout = 140 } }
    submit_grace_seconds = 150
  }

  assert {
    condition     = output.environment["SQUALL_TICK_SUBMITS"] == "2000" && output.environment["SQUALL_SUBMIT_BUDGET"] == "250"
    error_message = "The submission settings reach the environment."
  }

  assert {
    condition     = output.functions.tick.reserved_concurrent_executions == 1
    error_message = "Overriding the tick's timeout keeps its reserved concurrency of 1."
  }
}

run "tick_unreserved_where_the_account_cannot_reserve" {
  command = plan

  variables {
    functions = { tick = { reserved_concurrent_executions = -1 } }
  }

  assert {
    condition     = output.functions.tick.reserved_concurrent_executions == -1
    error_message = "-1 stays possible for accounts without concurrency to reserve."
  }
}

run "no_batch_no_bucket" {
  command = plan

  variables {
    aws_batch   = null
    bucket_name = null
  }

  assert {
    condition     = output.environment["SQUALL_RUNNERS"] == "{}" && !contains(keys(output.environment), "SQUALL_BUCKET")
    error_message = "No runner options and no bucket variable when there is neither."
  }
}

run "schedules_keyed_with_payload" {
  command = plan

  variables {
    schedules = [{ namespace = "squall.samples", flow_id = "nightly-etl", trigger_id = "every-night", schedule_expression = "cron(0 2 * * ? *)", timezone = "Europe/Paris" }]
  }

  assert {
    condition     = jsondecode(output.schedules["squall.samples/nightly-etl/every-night"].input) == { namespace = "squall.samples", flowId = "nightly-etl", triggerId = "every-night" }
    error_message = "The Scheduler sends the schedule Lambda its documented payload."
  }
}

run "jwt_with_settings" {
  command = plan

  variables {
    api_authorization = "JWT"
    jwt_authorizer    = { issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc", audience = ["client-id"] }
  }

  assert {
    condition     = output.jwt_authorizer.identity_source == "$request.header.Authorization"
    error_message = "The bearer token comes from the Authorization header by default."
  }
}

run "ui_oidc_for_the_api_function" {
  command = plan

  variables {
    api_authorization = "JWT"
    jwt_authorizer    = { issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc", audience = ["client-id"] }
    ui_oidc           = { issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc", client_id = "client-id" }
  }

  assert {
    condition = jsondecode(output.environments.api["SQUALL_UI_OIDC"]) == {
      issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc", client_id = "client-id",
      scopes = ["openid"], token = "access", origins = []
    }
    error_message = "The api function gets the UI login as control_plane/ui/oidc.py reads it."
  }

  assert {
    condition     = alltrue([for k, env in output.environments : !contains(keys(env), "SQUALL_UI_OIDC") if k != "api"])
    error_message = "Only the api function serves the UI."
  }
}

run "rejects_ui_oidc_for_another_client" {
  command = plan
  variables {
    api_authorization = "JWT"
    jwt_authorizer    = { issuer = "https://issuer.example.com", audience = ["api-client"] }
    ui_oidc           = { issuer = "https://issuer.example.com", client_id = "ui-client" }
  }
  expect_failures = [var.ui_oidc]
}

run "rejects_ui_oidc_without_jwt" {
  command = plan
  variables {
    ui_oidc = { issuer = "https://issuer.example.com", client_id = "ui-client" }
  }
  expect_failures = [var.ui_oidc]
}

run "rejects_job_queue_name_instead_of_arn" {
  command = plan
  variables {
    aws_batch = { job_queue_arns = ["squall-fargate"] }
  }
  expect_failures = [var.aws_batch]
}

run "rejects_empty_job_queues" {
  command = plan
  variables {
    aws_batch = { job_queue_arns = [] }
  }
  expect_failures = [var.aws_batch]
}

run "rejects_default_queue_outside_list" {
  command = plan
  variables {
    aws_batch = {
      job_queue_arns        = ["arn:aws:batch:eu-west-1:123456789012:job-queue/a"]
      default_job_queue_arn = "arn:aws:batch:eu-west-1:123456789012:job-queue/b"
    }
  }
  expect_failures = [var.aws_batch]
}

run "rejects_role_name_instead_of_arn" {
  command = plan
  variables {
    aws_batch = {
      job_queue_arns = ["arn:aws:batch:eu-west-1:123456789012:job-queue/a"]
      task_role_arn  = "squall-batch-task"
    }
  }
  expect_failures = [var.aws_batch]
}

run "rejects_no_definition_at_all" {
  command = plan
  variables {
    aws_batch = {
      job_queue_arns           = ["arn:aws:batch:eu-west-1:123456789012:job-queue/a"]
      register_job_definitions = false
    }
  }
  expect_failures = [var.aws_batch]
}

run "rejects_retention_cloudwatch_does_not_offer" {
  command = plan
  variables {
    log_retention_in_days = 45
  }
  expect_failures = [var.log_retention_in_days]
}

run "rejects_jwt_without_settings" {
  command = plan
  variables {
    api_authorization = "JWT"
  }
  expect_failures = [var.jwt_authorizer]
}

run "rejects_jwt_with_empty_audience" {
  command = plan
  variables {
    api_authorization = "JWT"
    jwt_authorizer    = { issuer = "https://issuer.example.com", audience = [] }
  }
  expect_failures = [var.jwt_authorizer]
}

run "rejects_jwt_with_http_issuer" {
  command = plan
  variables {
    api_authorization = "JWT"
    jwt_authorizer    = { issuer = "http://issuer.example.com", audience = ["x"] }
  }
  expect_failures = [var.jwt_authorizer]
}

run "rejects_no_authorization" {
  command = plan
  variables {
    api_authorization = "NONE"
  }
  expect_failures = [var.api_authorization]
}

run "rejects_memory_below_lambda_minimum" {
  command = plan
  variables {
    functions = { tick = { memory_size = 64 } }
  }
  expect_failures = [var.functions]
}

run "rejects_fractional_memory" {
  command = plan
  variables {
    functions = { tick = { memory_size = 1000.5 } }
  }
  expect_failures = [var.functions]
}

run "rejects_api_timeout_over_gateway_limit" {
  command = plan
  variables {
    functions = { api = { timeout = 60 } }
  }
  expect_failures = [var.functions]
}

run "rejects_submit_grace_shorter_than_a_timeout" {
  command = plan
  variables {
    functions = { tick = { timeout = 300 } }
  }
  expect_failures = [var.submit_grace_seconds]
}

run "rejects_old_runtime" {
  command = plan
  variables {
    lambda_runtime = "python3.9"
  }
  expect_failures = [var.lambda_runtime]
}

run "rejects_kms_alias" {
  command = plan
  variables {
    kms_key_arn = "alias/squall"
  }
  expect_failures = [var.kms_key_arn]
}

run "rejects_unix_cron_in_scheduler" {
  command = plan
  variables {
    schedules = [{ namespace = "squall.samples", flow_id = "nightly-etl", trigger_id = "every-night", schedule_expression = "0 2 * * *" }]
  }
  expect_failures = [var.schedules]
}

run "rejects_duplicate_schedules" {
  command = plan
  variables {
    schedules = [
      { namespace = "a", flow_id = "f", trigger_id = "t", schedule_expression = "rate(1 hour)" },
      { namespace = "a", flow_id = "f", trigger_id = "t", schedule_expression = "rate(2 hours)" },
    ]
  }
  expect_failures = [var.schedules]
}

run "rejects_uppercase_namespace" {
  command = plan
  variables {
    schedules = [{ namespace = "Squall", flow_id = "f", trigger_id = "t", schedule_expression = "rate(1 hour)" }]
  }
  expect_failures = [var.schedules]
}

run "rejects_squall_variables_in_extra_environment" {
  command = plan
  variables {
    extra_environment_variables = { SQUALL_AUTH = "none" }
  }
  expect_failures = [var.extra_environment_variables]
}

run "rejects_body_limit_over_api_gateway_payload" {
  command = plan
  variables {
    max_body_bytes = 20000000
  }
  expect_failures = [var.max_body_bytes]
}

run "rejects_slow_tick" {
  command = plan
  variables {
    tick_schedule_expression = "rate(1 day)"
  }
  expect_failures = [var.tick_schedule_expression]
}

run "rejects_overlapping_ticks" {
  command = plan
  variables {
    functions = { tick = { reserved_concurrent_executions = 2 } }
  }
  expect_failures = [var.functions]
}

run "fan_out_settings_reach_the_environment" {
  command = plan

  variables {
    fanout_chunk   = 25
    submit_seconds = 0.5
    tick_seconds   = 20
  }

  assert {
    condition     = output.environment["SQUALL_FANOUT_CHUNK"] == "25" && output.environment["SQUALL_SUBMIT_SECONDS"] == "0.5" && output.environment["SQUALL_TICK_SECONDS"] == "20"
    error_message = "The fan-out settings reach the environment."
  }
}

run "the_schedule_function_submits_for_longer" {
  command = plan

  variables {
    submit_seconds          = 0.5
    schedule_submit_seconds = 7
  }

  assert {
    condition     = output.environments["schedule"]["SQUALL_SUBMIT_SECONDS"] == "7" && output.environments["api"]["SQUALL_SUBMIT_SECONDS"] == "0.5" && output.environments["events"]["SQUALL_SUBMIT_SECONDS"] == "0.5" && output.environments["tick"]["SQUALL_SUBMIT_SECONDS"] == "0.5"
    error_message = "Only the schedule function gets schedule_submit_seconds."
  }
}

run "rejects_a_schedule_submit_time_its_timeout_cannot_hold" {
  command = plan
  variables {
    schedule_submit_seconds = 45
  }
  expect_failures = [var.schedule_submit_seconds]
}

run "rejects_a_tick_budget_the_tick_timeout_cannot_hold" {
  command = plan
  variables {
    tick_seconds = 100
  }
  expect_failures = [var.tick_seconds]
}

run "rejects_zero_fanout_chunk" {
  command = plan
  variables {
    fanout_chunk = 0
  }
  expect_failures = [var.fanout_chunk]
}

run "rejects_zero_submit_budget" {
  command = plan
  variables {
    submit_budget = 0
  }
  expect_failures = [var.submit_budget]
}

run "rejects_fractional_tick_submits" {
  command = plan
  variables {
    tick_submits = 10.5
  }
  expect_failures = [var.tick_submits]
}

run "rejects_tick_submits_the_tick_timeout_cannot_cover" {
  command = plan
  variables {
    tick_submits = 3000 # ~150 s of Batch calls, with the default 110 s tick
  }
  expect_failures = [var.tick_submits]
}

run "rejects_tick_timeout_too_short_for_default_submits" {
  command = plan
  variables {
    functions = { tick = { timeout = 30 } }
  }
  expect_failures = [var.tick_submits, var.tick_seconds]
}

run "rejects_python_level_name" {
  command = plan
  variables {
    application_log_level = "WARNING"
  }
  expect_failures = [var.application_log_level]
}

run "rejects_system_level_lambda_lacks" {
  command = plan
  variables {
    system_log_level = "ERROR"
  }
  expect_failures = [var.system_log_level]
}

run "rejects_lambda_log_level_in_extra_environment" {
  command = plan
  variables {
    extra_environment_variables = { AWS_LAMBDA_LOG_LEVEL = "DEBUG" }
  }
  expect_failures = [var.extra_environment_variables]
}

run "rejects_powertools_level_other_than_lambdas" {
  command = plan
  variables {
    extra_environment_variables = { POWERTOOLS_LOG_LEVEL = "DEBUG" }
  }
  expect_failures = [var.extra_environment_variables]
}

# secret() backends and the endpoint allowlist: only the functions that run flows get them.

run "secrets_and_endpoints" {
  command = plan

  variables {
    secret_backends             = ["ssm", "env"]
    secrets_prefix              = "/prod/squall/"
    secrets_kms_key_arns        = ["arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"]
    aws_endpoint_allowlist      = ["https://vpce-0abc.batch.eu-west-1.vpce.amazonaws.com", "http://localhost:5000"]
    extra_environment_variables = { SECRET_DB_PASSWORD = "czNjcjN0", POWERTOOLS_SERVICE_NAME = "squall" }
  }

  assert {
    condition     = output.environment["SQUALL_SECRETS"] == "ssm,env" && output.environment["SQUALL_SECRETS_PREFIX"] == "/prod/squall/"
    error_message = "The backends keep their order; the prefix is passed as given (the runtime strips the / for SSM)."
  }

  assert {
    condition     = output.environment["SQUALL_AWS_ENDPOINT_ALLOWLIST"] == "https://vpce-0abc.batch.eu-west-1.vpce.amazonaws.com,http://localhost:5000"
    error_message = "The allowlist is comma-separated, as runtime.py splits it."
  }

  assert {
    condition     = output.environments.api["SECRET_DB_PASSWORD"] == "czNjcjN0" && output.environments.tick["SQUALL_SECRETS"] == "ssm,env"
    error_message = "The functions that run flows get the env backend's SECRET_<NAME> variables and the secrets settings."
  }

  assert {
    condition     = length([for k in keys(output.environments.sweeper) : k if startswith(k, "SECRET_") || contains(["SQUALL_SECRETS", "SQUALL_SECRETS_PREFIX", "SQUALL_AWS_ENDPOINT_ALLOWLIST"], k)]) == 0 && output.environments.sweeper["POWERTOOLS_SERVICE_NAME"] == "squall" && output.environments.sweeper["SQUALL_TABLE"] == "squall"
    error_message = "The sweeper keeps the other settings and variables, without any secret, secrets setting or endpoint."
  }

  assert {
    condition     = jsonencode(output.secrets_kms_key_arns) == jsonencode(["arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"]) && output.functions.api.runs_flows && !output.functions.sweeper.runs_flows
    error_message = "The validated key list reaches the policies; only the sweeper does not run flows."
  }
}

run "aws_like_prefix_without_parameter_store" {
  command = plan

  variables {
    secret_backends = ["secretsmanager"]
    secrets_prefix  = "aws-team/squall/"
  }

  assert {
    condition     = output.secrets_prefix == "aws-team/squall/"
    error_message = "Only Parameter Store reserves names beginning with aws or ssm."
  }
}

run "rejects_file_backend" {
  command = plan
  variables {
    secret_backends = ["env", "file"]
  }
  expect_failures = [var.secret_backends]
}

run "rejects_unknown_backend" {
  command = plan
  variables {
    secret_backends = ["vault"]
  }
  expect_failures = [var.secret_backends]
}

run "rejects_no_backend" {
  command = plan
  variables {
    secret_backends = []
  }
  expect_failures = [var.secret_backends]
}

run "rejects_a_backend_twice" {
  command = plan
  variables {
    secret_backends = ["env", "secretsmanager", "env"]
  }
  expect_failures = [var.secret_backends]
}

run "rejects_empty_secrets_prefix" {
  command = plan
  variables {
    secrets_prefix = ""
  }
  expect_failures = [var.secrets_prefix]
}

run "rejects_wildcard_in_secrets_prefix" {
  command = plan
  variables {
    secrets_prefix = "squall/*"
  }
  expect_failures = [var.secrets_prefix]
}

run "rejects_double_slash_in_secrets_prefix" {
  command = plan
  variables {
    secrets_prefix = "//squall/"
  }
  expect_failures = [var.secrets_prefix]
}

run "rejects_reserved_parameter_prefix" {
  command = plan
  variables {
    secret_backends = ["ssm"]
    secrets_prefix  = "/SSM/squall/"
  }
  expect_failures = [var.secrets_prefix]
}

run "rejects_kms_alias_for_secrets" {
  command = plan
  variables {
    secrets_kms_key_arns = ["arn:aws:kms:eu-west-1:123456789012:alias/aws/secretsmanager"]
  }
  expect_failures = [var.secrets_kms_key_arns]
}

run "rejects_secrets_key_without_aws_backend" {
  command = plan
  variables {
    secret_backends      = ["env"]
    secrets_kms_key_arns = ["arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"]
  }
  expect_failures = [var.secrets_kms_key_arns]
}

run "rejects_endpoint_that_is_not_http" {
  command = plan
  variables {
    aws_endpoint_allowlist = ["ftp://batch.example.com"]
  }
  expect_failures = [var.aws_endpoint_allowlist]
}

run "rejects_endpoint_with_a_comma_or_credentials" {
  command = plan
  variables {
    aws_endpoint_allowlist = ["https://a.example.com,https://b.example.com", "https://user:pw@batch.example.com"]
  }
  expect_failures = [var.aws_endpoint_allowlist]
}

run "rejects_endpoints_without_batch" {
  command = plan
  variables {
    aws_batch              = null
    aws_endpoint_allowlist = ["https://batch.example.com"]
  }
  expect_failures = [var.aws_endpoint_allowlist]
}

# ------------------------------------------------------------------ deployment storage

run "storage_defaults_to_a_prefix_of_the_bucket" {
  command = plan

  assert {
    condition     = output.environment["SQUALL_STORAGE"] == "s3://squall-123456789012-eu-west-1/squall/storage" && output.storage == { url = "s3://squall-123456789012-eu-west-1/squall/storage", bucket = "squall-123456789012-eu-west-1", prefix = "squall/storage/" }
    error_message = "Without var.storage, the storage is squall/storage/ of the module's bucket (expired with the executions by its lifecycle rule)."
  }

  assert {
    condition     = !contains(keys(output.environment), "SQUALL_STORAGE_READ") && !contains(keys(output.environments["sweeper"]), "SQUALL_STORAGE")
    error_message = "No read allowlist by default; the sweeper, which runs no flow, gets no storage."
  }
}

run "storage_and_read_allowlist_as_given" {
  command = plan
  variables {
    storage      = "s3://tenant-data/prod/squall/"
    storage_read = ["s3://shared-datasets/public", "s3://reference-data"]
  }

  assert {
    condition     = output.environment["SQUALL_STORAGE"] == "s3://tenant-data/prod/squall" && output.storage.prefix == "prod/squall/"
    error_message = "var.storage is the root, its key prefix ends in one /."
  }

  assert {
    condition     = output.environment["SQUALL_STORAGE_READ"] == "s3://shared-datasets/public/,s3://reference-data/" && output.storage_read == [{ bucket = "shared-datasets", prefix = "public/" }, { bucket = "reference-data", prefix = "" }]
    error_message = "The allowlist is passed as prefixes ending in /, so public/ never admits public-other/."
  }
}

run "no_bucket_no_storage" {
  command = plan
  variables {
    bucket_name = null
    aws_batch   = null
  }

  assert {
    condition     = output.storage == null && !contains(keys(output.environment), "SQUALL_STORAGE")
    error_message = "Without a bucket nor var.storage, SQUALL_STORAGE is unset."
  }
}

run "rejects_a_storage_that_is_not_an_s3_url" {
  command = plan
  variables {
    storage = "gs://bucket/prefix"
  }
  expect_failures = [var.storage]
}

run "rejects_a_storage_with_dot_dot" {
  command = plan
  variables {
    storage = "s3://bucket/a/../b"
  }
  expect_failures = [var.storage]
}

run "rejects_a_read_prefix_with_a_comma" {
  command = plan
  variables {
    storage_read = ["s3://bucket/a,s3://other/b"]
  }
  expect_failures = [var.storage_read]
}

run "event_ingress_for_the_events_function_only" {
  command = plan

  variables {
    pubsub_push_audience        = "https://squall.example.com/events/pubsub"
    pubsub_push_service_account = "pubsub-push@squall-project.iam.gserviceaccount.com"
    webhook_secret_arn          = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:squall-webhook-AbCdEf"
  }

  assert {
    condition     = output.environments["events"]["SQUALL_WEBHOOK_SECRETS"] == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:squall-webhook-AbCdEf" && output.environments["events"]["SQUALL_PUBSUB_AUDIENCE"] == "https://squall.example.com/events/pubsub"
    error_message = "The events function gets the ingress settings."
  }

  assert {
    condition     = alltrue([for k in ["api", "tick", "schedule", "sweeper"] : !contains(keys(output.environments[k]), "SQUALL_WEBHOOK_SECRETS")]) && output.ingress.enabled && output.ingress.integration_timeout_ms == 30000
    error_message = "No other function gets them; the ingress is on."
  }
}

run "rejects_pubsub_audience_without_service_account" {
  command = plan
  variables {
    pubsub_push_audience = "https://squall.example.com/events/pubsub"
  }
  expect_failures = [var.pubsub_push_audience]
}

run "rejects_service_account_that_is_not_an_email" {
  command = plan
  variables {
    pubsub_push_audience        = "https://squall.example.com/events/pubsub"
    pubsub_push_service_account = "pubsub-push"
  }
  expect_failures = [var.pubsub_push_service_account]
}

run "rejects_webhook_secret_name_instead_of_arn" {
  command = plan
  variables {
    webhook_secret_arn = "squall/webhook"
  }
  expect_failures = [var.webhook_secret_arn]
}

run "google_batch_with_events_and_federated_credentials" {
  command = plan

  variables {
    pubsub_push_audience        = "squall-pubsub-push"
    pubsub_push_service_account = "squall-pubsub-push@my-project.iam.gserviceaccount.com"
    google_batch = {
      project_id          = "my-project"
      region              = "europe-west1"
      bucket              = "my-squall-staging"
      notification_topic  = "projects/my-project/topics/squall-batch-events"
      job_service_account = "squall-batch-job@my-project.iam.gserviceaccount.com"
      credentials_config = jsonencode({
        type               = "external_account"
        audience           = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/squall-aws/providers/aws"
        subject_token_type = "urn:ietf:params:aws:token-type:aws4_request"
        token_url          = "https://sts.googleapis.com/v1/token"
        credential_source = {
          environment_id                 = "aws1"
          regional_cred_verification_url = "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
        }
      })
    }
  }

  assert {
    condition = jsondecode(output.environment["SQUALL_RUNNERS"])["google-batch"].defaults == {
      projectId         = "my-project"
      region            = "europe-west1"
      bucket            = "my-squall-staging"
      notificationTopic = "projects/my-project/topics/squall-batch-events"
      deployment        = "squall"
      jobServiceAccount = "squall-batch-job@my-project.iam.gserviceaccount.com"
    }
    error_message = "SQUALL_RUNNERS holds the GoogleBatchRunner's task-option defaults, with the taskRunner option names."
  }

  assert {
    condition     = jsondecode(output.environment["SQUALL_RUNNERS"])["google-batch"].credentials_config.type == "external_account" && jsondecode(output.environment["SQUALL_RUNNERS"])["google-batch"].credentials_config.credential_source.environment_id == "aws1"
    error_message = "The credential configuration reaches the runner's credentials_config keyword as a document, not as text."
  }

  assert {
    condition     = contains(keys(jsondecode(output.environment["SQUALL_RUNNERS"])), "aws-batch") && output.google_batch.credentials_config.type == "external_account"
    error_message = "Both runners are configured side by side."
  }
}

run "google_batch_minimal" {
  command = plan

  variables {
    aws_batch    = null
    google_batch = { project_id = "my-project", region = "us-central1", bucket = "my-squall-staging" }
  }

  assert {
    condition     = jsondecode(output.environment["SQUALL_RUNNERS"]) == { "google-batch" = { defaults = { projectId = "my-project", region = "us-central1", bucket = "my-squall-staging", deployment = "squall" } } }
    error_message = "Without a topic, a job service account or credentials, only the where and the deployment label; the runner then uses the application default credentials."
  }
}

run "rejects_google_project_number" {
  command = plan
  variables {
    google_batch = { project_id = "123456789012", region = "europe-west1", bucket = "my-squall-staging" }
  }
  expect_failures = [var.google_batch]
}

run "rejects_google_zone_as_region" {
  command = plan
  variables {
    google_batch = { project_id = "my-project", region = "europe-west1-b", bucket = "my-squall-staging" }
  }
  expect_failures = [var.google_batch]
}

run "rejects_gs_url_as_bucket" {
  command = plan
  variables {
    google_batch = { project_id = "my-project", region = "europe-west1", bucket = "gs://my-squall-staging/squall" }
  }
  expect_failures = [var.google_batch]
}

run "rejects_bare_topic_name" {
  command = plan
  variables {
    pubsub_push_audience        = "squall-pubsub-push"
    pubsub_push_service_account = "squall-pubsub-push@my-project.iam.gserviceaccount.com"
    google_batch                = { project_id = "my-project", region = "europe-west1", bucket = "my-squall-staging", notification_topic = "squall-batch-events" }
  }
  expect_failures = [var.google_batch]
}

run "rejects_topic_without_pubsub_ingress" {
  command = plan
  variables {
    google_batch = { project_id = "my-project", region = "europe-west1", bucket = "my-squall-staging", notification_topic = "projects/my-project/topics/squall-batch-events" }
  }
  expect_failures = [var.google_batch]
}

run "rejects_bad_deployment_label" {
  command = plan
  variables {
    google_batch = { project_id = "my-project", region = "europe-west1", bucket = "my-squall-staging", deployment = "Prod Squall" }
  }
  expect_failures = [var.google_batch]
}

run "rejects_service_account_key_as_credentials_config" {
  command = plan
  variables {
    google_batch = {
      project_id         = "my-project"
      region             = "europe-west1"
      bucket             = "my-squall-staging"
      credentials_config = jsonencode({ type = "service_account", project_id = "my-project", private_key = "-----BEGIN PRIVATE KEY-----" })
    }
  }
  expect_failures = [var.google_batch]
}

run "rejects_credentials_config_that_is_not_json" {
  command = plan
  variables {
    google_batch = { project_id = "my-project", region = "europe-west1", bucket = "my-squall-staging", credentials_config = "/home/me/cred.json" }
  }
  expect_failures = [var.google_batch]
}
