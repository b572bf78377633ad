output "functions" {
  description = "The functions: handler, async (invoked asynchronously), dead_letters (has a DLQ), memory_size, timeout, reserved_concurrent_executions."
  value       = local.functions
}

output "lambda_runtime" {
  description = "Validated Lambda runtime."
  value       = var.lambda_runtime
}

output "environment" {
  description = "Environment of the functions that run flows (api, tick, events, schedule): PYDANTIC_DISABLE_PLUGINS=__all__, extra_environment_variables, and the SQUALL_* settings."
  value       = merge(local.process_environment, var.extra_environment_variables, local.squall_environment)
}

output "environments" {
  description = "Environment of each function, by key: `environment` for those that run flows; the sweeper's without the secrets and endpoint settings and without SECRET_* variables."
  value       = local.environments
}

output "squall_environment" {
  description = "Only the SQUALL_* settings the module sets (each is a field of control_plane.runtime.Settings), as the functions that run flows get them."
  value       = local.squall_environment
}

output "runners" {
  description = "SQUALL_RUNNERS as an object: runner name -> constructor keywords."
  value       = local.runners
}

output "aws_batch" {
  description = "Validated AWS Batch settings with defaults applied, or null."
  value       = local.batch
}

output "google_batch" {
  description = "Validated Google Batch settings with defaults applied (credentials_config decoded), or null."
  value       = local.google_batch
}

output "store_prefix" {
  description = "Key prefix of the store's offloaded outputs in the bucket."
  value       = local.store_prefix
}

output "staging_prefix" {
  description = "Key prefix (no trailing slash) of the Batch runner's staged files in the bucket."
  value       = local.staging_prefix
}

output "schedules" {
  description = "Schedules keyed by namespace/flow_id/trigger_id, each with its Lambda input JSON."
  value       = local.schedules
}

output "tracing_enabled" {
  description = "Validated X-Ray switch."
  value       = var.tracing_enabled
}

output "log_retention_in_days" {
  description = "Validated log retention."
  value       = var.log_retention_in_days
}

output "kms_key_arn" {
  description = "Validated customer managed key ARN, or null."
  value       = var.kms_key_arn
}

output "api_authorization" {
  description = "Validated authorization type: AWS_IAM or JWT."
  value       = var.api_authorization
}

output "jwt_authorizer" {
  description = "Validated JWT authorizer settings (null unless JWT)."
  value       = var.api_authorization == "JWT" ? var.jwt_authorizer : null
}

output "api_throttling" {
  description = "Validated stage throttling."
  value       = var.api_throttling
}

output "api_integration_timeout_ms" {
  description = "HTTP API integration timeout: the api function's timeout, in milliseconds (at most 30000)."
  value       = min(var.functions.api.timeout, 30) * 1000
}

output "tick_schedule_expression" {
  description = "Validated tick schedule."
  value       = var.tick_schedule_expression
}

output "finished_ttl_days" {
  description = "Validated finished-execution TTL (days; 0 = forever)."
  value       = var.finished_ttl_days
}

output "logging" {
  description = "Lambda logging_config of every function: JSON format (the handlers rely on it for structured lines), validated application and system log levels."
  value = {
    log_format            = "JSON"
    application_log_level = var.application_log_level
    system_log_level      = var.system_log_level
  }
}

output "snap_start" {
  description = "Whether the api function is published with SnapStart and served through its alias."
  value       = var.snap_start
}

output "secret_backends" {
  description = "Validated secret() backends, in lookup order (SQUALL_SECRETS)."
  value       = var.secret_backends
}

output "secrets_prefix" {
  description = "Validated secrets prefix (SQUALL_SECRETS_PREFIX)."
  value       = var.secrets_prefix
}

output "secrets_kms_key_arns" {
  description = "Validated customer managed keys of the secrets (kms:Decrypt through Secrets Manager or SSM)."
  value       = distinct(var.secrets_kms_key_arns)
}

output "aws_endpoint_allowlist" {
  description = "Validated endpoint URLs a flow's taskRunner may name (SQUALL_AWS_ENDPOINT_ALLOWLIST)."
  value       = var.aws_endpoint_allowlist
}

output "storage" {
  description = "The deployment storage (SQUALL_STORAGE) as {url, bucket, prefix} (prefix: the key prefix with a trailing /, or empty for the whole bucket), or null."
  value       = local.storage
}

output "storage_read" {
  description = "The read allowlist (SQUALL_STORAGE_READ) as a list of {bucket, prefix}."
  value       = local.storage_read
}

output "ingress" {
  description = "The events function's HTTP ingress: `pubsub` and `webhook` (each on or off), `enabled` when either is, the validated `webhook_secret_arn` (or null) and the HTTP API integration timeout in milliseconds."
  value = {
    pubsub                 = var.pubsub_push_audience != null
    webhook                = var.webhook_secret_arn != null
    enabled                = var.pubsub_push_audience != null || var.webhook_secret_arn != null
    webhook_secret_arn     = var.webhook_secret_arn
    integration_timeout_ms = min(var.functions.events.timeout, 30) * 1000
  }
}
