output "api_url" {
  description = "Base URL of the HTTP API (routes: /api/v1/..., /webhooks/..., /openapi.json)."
  value       = aws_apigatewayv2_stage.default.invoke_url
}

output "api_id" {
  description = "HTTP API id."
  value       = aws_apigatewayv2_api.this.id
}

output "api_execution_arn" {
  description = "Execution ARN of the API: grant callers execute-api:Invoke on \"<this>/*/*/api/*\" (AWS_IAM authorization)."
  value       = aws_apigatewayv2_api.this.execution_arn
}

output "table_name" {
  description = "DynamoDB table name (SQUALL_TABLE)."
  value       = aws_dynamodb_table.this.name
}

output "table_arn" {
  description = "DynamoDB table ARN."
  value       = aws_dynamodb_table.this.arn
}

output "function_names" {
  description = "Lambda function names by key (api, tick, events, schedule, sweeper)."
  value       = { for k, f in aws_lambda_function.this : k => f.function_name }
}

output "function_arns" {
  description = "Lambda function ARNs by key."
  value       = { for k, f in aws_lambda_function.this : k => f.arn }
}

output "api_alias_arn" {
  description = "ARN of the api function's `live` alias that API Gateway invokes when snap_start is on, else null."
  value       = local.api_snap_start ? aws_lambda_alias.api[0].arn : null
}

output "role_arns" {
  description = "IAM role ARNs by function key, plus `scheduler`."
  value       = merge({ for k, r in aws_iam_role.lambda : k => r.arn }, { scheduler = aws_iam_role.scheduler.arn })
}

output "role_names" {
  description = "IAM role names by function key, plus `scheduler` (attach more policies to these)."
  value       = merge({ for k, r in aws_iam_role.lambda : k => r.name }, { scheduler = aws_iam_role.scheduler.name })
}

output "log_group_names" {
  description = "CloudWatch log groups by function key, plus `api_access`."
  value       = merge({ for k, g in aws_cloudwatch_log_group.lambda : k => g.name }, { api_access = aws_cloudwatch_log_group.api_access.name })
}

output "dead_letter_queue_urls" {
  description = "SQS dead-letter queues by function key (tick, events, schedule, sweeper)."
  value       = { for k, q in aws_sqs_queue.dlq : k => q.url }
}

output "bucket_name" {
  description = "S3 bucket for outputs and Batch staging (SQUALL_BUCKET), or null."
  value       = local.bucket_name
}

output "bucket_arn" {
  description = "ARN of that bucket, or null."
  value       = local.bucket_arn
}

output "schedule_group_name" {
  description = "EventBridge Scheduler group of the module's schedules."
  value       = aws_scheduler_schedule_group.this.name
}

output "schedule_arns" {
  description = "Scheduler schedule ARNs by namespace/flow_id/trigger_id."
  value       = { for k, s in aws_scheduler_schedule.this : k => s.arn }
}

output "environment" {
  description = "The SQUALL_* environment of the functions (to run `squall server --store dynamodb` against the same table, for instance)."
  value       = module.settings.squall_environment
}

output "event_ingress_urls" {
  description = "URLs of the events function's HTTP ingress: `pubsub` (the push endpoint of a Pub/Sub subscription) and `webhook` (append the routing key), each null when off."
  value = {
    pubsub  = local.ingress.pubsub ? "${trimsuffix(aws_apigatewayv2_stage.default.invoke_url, "/")}/events/pubsub" : null
    webhook = local.ingress.webhook ? "${trimsuffix(aws_apigatewayv2_stage.default.invoke_url, "/")}/events/webhook/" : null
  }
}
