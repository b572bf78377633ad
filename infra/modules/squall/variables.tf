# Validation of these values lives in modules/settings (and the name's in modules/naming),
# which main.tf feeds them to: one set of rules, testable offline with `terraform test`.
# Descriptions and defaults here are what module users read (README inputs table).

variable "name" {
  description = "Prefix of every resource name (table, functions, roles, API, rules, bucket): 1-24 lowercase letters, digits or hyphens."
  type        = string
  default     = "squall"
}

variable "tags" {
  description = "Tags applied to every resource that takes tags."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "lambda_zip_path" {
  description = "Path of the Lambda package built by `squall package --output dist/lambda.zip` (relative to where terraform runs); with google_batch or cloud_run, built with `--extra gcp`."
  type        = string
  default     = "dist/lambda.zip"
  nullable    = false
}

variable "lambda_runtime" {
  description = "Lambda runtime: python3.12 or python3.13, the Python the package was built for."
  type        = string
  default     = "python3.12"
}

variable "functions" {
  description = "Per-function settings: `api`, `tick`, `events`, `schedule`, `sweeper`, each optional `{ memory_size, timeout, reserved_concurrent_executions }`. Defaults: api 1024 MB/29 s, tick 512 MB/110 s with reserved concurrency 1 (ticks must not overlap), events and schedule 256 MB/60 s (sized by benchmarks/cost.py: I/O-bound, docs/cost.md), sweeper 512 MB/300 s, the others unreserved."
  type = object({
    api = optional(object({
      memory_size                    = optional(number, 1024)
      timeout                        = optional(number, 29)
      reserved_concurrent_executions = optional(number, -1)
    }), {})
    # Timeout: tick_submits' find + submit calls (~25 s for 500) plus polling, under the
    # submit grace. Concurrency 1: two overlapping ticks could recover the same job twice.
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
}

variable "tracing_enabled" {
  description = "Active AWS X-Ray tracing on the functions."
  type        = bool
  default     = false
  nullable    = false
}

variable "log_retention_in_days" {
  description = "Retention of the function and API access log groups (a value CloudWatch accepts; 0 = never expire)."
  type        = number
  default     = 30
  nullable    = false
}

variable "application_log_level" {
  description = "Application log level of every function (Lambda's JSON logging_config): TRACE, DEBUG, INFO, WARN, ERROR or FATAL. Lambda passes it as AWS_LAMBDA_LOG_LEVEL, which the handlers and the api's powertools Logger follow."
  type        = string
  default     = "INFO"
}

variable "system_log_level" {
  description = "Lambda system log level (platform START/REPORT lines): DEBUG, INFO or WARN. WARN (the default) drops the START/END/REPORT lines of every invocation, about 460 bytes of CloudWatch Logs ingestion each ($0.23 per 1M invocations); Lambda's CloudWatch metrics still carry durations, errors and throttles. INFO restores them (duration, billed duration, memory used, init time per invocation)."
  type        = string
  default     = "WARN"
}

variable "snap_start" {
  description = "Lambda SnapStart on the api function: each change publishes a version, snapshotted after initialisation, and API Gateway invokes the `live` alias. Cuts cold starts (imports of pydantic models and powertools); Python SnapStart bills snapshot caching and restores."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "Customer managed KMS key ARN for the table, bucket, queues, log groups, schedules and Lambda environment. Null: AWS managed/owned keys. Its key policy must let CloudWatch Logs (logs.<region>.amazonaws.com), EventBridge and Scheduler use it."
  type        = string
  default     = null
}

variable "deletion_protection_enabled" {
  description = "DynamoDB deletion protection: the table (every flow and execution) cannot be deleted until this is turned off."
  type        = bool
  default     = true
  nullable    = false
}

variable "point_in_time_recovery_enabled" {
  description = "DynamoDB point-in-time recovery (35 days of continuous backups)."
  type        = bool
  default     = true
  nullable    = false
}

variable "create_bucket" {
  description = "Create the S3 bucket for large outputs and Batch file staging (encrypted, private, with a lifecycle rule)."
  type        = bool
  default     = true
  nullable    = false
}

variable "bucket_name" {
  description = "With create_bucket: the new bucket's name (default <name>-<account>-<region>). Without: an existing bucket to use, or null for none (outputs over ~100 KB then fail, Batch tasks cannot stage files)."
  type        = string
  default     = null
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete the bucket with its objects."
  type        = bool
  default     = false
  nullable    = false
}

variable "api_authorization" {
  description = "HTTP API authorization of the /api/ routes: AWS_IAM (SigV4) or JWT."
  type        = string
  default     = "AWS_IAM"
}

variable "jwt_authorizer" {
  description = "With api_authorization = JWT: `{ issuer = \"https://...\", audience = [\"client id\"], identity_source = optional }`."
  type = object({
    issuer          = string
    audience        = list(string)
    identity_source = optional(string, "$request.header.Authorization")
  })
  default = null
}

variable "ui_oidc" {
  description = "The web UI's OIDC login, or null: `{ issuer, client_id, scopes = [\"openid\"], token = \"access\" | \"id\", origins = [] }` (see \"Browser login\" in the README). Needs api_authorization = JWT, ui_oidc.issuer = jwt_authorizer.issuer and client_id in jwt_authorizer.audience."
  type = object({
    issuer    = string
    client_id = string
    scopes    = optional(list(string), ["openid"])
    token     = optional(string, "access")
    origins   = optional(list(string), [])
  })
  default = null
}

variable "api_throttling" {
  description = "Stage throttling: `{ rate_limit = requests per second (50), burst_limit = 100 }`."
  type = object({
    rate_limit  = optional(number, 50)
    burst_limit = optional(number, 100)
  })
  default  = {}
  nullable = false
}

variable "max_body_bytes" {
  description = "Largest request body the API accepts (SQUALL_MAX_BODY_BYTES)."
  type        = number
  default     = 1048576
}

variable "reconcile_after_seconds" {
  description = "Seconds without news before the tick polls a running job (SQUALL_RECONCILE_AFTER)."
  type        = number
  default     = 300
}

variable "submit_grace_seconds" {
  description = "Seconds before the tick recovers a job left SUBMITTING (SQUALL_SUBMIT_GRACE); must exceed every function timeout."
  type        = number
  default     = 120
}

variable "submit_budget" {
  description = "Jobs one step submits itself (SQUALL_SUBMIT_BUDGET); the rest of a wider step goes to the tick, so an API call stays well within API Gateway's 30 s."
  type        = number
  default     = 100
}

variable "tick_submits" {
  description = "Jobs one tick submits at most (SQUALL_TICK_SUBMITS); the tick's timeout must allow about tick_submits / 20 + 30 seconds."
  type        = number
  default     = 500
}

variable "fanout_chunk" {
  description = "Lanes of a ForEach, Parallel or Dag one step starts (SQUALL_FANOUT_CHUNK); a wider loop goes on in later steps (ADR 0015). 40 keeps a chunk within one DynamoDB transaction."
  type        = number
  default     = 40
}

variable "submit_seconds" {
  description = "Seconds after which a step stops submitting jobs and leaves the rest to the tick (SQUALL_SUBMIT_SECONDS, ADR 0015)."
  type        = number
  default     = 0.25
}

variable "schedule_submit_seconds" {
  description = "SQUALL_SUBMIT_SECONDS of the schedule function alone: nobody waits on a scheduled start, so its step submits its jobs itself instead of leaving them to the tick after submit_seconds (issue 28: each job left to the tick costs a claim write and waits for a tick)."
  type        = number
  default     = 5
}

variable "tick_seconds" {
  description = "Seconds one tick spends on fan-out continuations and submits (SQUALL_TICK_SECONDS, ADR 0015); must leave 30 s of the tick's timeout for polling, timers and schedules."
  type        = number
  default     = 6
}

variable "finished_ttl_days" {
  description = "Days a finished execution stays in DynamoDB (SQUALL_FINISHED_TTL_DAYS; 0 = forever). The bucket's objects expire a week later."
  type        = number
  default     = 30
}

variable "tick_schedule_expression" {
  description = "EventBridge schedule of the tick."
  type        = string
  default     = "rate(1 minute)"
}

variable "aws_batch" {
  description = "AWS Batch runner, or null: `{ job_queue_arns, default_job_queue_arn, job_definition_arns, register_job_definitions, execution_role_arn, task_role_arn, compute_environment_arn, log_group_name }` (see modules/settings)."
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
}

variable "google_batch" {
  description = "Google Cloud Batch runner's deployment defaults, or null: `{ project_id, region, bucket, notification_topic, deployment = \"squall\", job_service_account, credentials_config }` (credentials_config: the JSON text of a workload identity federation credential configuration, not a key; see modules/settings). Needs a zip built with `squall package --extra gcp` at lambda_zip_path: the default zip has no Google SDK, and every Google task would fail."
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
}

variable "cloud_run" {
  description = "Cloud Run jobs runner's deployment defaults, or null: `{ project_id, region, bucket, deployment = \"squall\", job_service_account, credentials_config }` (as for google_batch; see modules/settings). Cloud Run has no push events for jobs: the tick polls them. Needs a zip built with `squall package --extra gcp` at lambda_zip_path."
  type = object({
    project_id          = string
    region              = string
    bucket              = string
    deployment          = optional(string, "squall")
    job_service_account = optional(string)
    credentials_config  = optional(string)
  })
  default = null
}

variable "schedules" {
  description = "Schedule triggers fired on time by EventBridge Scheduler: `[{ namespace, flow_id, trigger_id, schedule_expression = \"cron(0 2 * * ? *)\", timezone = \"UTC\", enabled = true }]`."
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
}

variable "extra_environment_variables" {
  description = "More environment variables for the functions (not SQUALL_*: those have variables)."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "secret_backends" {
  description = "Where `secret('NAME')` looks, in order (SQUALL_SECRETS): `env` (SECRET_<NAME> base64 variables from extra_environment_variables), `secretsmanager` (secret `<secrets_prefix><NAME>`), `ssm` (parameter `/<secrets_prefix><NAME>`). Not `file`: a Lambda function has no secrets file. Each AWS backend adds its read permission, scoped to the prefix, to the roles of the functions that run flows (not the sweeper)."
  type        = list(string)
  default     = ["env", "secretsmanager"]
  nullable    = false
}

variable "secrets_prefix" {
  description = "Prefix of the secrets the functions may read (SQUALL_SECRETS_PREFIX): secret `<prefix><NAME>`, parameter `/<prefix><NAME>`; IAM grants exactly `secret:<prefix>*` and `parameter/<prefix>*`."
  type        = string
  default     = "squall/"
  nullable    = false
}

variable "secrets_kms_key_arns" {
  description = "Customer managed KMS keys of the secrets or SecureString parameters (kms:Decrypt through Secrets Manager or SSM only). Empty for the AWS managed keys aws/secretsmanager and aws/ssm, which need no grant in the role."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "aws_endpoint_allowlist" {
  description = "http(s) endpoint URLs a flow's taskRunner `endpointOverride` may name (SQUALL_AWS_ENDPOINT_ALLOWLIST, unset when empty); needs aws_batch. Requests to them are signed with the functions' credentials: list only endpoints you run."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "role_permissions_boundary_arn" {
  description = "Permissions boundary for every role the module creates (organisations that require one)."
  type        = string
  default     = null
}

variable "additional_policy_arns" {
  description = "Managed policies attached to every function role, e.g. access to buckets flows name in their own taskRunner options."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "storage" {
  description = "The deployment storage (SQUALL_STORAGE): an s3://<bucket>[/<prefix>] URL where task output files and API uploads go, and from where every function reads them. The functions that run flows may get, put, delete and list objects under that prefix only. Null: s3://<bucket_name>/squall/storage when the module has a bucket (its lifecycle rule expires them with the executions), else unset (each function's own /tmp: files then do not pass from one function to another)."
  type        = string
  default     = null

}

variable "storage_read" {
  description = "More s3://<bucket>[/<prefix>] prefixes a flow's inputFiles may read (SQUALL_STORAGE_READ), each granted s3:GetObject and s3:ListBucket on that prefix only. Empty: nothing outside the storage itself (the control plane reads with its own role, so a flow must not choose the bucket)."
  type        = list(string)
  default     = []
  nullable    = false

}

variable "pubsub_push_audience" {
  description = "Audience of the OIDC token a Google Pub/Sub push subscription sends to POST /events/pubsub (SQUALL_PUBSUB_AUDIENCE; the subscription's `audience`). With pubsub_push_service_account it opens that route on the HTTP API; null: no Pub/Sub ingress."
  type        = string
  default     = null
}

variable "pubsub_push_service_account" {
  description = "Email of the Google service account the push subscription authenticates as (SQUALL_PUBSUB_SERVICE_ACCOUNT)."
  type        = string
  default     = null
}

variable "webhook_secret_arn" {
  description = "Secrets Manager secret of the signed webhooks, POST /events/webhook/<key> (SQUALL_WEBHOOK_SECRETS): AWSCURRENT and AWSPREVIOUS are both accepted (rotate with put-secret-value). Only the events function may read it. Null: no webhook ingress."
  type        = string
  default     = null
}
