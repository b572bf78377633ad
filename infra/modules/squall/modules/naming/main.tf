# Every AWS name the squall module creates, derived from one prefix, so the length limits
# of each service can be checked in one place (`terraform test`, no provider needed).

variable "name" {
  description = "Prefix of every resource name: lowercase letters, digits and hyphens, starting with a letter, at most 24 characters."
  type        = string

  validation {
    # 24: the generated bucket name <name>-<account id>-<region> must fit S3's 63, and
    # <name>-<function>-lambda role names IAM's 64, with room to spare.
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$|^[a-z]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 1-24 lowercase letters, digits or single hyphens, starting with a letter and not ending with a hyphen (it prefixes S3 bucket, Lambda and IAM names)."
  }
}

variable "account_id" {
  description = "AWS account id (12 digits), for the globally unique bucket name."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "region" {
  description = "AWS region, for the globally unique bucket name."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like eu-west-1."
  }
}

variable "schedule_keys" {
  description = "Keys namespace/flow_id/trigger_id of the Scheduler schedules to name."
  type        = list(string)
  default     = []
  nullable    = false
}

locals {
  functions = ["api", "tick", "events", "schedule", "sweeper"]

  function_names = { for f in local.functions : f => "${var.name}-${f}" }

  # Scheduler names allow [0-9a-zA-Z-_.] up to 64 and are unique per group (the group
  # carries the prefix): a readable slug of flow and trigger, plus a hash of the full key
  # so two keys that slug alike still differ.
  schedule_names = {
    for key in var.schedule_keys : key => format(
      "%s-%s",
      trim(substr(replace(join("-", slice(split("/", key), 1, 3)), "/[^0-9A-Za-z_.-]/", "-"), 0, 50), "-"),
      substr(sha1(key), 0, 8),
    )
  }
}

output "function_names" {
  description = "Lambda function names by function key."
  value       = local.function_names
}

output "api_alias_name" {
  description = "Alias of the api function's published version, invoked by API Gateway when SnapStart is on."
  value       = "live"
}

output "role_names" {
  description = "IAM role names by function key, plus `scheduler` (the role EventBridge Scheduler assumes)."
  value       = merge({ for f in local.functions : f => "${var.name}-${f}-lambda" }, { scheduler = "${var.name}-scheduler" })
}

output "log_group_names" {
  description = "CloudWatch log groups: Lambda's fixed /aws/lambda/<function> per function, and `api` access logs."
  value = merge(
    { for f, n in local.function_names : f => "/aws/lambda/${n}" },
    { api_access = "/aws/apigateway/${var.name}-api" },
  )
}

output "table_name" {
  description = "DynamoDB table name."
  value       = var.name
}

output "bucket_name" {
  description = "Generated S3 bucket name: globally unique through account id and region."
  value       = "${var.name}-${var.account_id}-${var.region}"
}

output "api_name" {
  description = "HTTP API name."
  value       = "${var.name}-api"
}

output "tick_rule_name" {
  description = "EventBridge rule of the tick."
  value       = "${var.name}-tick"
}

output "batch_rule_name" {
  description = "EventBridge rule of Batch job state changes."
  value       = "${var.name}-batch-job-state"
}

output "schedule_group_name" {
  description = "EventBridge Scheduler schedule group."
  value       = var.name
}

output "schedule_names" {
  description = "Scheduler schedule names by namespace/flow_id/trigger_id."
  value       = local.schedule_names
}

output "dlq_names" {
  description = "SQS dead-letter queue names by function key (all but api)."
  value       = { for f in ["tick", "events", "schedule", "sweeper"] : f => "${var.name}-${f}-dlq" }
}
