# Every user-facing setting of the squall module is validated here, in a module without a
# provider, so `terraform test` can prove each rule offline (the AWS provider cannot be
# downloaded where the checks run). The parent module forwards its variables unchanged and
# reads the validated values back from this module's outputs: a value cannot reach a
# resource without passing through these blocks.

variable "table_name" {
  description = "Name of the DynamoDB table (SQUALL_TABLE)."
  type        = string
}

variable "bucket_name" {
  description = "S3 bucket for large outputs and Batch file staging (SQUALL_BUCKET); null for none."
  type        = string
  default     = null
}

variable "lambda_runtime" {
  description = "Lambda runtime of the functions; must match the Python the zip was built for."
  type        = string
  default     = "python3.12"

  validation {
    condition     = contains(["python3.12", "python3.13"], var.lambda_runtime)
    error_message = "lambda_runtime must be python3.12 or python3.13 (the zip's compiled wheels are built for one of them)."
  }
}

variable "functions" {
  description = <<-EOT
    Per-function Lambda settings. Each of `api`, `tick`, `events`, `schedule`, `sweeper` takes
    `memory_size` (MB, 128-10240), `timeout` (seconds, 1-900; `api` at most 30, the HTTP API
    integration limit) and `reserved_concurrent_executions` (-1: unreserved). The tick's is 1
    by default, and at most 1: ticks must not overlap (-1 only where the account has no
    concurrency to reserve; 0 pauses the tick).
  EOT
  type = object({
    api = optional(object({
      memory_size                    = optional(number, 1024)
      timeout                        = optional(number, 29)
      reserved_concurrent_executions = optional(number, -1)
    }), {})
    # 110 s: a tick submits up to tick_submits jobs (500: ~25 s of find + submit at AWS
    # Batch's ~40 calls a second), then polls silent jobs and fires timers and schedules; it
    # must finish that, and stay under submit_grace_seconds (120). One concurrent tick only:
    # two could both recover the same SUBMITTING job. A tick that waits for the running one
    # is dropped after a minute (maximum event age 60 s, no retry); the next comes anyway.
    tick = optional(object({
      memory_size                    = optional(number, 512)
      timeout                        = optional(number, 110)
      reserved_concurrent_executions = optional(number, 1)
    }), {})
    events = optional(object({
      memory_size                    = optional(number, 256)
      timeout                        = optional(number, 60)
      reserved_concurrent_executions = optional(number, -1)
    }), {})
    schedule = optional(object({
      memory_size                    = optional(number, 256)
      timeout                        = optional(number, 60)
      reserved_concurrent_executions = optional(number, -1)
    }), {})
    sweeper = optional(object({
      memory_size                    = optional(number, 512)
      timeout                        = optional(number, 300)
      reserved_concurrent_executions = optional(number, -1)
    }), {})
  })
  default  = {}
  nullable = false

  validation {
    condition = alltrue([
      for f in values(var.functions) : f.memory_size >= 128 && f.memory_size <= 10240 && floor(f.memory_size) == f.memory_size
    ])
    error_message = "functions.*.memory_size must be a whole number of MB between 128 and 10240 (Lambda's limits)."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.timeout >= 1 && f.timeout <= 900 && floor(f.timeout) == f.timeout])
    error_message = "functions.*.timeout must be a whole number of seconds between 1 and 900 (Lambda's limits)."
  }

  validation {
    condition     = var.functions.api.timeout <= 30
    error_message = "functions.api.timeout must be at most 30 seconds: API Gateway HTTP API integrations time out after 30 s, so a longer Lambda would keep running after the client got a 503."
  }

  validation {
    condition = alltrue([
      for f in values(var.functions) : f.reserved_concurrent_executions >= -1 && floor(f.reserved_concurrent_executions) == f.reserved_concurrent_executions
    ])
    error_message = "functions.*.reserved_concurrent_executions must be -1 (unreserved), 0 (disabled) or a positive whole number."
  }

  validation {
    condition     = var.functions.tick.reserved_concurrent_executions <= 1
    error_message = "functions.tick.reserved_concurrent_executions must be 1 (the default), 0 (tick paused) or -1 (unreserved, only where the account cannot reserve concurrency): two ticks running at once could both recover the same SUBMITTING job."
  }
}

variable "tracing_enabled" {
  description = "Active X-Ray tracing on the functions (adds xray:PutTraceSegments/PutTelemetryRecords to their roles)."
  type        = bool
  default     = false
  nullable    = false
}

variable "log_retention_in_days" {
  description = "Retention of the functions' and the API's CloudWatch log groups, in days (0: never expire)."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition = contains(
      [0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653],
      var.log_retention_in_days
    )
    error_message = "log_retention_in_days must be a value CloudWatch Logs accepts: 0 (never expire), 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the table, bucket, queues, log groups and Lambda environment; null: AWS managed keys."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>), not an alias or a bare id."
  }
}

variable "api_authorization" {
  description = "How the HTTP API authorizes requests: AWS_IAM (SigV4-signed callers) or JWT (an OIDC issuer). The api Lambda runs with SQUALL_AUTH=gateway and refuses a request no authorizer checked."
  type        = string
  default     = "AWS_IAM"
  nullable    = false

  validation {
    condition     = contains(["AWS_IAM", "JWT"], var.api_authorization)
    error_message = "api_authorization must be AWS_IAM or JWT. There is no NONE: the api Lambda runs in gateway mode and would refuse every unauthorized request anyway."
  }
}

variable "jwt_authorizer" {
  description = "JWT authorizer settings, required when api_authorization is JWT: issuer (https URL), audience (client ids), identity_source."
  type = object({
    issuer          = string
    audience        = list(string)
    identity_source = optional(string, "$request.header.Authorization")
  })
  default = null

  validation {
    condition     = var.api_authorization != "JWT" || var.jwt_authorizer != null
    error_message = "jwt_authorizer is required when api_authorization is JWT: give its issuer and audience."
  }

  validation {
    condition     = var.jwt_authorizer == null || can(regex("^https://[^\\s/]+", var.jwt_authorizer.issuer))
    error_message = "jwt_authorizer.issuer must be an https:// URL (the OIDC issuer, e.g. https://cognito-idp.<region>.amazonaws.com/<pool id>)."
  }

  validation {
    condition     = var.jwt_authorizer == null || try(length(var.jwt_authorizer.audience) > 0 && alltrue([for a in var.jwt_authorizer.audience : length(trimspace(a)) > 0]), false)
    error_message = "jwt_authorizer.audience must list at least one non-empty audience (client id): API Gateway rejects tokens for any other audience."
  }
}

variable "ui_oidc" {
  description = "The web UI's OIDC login (code flow + PKCE, control_plane/ui/oidc.py), or null: `{ issuer, client_id, scopes, token = access | id, origins }`. Needs api_authorization = JWT with the same issuer, and client_id among the authorizer's audience. Set as SQUALL_UI_OIDC on the api function only."
  type = object({
    issuer    = string
    client_id = string
    scopes    = optional(list(string), ["openid"])
    token     = optional(string, "access")
    origins   = optional(list(string), [])
  })
  default = null

  validation {
    condition     = var.ui_oidc == null || var.api_authorization == "JWT"
    error_message = "ui_oidc needs api_authorization = JWT: a browser cannot sign SigV4 requests, it sends the IdP's token to the JWT authorizer."
  }

  validation {
    condition     = var.ui_oidc == null || try(var.ui_oidc.issuer == var.jwt_authorizer.issuer, false)
    error_message = "ui_oidc.issuer must be jwt_authorizer.issuer: the authorizer accepts tokens of its own issuer only."
  }

  validation {
    condition     = var.ui_oidc == null || try(contains(var.jwt_authorizer.audience, var.ui_oidc.client_id), false)
    error_message = "ui_oidc.client_id must be one of jwt_authorizer.audience: the authorizer checks the token's aud (or, without aud, client_id) against it. With Cognito, the audience is the app client id."
  }

  validation {
    condition     = var.ui_oidc == null || try(contains(var.ui_oidc.scopes, "openid") && alltrue([for s in var.ui_oidc.scopes : can(regex("^\\S+$", s))]), false)
    error_message = "ui_oidc.scopes must include openid (the id token carries the login's nonce), each scope one word."
  }

  validation {
    condition     = var.ui_oidc == null || try(contains(["access", "id"], var.ui_oidc.token), false)
    error_message = "ui_oidc.token must be access (the access token, Cognito's default) or id (the id token, for IdPs whose access tokens are opaque)."
  }

  validation {
    condition     = var.ui_oidc == null || try(alltrue([for o in var.ui_oidc.origins : can(regex("^https://[^\\s/]+$", o))]), false)
    error_message = "ui_oidc.origins are https origins with no path (e.g. https://<domain>.auth.<region>.amazoncognito.com, where Cognito's token endpoint is)."
  }
}

variable "api_throttling" {
  description = "Default route throttling of the HTTP API stage: steady-state requests per second and burst."
  type = object({
    rate_limit  = optional(number, 50)
    burst_limit = optional(number, 100)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.api_throttling.rate_limit > 0 && var.api_throttling.burst_limit >= 1 && floor(var.api_throttling.burst_limit) == var.api_throttling.burst_limit
    error_message = "api_throttling.rate_limit must be positive and api_throttling.burst_limit a whole number of at least 1."
  }
}

variable "max_body_bytes" {
  description = "Largest request body the api Lambda accepts (SQUALL_MAX_BODY_BYTES), in bytes."
  type        = number
  default     = 1048576
  nullable    = false

  validation {
    condition     = var.max_body_bytes >= 1 && var.max_body_bytes <= 10485760 && floor(var.max_body_bytes) == var.max_body_bytes
    error_message = "max_body_bytes must be a whole number between 1 and 10485760 (API Gateway's 10 MB payload limit)."
  }
}

variable "reconcile_after_seconds" {
  description = "Seconds without news before the tick polls a running job (SQUALL_RECONCILE_AFTER)."
  type        = number
  default     = 300
  nullable    = false

  validation {
    condition     = var.reconcile_after_seconds >= 0
    error_message = "reconcile_after_seconds must be 0 or more."
  }
}

variable "submit_grace_seconds" {
  description = "Seconds before the tick resubmits a job left SUBMITTING (SQUALL_SUBMIT_GRACE); longer than any function's timeout."
  type        = number
  default     = 120
  nullable    = false

  validation {
    # The sweeper only deletes expired executions: it never submits a job.
    condition     = var.submit_grace_seconds > max([for k, f in var.functions : f.timeout if k != "sweeper"]...)
    error_message = "submit_grace_seconds must be longer than the timeout of every function that submits jobs (api, tick, events, schedule): a job still being submitted by a live Lambda must not be recovered by the tick."
  }
}

variable "finished_ttl_days" {
  description = "Days a finished execution stays in DynamoDB before TTL deletes it (SQUALL_FINISHED_TTL_DAYS); 0 keeps it forever."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition     = var.finished_ttl_days >= 0 && var.finished_ttl_days <= 3650 && floor(var.finished_ttl_days) == var.finished_ttl_days
    error_message = "finished_ttl_days must be a whole number of days between 0 (keep forever) and 3650."
  }
}

variable "submit_budget" {
  description = "Jobs one step submits itself (SQUALL_SUBMIT_BUDGET); a wider step leaves the rest to the tick, so an API call stays well within API Gateway's 30 s."
  type        = number
  default     = 100
  nullable    = false

  validation {
    condition     = var.submit_budget >= 1 && floor(var.submit_budget) == var.submit_budget
    error_message = "submit_budget must be a whole number of jobs, at least 1."
  }
}

variable "fanout_chunk" {
  description = "Lanes of a ForEach, Parallel or Dag one step starts (SQUALL_FANOUT_CHUNK, ADR 0015)."
  type        = number
  default     = 40
  nullable    = false

  validation {
    condition     = var.fanout_chunk >= 1 && floor(var.fanout_chunk) == var.fanout_chunk
    error_message = "fanout_chunk must be a whole number of lanes, at least 1."
  }
}

variable "submit_seconds" {
  description = "Seconds after which a step stops submitting jobs (SQUALL_SUBMIT_SECONDS, ADR 0015)."
  type        = number
  default     = 0.25
  nullable    = false

  validation {
    condition     = var.submit_seconds > 0 && var.submit_seconds <= 20
    error_message = "submit_seconds must be more than 0 and at most 20: a step that submits longer would not leave an API call within API Gateway's 30 s."
  }
}

variable "schedule_submit_seconds" {
  description = "SQUALL_SUBMIT_SECONDS of the schedule function alone (ADR 0015, issue 28): nobody waits on a scheduled start, so its step submits the jobs it starts (at most fanout_chunk lanes) itself instead of leaving them to the tick after submit_seconds."
  type        = number
  default     = 5
  nullable    = false

  validation {
    condition     = var.schedule_submit_seconds > 0 && var.schedule_submit_seconds + 30 <= var.functions.schedule.timeout
    error_message = "schedule_submit_seconds must be more than 0 and leave 30 s of functions.schedule.timeout for the rest of the invocation."
  }
}

variable "tick_seconds" {
  description = "Seconds one tick spends on fan-out continuations and submits (SQUALL_TICK_SECONDS, ADR 0015)."
  type        = number
  default     = 6
  nullable    = false

  validation {
    condition     = var.tick_seconds > 0
    error_message = "tick_seconds must be more than 0."
  }

  validation {
    condition     = var.tick_seconds + 30 <= var.functions.tick.timeout
    error_message = "tick_seconds must leave 30 s of functions.tick.timeout for polling, timers and schedules: lower tick_seconds or raise the tick's timeout."
  }
}

variable "tick_submits" {
  description = "Jobs one tick submits at most (SQUALL_TICK_SUBMITS); each is a find and a submit call to the runner."
  type        = number
  default     = 500
  nullable    = false

  validation {
    condition     = var.tick_submits >= 1 && floor(var.tick_submits) == var.tick_submits
    error_message = "tick_submits must be a whole number of jobs, at least 1."
  }

  validation {
    # Two AWS Batch calls per job at ~40 calls a second (tick_submits / 20 s), plus 30 s for
    # the rest of the tick (reconcile polls, timers, schedules).
    condition     = var.functions.tick.timeout >= var.tick_submits / 20 + 30
    error_message = "functions.tick.timeout is too short for tick_submits: a tick needs about tick_submits / 20 seconds to find and submit its jobs (two AWS Batch calls each at ~40 calls a second) plus 30 s for polling, timers and schedules. Raise the tick's timeout (and submit_grace_seconds above it) or lower tick_submits."
  }
}

variable "application_log_level" {
  description = "Lambda's application log level (logging_config, JSON format): TRACE, DEBUG, INFO, WARN, ERROR or FATAL. Lambda sets AWS_LAMBDA_LOG_LEVEL from it, which the handlers' standard-library loggers and the api function's powertools Logger both follow."
  type        = string
  default     = "INFO"
  nullable    = false

  validation {
    condition     = contains(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"], var.application_log_level)
    error_message = "application_log_level must be one of Lambda's levels: TRACE, DEBUG, INFO, WARN, ERROR or FATAL (WARN, not WARNING)."
  }
}

variable "system_log_level" {
  description = "Lambda's system log level (platform START/REPORT lines): DEBUG, INFO or WARN. WARN drops every invocation's START/END/REPORT lines (~460 bytes of log ingestion each); INFO keeps the REPORT line with duration, memory and init time."
  type        = string
  default     = "WARN"
  nullable    = false

  validation {
    condition     = contains(["DEBUG", "INFO", "WARN"], var.system_log_level)
    error_message = "system_log_level must be DEBUG, INFO or WARN (Lambda's system log levels)."
  }
}

variable "snap_start" {
  description = "Lambda SnapStart on the api function: publish a version per change, snapshot it after initialisation, and serve the API from the `live` alias. Python SnapStart bills snapshot caching and each restore."
  type        = bool
  default     = false
  nullable    = false
}

variable "tick_schedule_expression" {
  description = "EventBridge schedule of the tick function."
  type        = string
  default     = "rate(1 minute)"
  nullable    = false

  validation {
    condition     = can(regex("^(rate\\(([1-9][0-9]*) (minute|minutes|hour|hours)\\)|cron\\(\\S+( \\S+){5}\\))$", var.tick_schedule_expression))
    error_message = "tick_schedule_expression must be rate(N minute[s]|hour[s]) or a six-field cron(...). Keep it at a few minutes at most: timers and reconcile run on it."
  }
}

variable "aws_batch" {
  description = <<-EOT
    The AWS Batch runner, or null for none. `job_queue_arns`: every queue flows may submit to
    (IAM scope and the job state change rule; a flow may name one in `jobQueueArn`);
    `default_job_queue_arn`: the queue of every task that names none (default: the first
    queue); `job_definition_arns`: existing definitions flows name
    with `jobDefinitionArn`; `register_job_definitions`: let Squall register its own
    `squall-*` definitions (needed unless every task names a `jobDefinitionArn`);
    `execution_role_arn`/`task_role_arn`: the roles jobs run with (iam:PassRole is granted
    for exactly these, to ECS tasks only); `compute_environment_arn`: a hint for Fargate vs
    EC2 and spot; `log_group_name`: where the jobs log.
  EOT
  type = object({
    job_queue_arns           = list(string)
    default_job_queue_arn    = optional(string)
    job_definition_arns      = optional(list(string), [])
    register_job_definitions = optional(bool, true)
    execution_role_arn       = optional(string)
    task_role_arn            = optional(string)
    compute_environment_arn  = optional(string)
    log_group_name           = optional(string, "/aws/batch/job")
  })
  default = null

  validation {
    condition     = var.aws_batch == null || try(length(var.aws_batch.job_queue_arns) > 0, false)
    error_message = "aws_batch.job_queue_arns must list at least one job queue ARN."
  }

  validation {
    condition = var.aws_batch == null || alltrue([
      for arn in concat(try(var.aws_batch.job_queue_arns, []), compact([try(var.aws_batch.default_job_queue_arn, null)])) :
      can(regex("^arn:aws[a-z-]*:batch:[a-z0-9-]+:[0-9]{12}:job-queue/[A-Za-z0-9_-]{1,128}$", arn))
    ])
    error_message = "aws_batch job queues must be ARNs like arn:aws:batch:<region>:<account>:job-queue/<name>, not names."
  }

  validation {
    condition     = var.aws_batch == null || try(var.aws_batch.default_job_queue_arn == null ? true : contains(var.aws_batch.job_queue_arns, var.aws_batch.default_job_queue_arn), false)
    error_message = "aws_batch.default_job_queue_arn must be one of aws_batch.job_queue_arns (IAM only allows those)."
  }

  validation {
    condition = var.aws_batch == null || alltrue([
      for arn in try(var.aws_batch.job_definition_arns, []) :
      can(regex("^arn:aws[a-z-]*:batch:[a-z0-9-]+:[0-9]{12}:job-definition/[A-Za-z0-9_-]{1,128}(:[0-9]+|:\\*)?$", arn))
    ])
    error_message = "aws_batch.job_definition_arns must be ARNs like arn:aws:batch:<region>:<account>:job-definition/<name>[:<revision>]."
  }

  validation {
    condition     = var.aws_batch == null || try(var.aws_batch.register_job_definitions || length(var.aws_batch.job_definition_arns) > 0, false)
    error_message = "aws_batch needs job_definition_arns when register_job_definitions is false: jobs need some definition to run."
  }

  validation {
    condition = var.aws_batch == null || alltrue([
      for arn in compact([try(var.aws_batch.execution_role_arn, null), try(var.aws_batch.task_role_arn, null)]) :
      can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", arn))
    ])
    error_message = "aws_batch.execution_role_arn and task_role_arn must be IAM role ARNs (arn:aws:iam::<account>:role/<name>)."
  }

  validation {
    condition     = var.aws_batch == null || try(var.aws_batch.compute_environment_arn == null || can(regex("^arn:aws[a-z-]*:batch:[a-z0-9-]+:[0-9]{12}:compute-environment/[A-Za-z0-9_-]{1,128}$", var.aws_batch.compute_environment_arn)), false)
    error_message = "aws_batch.compute_environment_arn must be an ARN like arn:aws:batch:<region>:<account>:compute-environment/<name>."
  }

  validation {
    condition     = var.aws_batch == null || try(can(regex("^[A-Za-z0-9_./#-]{1,512}$", var.aws_batch.log_group_name)), false)
    error_message = "aws_batch.log_group_name must be a CloudWatch log group name (1-512 of A-Z a-z 0-9 _ . / # -)."
  }
}

variable "google_batch" {
  description = <<-EOT
    The Google Cloud Batch runner's deployment defaults, or null for none (SQUALL_RUNNERS
    "google-batch"): every task with `taskRunner: {type: io.kestra.plugin.ee.gcp.runner.Batch}`
    runs in `project_id` and `region`, stages its files and log in `bucket`, and has Batch
    publish its state changes to `notification_topic` (projects/<p>/topics/<t>; its push
    subscription targets POST /events/pubsub, so it needs pubsub_push_audience). `deployment`
    labels the jobs so one list call reconciles them; `job_service_account` is the account the
    jobs' VMs run as (default: the Compute Engine default service account).
    `credentials_config` is the JSON of a credential configuration (workload identity
    federation from AWS, `gcloud iam workload-identity-pools create-cred-config --aws`): how
    the functions get a Google token with their own AWS role, no key. It holds no secret.
    A task's own options win over all of these.
  EOT
  type = object({
    project_id          = string
    region              = string
    bucket              = string
    notification_topic  = optional(string)
    deployment          = optional(string, "squall")
    job_service_account = optional(string)
    credentials_config  = optional(string)
  })
  default = null

  validation {
    # Google's rules: 6-30 of a-z 0-9 -, a letter first, no - last (a legacy domain-scoped id
    # carries a "domain:" prefix).
    condition     = var.google_batch == null || can(regex("^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.google_batch.project_id))
    error_message = "google_batch.project_id must be a Google Cloud project id (6-30 lowercase letters, digits and hyphens, starting with a letter, e.g. my-project-123), not its number or display name."
  }

  validation {
    condition     = var.google_batch == null || can(regex("^[a-z]+-[a-z]+[0-9]+$", var.google_batch.region))
    error_message = "google_batch.region must be a Google Cloud region such as europe-west1 or us-central1, not a zone (europe-west1-b): Batch chooses the zone."
  }

  validation {
    # What runners/google_batch/options.py accepts: a bucket name, never gs:// or a path.
    condition     = var.google_batch == null || can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.google_batch.bucket))
    error_message = "google_batch.bucket must be a Cloud Storage bucket name (3-222 of a-z 0-9 . _ -), without gs:// or a path."
  }

  validation {
    condition     = var.google_batch == null || try(var.google_batch.notification_topic == null || can(regex("^projects/[a-z0-9.:-]{6,63}/topics/[A-Za-z][A-Za-z0-9._~+%-]{2,254}$", var.google_batch.notification_topic)), false)
    error_message = "google_batch.notification_topic must be a topic's full name, projects/<project id>/topics/<topic> (the topic name: 3-255 characters, a letter first), not the bare topic name."
  }

  validation {
    condition     = var.google_batch == null || try(var.google_batch.notification_topic == null || var.pubsub_push_audience != null, false)
    error_message = "google_batch.notification_topic needs pubsub_push_audience and pubsub_push_service_account: Batch's notifications reach Squall only through the push subscription to the events function's POST /events/pubsub. Without a topic, the tick's reconcile finds every job's end (later)."
  }

  validation {
    condition     = var.google_batch == null || can(regex("^[a-z0-9_-]{1,63}$", var.google_batch.deployment))
    error_message = "google_batch.deployment must be 1-63 of a-z 0-9 _ - (it is a Batch job label value)."
  }

  validation {
    condition     = var.google_batch == null || try(var.google_batch.job_service_account == null || can(regex("^[a-z0-9-]+@[a-z0-9.-]+\\.gserviceaccount\\.com$", var.google_batch.job_service_account)), false)
    error_message = "google_batch.job_service_account must be a service account's email (name@<project>.iam.gserviceaccount.com)."
  }

  validation {
    # A credential configuration says where to get a token (type external_account); a
    # service-account key (type service_account) holds a private key, which must not sit in
    # the functions' environment and the Terraform state.
    condition     = var.google_batch == null || try(var.google_batch.credentials_config == null ? true : jsondecode(var.google_batch.credentials_config).type == "external_account", false)
    error_message = "google_batch.credentials_config must be the JSON of a credential configuration with \"type\": \"external_account\" (workload identity federation, e.g. from gcloud iam workload-identity-pools create-cred-config --aws). Not a service-account key: a key is a secret, and this value goes into the functions' environment and the Terraform state (a task may give its own key with serviceAccount: \"{{ secret('GCP_KEY') }}\")."
  }

  validation {
    # SQUALL_RUNNERS carries it, and Lambda allows 4 KB for all of a function's variables.
    condition     = var.google_batch == null || try(var.google_batch.credentials_config == null ? true : length(jsonencode(jsondecode(var.google_batch.credentials_config))) <= 2048, false)
    error_message = "google_batch.credentials_config must be at most 2048 characters of JSON: it travels in SQUALL_RUNNERS, and Lambda allows 4 KB for all of a function's environment variables."
  }
}

variable "cloud_run" {
  description = <<-EOT
    The Cloud Run jobs runner's deployment defaults, or null for none (SQUALL_RUNNERS
    "cloud-run"): every task with `taskRunner: {type: io.kestra.plugin.ee.gcp.runner.CloudRun}`
    runs as a Cloud Run job in `project_id` and `region`, with its files and log in `bucket`
    (mounted into the job). `deployment` labels the executions so one list call reconciles
    them; `job_service_account` is the account the jobs run as (default: the Compute Engine
    default service account). Cloud Run has no push events for jobs: the tick polls.
    `credentials_config` as for google_batch (workload identity federation, no key).
    A task's own options win over all of these.
  EOT
  type = object({
    project_id          = string
    region              = string
    bucket              = string
    deployment          = optional(string, "squall")
    job_service_account = optional(string)
    credentials_config  = optional(string)
  })
  default = null

  validation {
    condition     = var.cloud_run == null || can(regex("^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.cloud_run.project_id))
    error_message = "cloud_run.project_id must be a Google Cloud project id (6-30 lowercase letters, digits and hyphens, starting with a letter, e.g. my-project-123), not its number or display name."
  }

  validation {
    condition     = var.cloud_run == null || can(regex("^[a-z]+-[a-z]+[0-9]+$", var.cloud_run.region))
    error_message = "cloud_run.region must be a Google Cloud region such as europe-west1 or us-central1, not a zone (europe-west1-b)."
  }

  validation {
    # What runners/cloud_run/options.py accepts: a bucket name, never gs:// or a path.
    condition     = var.cloud_run == null || can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.cloud_run.bucket))
    error_message = "cloud_run.bucket must be a Cloud Storage bucket name (3-222 of a-z 0-9 . _ -), without gs:// or a path."
  }

  validation {
    condition     = var.cloud_run == null || can(regex("^[a-z0-9_-]{1,63}$", var.cloud_run.deployment))
    error_message = "cloud_run.deployment must be 1-63 of a-z 0-9 _ - (it is a Cloud Run label value)."
  }

  validation {
    condition     = var.cloud_run == null || try(var.cloud_run.job_service_account == null || can(regex("^[a-z0-9-]+@[a-z0-9.-]+\\.gserviceaccount\\.com$", var.cloud_run.job_service_account)), false)
    error_message = "cloud_run.job_service_account must be a service account's email (name@<project>.iam.gserviceaccount.com)."
  }

  validation {
    condition     = var.cloud_run == null || try(var.cloud_run.credentials_config == null ? true : jsondecode(var.cloud_run.credentials_config).type == "external_account", false)
    error_message = "cloud_run.credentials_config must be the JSON of a credential configuration with \"type\": \"external_account\" (workload identity federation). Not a service-account key: a key is a secret, and this value goes into the functions' environment and the Terraform state."
  }

  validation {
    condition     = var.cloud_run == null || try(var.cloud_run.credentials_config == null ? true : length(jsonencode(jsondecode(var.cloud_run.credentials_config))) <= 2048, false)
    error_message = "cloud_run.credentials_config must be at most 2048 characters of JSON: it travels in SQUALL_RUNNERS, and Lambda allows 4 KB for all of a function's environment variables."
  }
}

variable "schedules" {
  description = <<-EOT
    Schedule triggers to fire on time through EventBridge Scheduler, one schedule each:
    `namespace`, `flow_id`, `trigger_id` name the flow's Schedule trigger; `schedule_expression`
    is the Scheduler's own syntax (`cron(0 2 * * ? *)`, `rate(1 hour)`) and should wake the
    function when the trigger's cron is due; `timezone` an IANA zone. The tick evaluates every
    Schedule trigger each minute anyway, so these are a precision aid, not a dependency.
    An Http trigger (io.kestra.plugin.core.http.Trigger) may be named too, with a
    `rate(...)` expression: the schedule Lambda polls it when its interval has passed.
  EOT
  type = list(object({
    namespace           = string
    flow_id             = string
    trigger_id          = string
    schedule_expression = string
    timezone            = optional(string, "UTC")
    enabled             = optional(bool, true)
  }))
  default  = []
  nullable = false

  validation {
    condition = alltrue([
      for s in var.schedules :
      can(regex("^[a-z0-9][a-z0-9._-]*$", s.namespace)) && can(regex("^[a-zA-Z0-9][a-zA-Z0-9._-]*$", s.flow_id)) && can(regex("^[a-zA-Z0-9][a-zA-Z0-9_-]*$", s.trigger_id))
    ])
    error_message = "schedules: namespace, flow_id and trigger_id must be Squall ids (namespace: lowercase letters, digits, . _ -; flow id: letters, digits, . _ -; trigger id: letters, digits, _ -)."
  }

  validation {
    condition = alltrue([
      for s in var.schedules : can(regex("^(cron\\(\\S+( \\S+){5}\\)|rate\\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\\)|at\\([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\))$", s.schedule_expression))
    ])
    error_message = "schedules[*].schedule_expression must be EventBridge Scheduler syntax: cron(min hour day-of-month month day-of-week year), rate(N unit) or at(yyyy-mm-ddThh:mm:ss). A five-field Unix cron needs a year field and a ? in day-of-month or day-of-week."
  }

  validation {
    condition     = alltrue([for s in var.schedules : can(regex("^(UTC|[A-Za-z_]+(/[A-Za-z0-9_+-]+){1,2})$", s.timezone))])
    error_message = "schedules[*].timezone must be an IANA time zone such as UTC or Europe/Paris."
  }

  validation {
    condition     = length(distinct([for s in var.schedules : "${s.namespace}/${s.flow_id}/${s.trigger_id}"])) == length(var.schedules)
    error_message = "schedules must not name the same namespace/flow_id/trigger_id twice."
  }
}

variable "extra_environment_variables" {
  description = "More environment variables for the functions (e.g. POWERTOOLS_SERVICE_NAME). SQUALL_* settings have their own variables, and log levels come from application_log_level."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for k in keys(var.extra_environment_variables) : !startswith(k, "SQUALL_") && can(regex("^[A-Za-z][A-Za-z0-9_]*$", k))])
    error_message = "extra_environment_variables: names must be letters, digits and _, and must not start with SQUALL_ (set those through the module's own variables, which are validated)."
  }

  validation {
    condition     = length(setintersection(keys(var.extra_environment_variables), ["AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_LOG_FORMAT"])) == 0
    error_message = "extra_environment_variables: AWS_LAMBDA_LOG_LEVEL and AWS_LAMBDA_LOG_FORMAT are set by Lambda from the functions' logging_config; use application_log_level."
  }

  validation {
    # With Lambda's log level set, powertools takes AWS_LAMBDA_LOG_LEVEL over POWERTOOLS_LOG_LEVEL
    # (and warns when the latter is more verbose): a different value would only mislead.
    condition = !contains(keys(var.extra_environment_variables), "POWERTOOLS_LOG_LEVEL") || contains(
      lookup({ TRACE = ["TRACE", "DEBUG", "NOTSET"], WARN = ["WARN", "WARNING"], FATAL = ["FATAL", "CRITICAL"] }, var.application_log_level, [var.application_log_level]),
      upper(lookup(var.extra_environment_variables, "POWERTOOLS_LOG_LEVEL", "")),
    )
    error_message = "extra_environment_variables.POWERTOOLS_LOG_LEVEL must agree with application_log_level, or be left out: the powertools Logger follows Lambda's AWS_LAMBDA_LOG_LEVEL (set from application_log_level) and ignores POWERTOOLS_LOG_LEVEL."
  }
}

variable "secret_backends" {
  description = <<-EOT
    Where `secret('NAME')` looks, in order (SQUALL_SECRETS): `env` (Kestra's SECRET_<NAME>
    base64 variables, e.g. from extra_environment_variables), `secretsmanager` (secret
    `<secrets_prefix><NAME>`), `ssm` (SecureString parameter `/<secrets_prefix><NAME>`). Not
    `file`: a Lambda function has no secrets file to read (the package holds none and its
    filesystem is read-only but /tmp). Each AWS backend adds its read permission, scoped to
    the prefix, to the roles of the functions that run flows.
  EOT
  type        = list(string)
  default     = ["env", "secretsmanager"]
  nullable    = false

  validation {
    condition     = length(var.secret_backends) > 0 && alltrue([for b in var.secret_backends : contains(["env", "secretsmanager", "ssm"], b)])
    error_message = "secret_backends must list one or more of env, secretsmanager and ssm (not file: a Lambda function has no secrets file; [\"env\"] reads only SECRET_<NAME> variables)."
  }

  validation {
    condition     = length(distinct(var.secret_backends)) == length(var.secret_backends)
    error_message = "secret_backends must not name a backend twice: the list is the lookup order."
  }
}

variable "secrets_prefix" {
  description = "Prefix of the secrets the functions may read (SQUALL_SECRETS_PREFIX): Secrets Manager secret `<prefix><NAME>`, SSM parameter `/<prefix><NAME>`. IAM grants `secret:<prefix>*` and `parameter/<prefix>*` (without its leading /), nothing else."
  type        = string
  default     = "squall/"
  nullable    = false

  validation {
    # The characters both services allow in a name; no empty segment, and never empty: an
    # empty prefix would grant every secret and parameter of the account and region.
    condition     = can(regex("^/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?$", var.secrets_prefix)) && length(var.secrets_prefix) <= 256
    error_message = "secrets_prefix must be 1-256 of A-Z a-z 0-9 _ . - and single / between them (one leading / allowed, e.g. squall/ or /prod/squall/): it scopes the functions' secret permissions, so it cannot be empty."
  }

  validation {
    condition     = !contains(var.secret_backends, "ssm") || !can(regex("^(?i)(aws|ssm)", trimprefix(var.secrets_prefix, "/")))
    error_message = "secrets_prefix must not begin with aws or ssm (any case) when secret_backends has ssm: Parameter Store reserves those names."
  }
}

variable "secrets_kms_key_arns" {
  description = "Customer managed KMS keys encrypting the secrets or SecureString parameters under secrets_prefix: the functions that run flows get kms:Decrypt on them, through Secrets Manager or SSM only (kms:ViaService). Empty (default) for the AWS managed keys aws/secretsmanager and aws/ssm, whose key policies already let the account's principals decrypt through their service."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for arn in var.secrets_kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", arn))])
    error_message = "secrets_kms_key_arns must be KMS key ARNs (arn:aws:kms:<region>:<account>:key/<key id>): IAM authorizes Decrypt on the key, not on an alias."
  }

  validation {
    condition     = length(var.secrets_kms_key_arns) == 0 || contains(var.secret_backends, "secretsmanager") || contains(var.secret_backends, "ssm")
    error_message = "secrets_kms_key_arns needs secretsmanager or ssm in secret_backends: only those read through KMS."
  }
}

variable "aws_endpoint_allowlist" {
  description = "AWS endpoint URLs a flow's taskRunner `endpointOverride` may name (SQUALL_AWS_ENDPOINT_ALLOWLIST; unset when empty, the default: no flow may choose one). The control plane signs requests to them with its roles' credentials, so list only endpoints you run (a VPC endpoint, an emulator)."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    # What runners/aws_batch/runner.py canonical_endpoint accepts, minus commas (the
    # variable is comma-separated): a host, an optional port and path, no credentials,
    # query or fragment.
    condition     = alltrue([for url in var.aws_endpoint_allowlist : can(regex("^https?://([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?(/[A-Za-z0-9._~%!$&'()*+;=:-]*)*$", url))])
    error_message = "aws_endpoint_allowlist must hold http(s) URLs with a host, an optional port and path, and no credentials, query, fragment, comma or space (e.g. https://vpce-0abc.batch.eu-west-1.vpce.amazonaws.com)."
  }

  validation {
    condition     = length(var.aws_endpoint_allowlist) == 0 || var.aws_batch != null
    error_message = "aws_endpoint_allowlist needs aws_batch: only the AWS Batch runner takes an endpointOverride."
  }
}

variable "storage" {
  description = "The deployment storage (SQUALL_STORAGE): an s3://<bucket>[/<prefix>] URL where task output files and API uploads go, and from where every function reads them. The functions that run flows may get, put, delete and list objects under that prefix only. Null: s3://<bucket_name>/squall/storage when the module has a bucket (its lifecycle rule expires them with the executions), else unset (each function's own /tmp: files then do not pass from one function to another)."
  type        = string
  default     = null

  validation {
    condition     = var.storage == null || (can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\\s]*)?$", var.storage)) && !can(regex("/\\.{1,2}(/|$)", var.storage)))
    error_message = "storage: an s3://<bucket>[/<prefix>] URL with a valid bucket name, no spaces and no . or .. segments."
  }
}

variable "storage_read" {
  description = "More s3://<bucket>[/<prefix>] prefixes a flow's inputFiles may read (SQUALL_STORAGE_READ), each granted s3:GetObject and s3:ListBucket on that prefix only. Empty: nothing outside the storage itself (the control plane reads with its own role, so a flow must not choose the bucket)."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for u in var.storage_read : can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\\s,]*)?$", u)) && !can(regex("/\\.{1,2}(/|$)", u))])
    error_message = "storage_read: each an s3://<bucket>[/<prefix>] URL with a valid bucket name, no spaces or commas and no . or .. segments."
  }
}

variable "pubsub_push_audience" {
  description = "Audience of the OIDC token a Google Pub/Sub push subscription sends to POST /events/pubsub (SQUALL_PUBSUB_AUDIENCE; the subscription's `audience`, e.g. the endpoint's URL). With pubsub_push_service_account it opens that route; null (default): no Pub/Sub ingress."
  type        = string
  default     = null

  validation {
    condition     = var.pubsub_push_audience == null || can(regex("^\\S{1,512}$", var.pubsub_push_audience))
    error_message = "pubsub_push_audience must be 1-512 characters without spaces (the push subscription's audience)."
  }

  validation {
    condition     = (var.pubsub_push_audience == null) == (var.pubsub_push_service_account == null)
    error_message = "pubsub_push_audience and pubsub_push_service_account go together: a push is accepted only from that account, for that audience."
  }
}

variable "pubsub_push_service_account" {
  description = "Email of the Google service account the push subscription authenticates as (SQUALL_PUBSUB_SERVICE_ACCOUNT): the token's `email` must be it, verified."
  type        = string
  default     = null

  validation {
    condition     = var.pubsub_push_service_account == null || can(regex("^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$", var.pubsub_push_service_account))
    error_message = "pubsub_push_service_account must be an email address (name@project.iam.gserviceaccount.com)."
  }
}

variable "webhook_secret_arn" {
  description = "Secrets Manager secret holding the shared HMAC secret of signed webhooks, POST /events/webhook/<key> (SQUALL_WEBHOOK_SECRETS). Its AWSCURRENT and AWSPREVIOUS values are both accepted, so `put-secret-value` rotates it without downtime. Only the events function may read it. Null (default): no webhook ingress."
  type        = string
  default     = null

  validation {
    condition     = var.webhook_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$", var.webhook_secret_arn))
    error_message = "webhook_secret_arn must be a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>)."
  }
}
