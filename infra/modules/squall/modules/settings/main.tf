locals {
  # Handlers as the package lays them out (control_plane/handlers/*.py, `handler` each).
  # `async` functions are invoked by EventBridge or the Scheduler: their failed events go to
  # a dead-letter queue. The sweeper reads the table's stream through an event source
  # mapping, whose failed batches go to a queue too. The api function is invoked
  # synchronously by API Gateway, where a DLQ never fires. `runs_flows`: the function runs the
  # service (renders expressions, submits jobs), so it gets the secrets and endpoint settings
  # and their permissions; the sweeper only purges expired executions.
  function_roles = {
    api      = { handler = "control_plane.handlers.api.handler", async = false, dead_letters = false, runs_flows = true }
    tick     = { handler = "control_plane.handlers.tick.handler", async = true, dead_letters = true, runs_flows = true }
    events   = { handler = "control_plane.handlers.events.handler", async = true, dead_letters = true, runs_flows = true }
    schedule = { handler = "control_plane.handlers.schedule.handler", async = true, dead_letters = true, runs_flows = true }
    sweeper  = { handler = "control_plane.handlers.sweeper.handler", async = false, dead_letters = true, runs_flows = false }
  }

  functions = {
    for key, role in local.function_roles : key => merge(role, var.functions[key])
  }

  # Prefixes inside the bucket. The store offloads large outputs under squall/outputs/ (its
  # default s3_prefix); Batch jobs stage files under squall/jobs/<job>/ (the runner's
  # stagingPrefix, set below). Distinct prefixes let IAM grant each use only what it needs.
  store_prefix   = "squall/outputs/"
  staging_prefix = "squall/jobs"

  # The deployment storage (runners/storage): output files and API uploads, under
  # squall/storage/ of the module's bucket unless var.storage names another place.
  storage_url   = var.storage != null ? trimsuffix(var.storage, "/") : (var.bucket_name == null ? null : "s3://${var.bucket_name}/squall/storage")
  storage_parts = local.storage_url == null ? null : regex("^s3://([^/]+)/?(.*)$", local.storage_url)
  storage = local.storage_url == null ? null : {
    url    = local.storage_url
    bucket = local.storage_parts[0]
    prefix = local.storage_parts[1] == "" ? "" : "${trimsuffix(local.storage_parts[1], "/")}/"
  }
  storage_read = [
    for u in var.storage_read : {
      bucket = regex("^s3://([^/]+)/?(.*)$", u)[0]
      prefix = regex("^s3://([^/]+)/?(.*)$", u)[1] == "" ? "" : "${trimsuffix(regex("^s3://([^/]+)/?(.*)$", u)[1], "/")}/"
    }
  ]

  batch = var.aws_batch == null ? null : {
    job_queue_arns           = distinct(var.aws_batch.job_queue_arns)
    default_job_queue_arn    = coalesce(var.aws_batch.default_job_queue_arn, var.aws_batch.job_queue_arns[0])
    job_definition_arns      = distinct(var.aws_batch.job_definition_arns)
    register_job_definitions = var.aws_batch.register_job_definitions
    execution_role_arn       = var.aws_batch.execution_role_arn
    task_role_arn            = var.aws_batch.task_role_arn
    compute_environment_arn  = var.aws_batch.compute_environment_arn
    log_group_name           = var.aws_batch.log_group_name
  }

  # SQUALL_RUNNERS is "runner name -> constructor keywords" (RunnerRegistry builds
  # `cls(**options)`). AwsBatchRunner takes task-option defaults under `defaults`, with the
  # taskRunner option names: a task's own options win, and the queue, bucket, staging
  # prefix, roles and log group apply to every task that does not set them. A flow may
  # leave them all out (`taskRunner: {type: ...Batch}`): the service validates the task's
  # options merged over these defaults when it submits.
  batch_defaults = local.batch == null ? null : {
    for k, v in {
      jobQueueArn           = local.batch.default_job_queue_arn
      jobDefinitionArn      = length(local.batch.job_definition_arns) == 1 && !local.batch.register_job_definitions ? local.batch.job_definition_arns[0] : null
      executionRoleArn      = local.batch.execution_role_arn
      taskRoleArn           = local.batch.task_role_arn
      computeEnvironmentArn = local.batch.compute_environment_arn
      logGroupName          = local.batch.log_group_name
      bucket                = var.bucket_name
      stagingPrefix         = var.bucket_name == null ? null : local.staging_prefix
    } : k => v if v != null
  }

  # GoogleBatchRunner takes the same `defaults`, with its taskRunner option names, and the
  # deployment's credential configuration as the `credentials_config` keyword (decoded: the
  # runner wants the document, not its text). Nothing of it is a secret.
  google_batch = var.google_batch == null ? null : {
    project_id          = var.google_batch.project_id
    region              = var.google_batch.region
    bucket              = var.google_batch.bucket
    notification_topic  = var.google_batch.notification_topic
    deployment          = var.google_batch.deployment
    job_service_account = var.google_batch.job_service_account
    credentials_config  = var.google_batch.credentials_config == null ? null : jsondecode(var.google_batch.credentials_config)
  }

  google_batch_defaults = local.google_batch == null ? null : {
    for k, v in {
      projectId         = local.google_batch.project_id
      region            = local.google_batch.region
      bucket            = local.google_batch.bucket
      notificationTopic = local.google_batch.notification_topic
      deployment        = local.google_batch.deployment
      jobServiceAccount = local.google_batch.job_service_account
    } : k => v if v != null
  }

  # CloudRunRunner: the same shape, its option names.
  cloud_run_defaults = var.cloud_run == null ? null : {
    for k, v in {
      projectId         = var.cloud_run.project_id
      region            = var.cloud_run.region
      bucket            = var.cloud_run.bucket
      deployment        = var.cloud_run.deployment
      jobServiceAccount = var.cloud_run.job_service_account
    } : k => v if v != null
  }

  runners = merge(
    local.batch == null ? {} : { "aws-batch" = { defaults = local.batch_defaults } },
    local.google_batch == null ? {} : {
      "google-batch" = merge(
        { defaults = local.google_batch_defaults },
        local.google_batch.credentials_config == null ? {} : { credentials_config = local.google_batch.credentials_config },
      )
    },
    var.cloud_run == null ? {} : {
      "cloud-run" = merge(
        { defaults = local.cloud_run_defaults },
        var.cloud_run.credentials_config == null ? {} : { credentials_config = jsondecode(var.cloud_run.credentials_config) },
      )
    },
  )

  # Exactly the variables control_plane/runtime.py reads (Settings fields); the
  # tests check every name against Settings.model_fields. The same environment for the four
  # functions that run flows: they build the same runtime, and a setting one of them ignores
  # costs nothing (but the schedule function's SQUALL_SUBMIT_SECONDS: `environments`). The sweeper's lacks the secrets and endpoint settings (below).
  squall_environment = merge(
    {
      SQUALL_STORE             = "dynamodb"
      SQUALL_TABLE             = var.table_name
      SQUALL_AUTH              = "gateway"
      SQUALL_MAX_BODY_BYTES    = tostring(var.max_body_bytes)
      SQUALL_RECONCILE_AFTER   = tostring(var.reconcile_after_seconds)
      SQUALL_SUBMIT_GRACE      = tostring(var.submit_grace_seconds)
      SQUALL_SUBMIT_BUDGET     = tostring(var.submit_budget)
      SQUALL_TICK_SUBMITS      = tostring(var.tick_submits)
      SQUALL_FANOUT_CHUNK      = tostring(var.fanout_chunk)
      SQUALL_SUBMIT_SECONDS    = tostring(var.submit_seconds)
      SQUALL_TICK_SECONDS      = tostring(var.tick_seconds)
      SQUALL_FINISHED_TTL_DAYS = tostring(var.finished_ttl_days)
      SQUALL_RUNNERS           = jsonencode(local.runners)
    },
    var.bucket_name == null ? {} : { SQUALL_BUCKET = var.bucket_name },
    local.flow_environment,
  )

  # What only the functions that run flows need: where secret() looks, the endpoints a
  # flow's taskRunner may name (unset when none: runtime.py's default, no endpoint allowed),
  # and the deployment storage with what else inputFiles may read.
  flow_environment = merge(
    {
      SQUALL_SECRETS        = join(",", var.secret_backends)
      SQUALL_SECRETS_PREFIX = var.secrets_prefix
    },
    length(var.aws_endpoint_allowlist) == 0 ? {} : { SQUALL_AWS_ENDPOINT_ALLOWLIST = join(",", var.aws_endpoint_allowlist) },
    local.storage == null ? {} : { SQUALL_STORAGE = local.storage.url },
    length(var.storage_read) == 0 ? {} : { SQUALL_STORAGE_READ = join(",", [for r in local.storage_read : "s3://${r.bucket}/${r.prefix}"]) },
  )

  # The events function's HTTP ingress (control_plane/ingress): only it gets these, so only
  # its role reads the webhook secret. Unset when the ingress is off (the runtime's default).
  ingress_environment = merge(
    var.pubsub_push_audience == null ? {} : {
      SQUALL_PUBSUB_AUDIENCE        = var.pubsub_push_audience
      SQUALL_PUBSUB_SERVICE_ACCOUNT = var.pubsub_push_service_account
    },
    var.webhook_secret_arn == null ? {} : { SQUALL_WEBHOOK_SECRETS = var.webhook_secret_arn },
  )

  # The web UI's login (control_plane/ui/oidc.py): only the api function serves the UI and
  # /api/v1/configs, so only it gets the variable. Unset without ui_oidc (no OIDC login).
  ui_environment = var.ui_oidc == null ? {} : {
    SQUALL_UI_OIDC = jsonencode({
      issuer    = var.ui_oidc.issuer
      client_id = var.ui_oidc.client_id
      scopes    = var.ui_oidc.scopes
      token     = var.ui_oidc.token
      origins   = var.ui_oidc.origins
    })
  }

  # What every function's Python process is configured with, whatever it runs. pydantic scans
  # every installed distribution's entry points for plugins on its first import, a cost each
  # cold start pays (benchmarks/coldstart.py); the Lambda package holds no pydantic plugin, so
  # the scan is switched off. extra_environment_variables may set it otherwise.
  process_environment = {
    PYDANTIC_DISABLE_PLUGINS = "__all__"
  }

  # The sweeper never renders an expression nor submits a job: it gets neither the secrets
  # settings nor any SECRET_<NAME> variable of extra_environment_variables (the env backend's
  # values), so its configuration holds no secret and its role needs no secret permission.
  environments = {
    for key, f in local.functions : key => merge(
      local.process_environment,
      { for k, v in var.extra_environment_variables : k => v if f.runs_flows || !startswith(k, "SECRET_") },
      f.runs_flows ? local.squall_environment : { for k, v in local.squall_environment : k => v if !contains(keys(local.flow_environment), k) },
      key == "events" ? local.ingress_environment : {},
      key == "schedule" ? { SQUALL_SUBMIT_SECONDS = tostring(var.schedule_submit_seconds) } : {},
      key == "api" ? local.ui_environment : {},
    )
  }

  schedules = {
    for s in var.schedules : "${s.namespace}/${s.flow_id}/${s.trigger_id}" => merge(s, {
      # The schedule Lambda's payload (control_plane/handlers/schedule.py).
      input = jsonencode({ namespace = s.namespace, flowId = s.flow_id, triggerId = s.trigger_id })
    })
  }
}
