################################################################################
# The five functions (api, tick, events, schedule, sweeper): one zip, five handlers.
################################################################################

# Created here, not by Lambda on first run, so the retention and key are ours and
# `terraform destroy` removes the logs with the functions.
resource "aws_cloudwatch_log_group" "lambda" {
  for_each = local.functions

  name              = module.naming.log_group_names[each.key]
  retention_in_days = module.settings.log_retention_in_days
  kms_key_id        = local.kms_key_arn

  tags = var.tags
}

# Where async invocations that failed every retry end up (EventBridge and Scheduler
# deliveries too), and the sweeper's stream batches that kept failing. The events function
# accepts an SQS batch of these, so its queue can be redriven into it directly.
resource "aws_sqs_queue" "dlq" {
  for_each = local.queued

  name                      = module.naming.dlq_names[each.key]
  message_retention_seconds = 1209600 # 14 days, SQS's maximum: time to look before it is gone
  kms_master_key_id         = local.kms_key_arn
  sqs_managed_sse_enabled   = local.kms_key_arn == null ? true : null

  tags = var.tags
}

# EventBridge delivers to a rule target's DLQ with its own principal: allow exactly our rules.
data "aws_iam_policy_document" "dlq" {
  for_each = { for k in ["tick", "events"] : k => k if contains(keys(local.async_functions), k) && (k != "events" || local.batch_enabled) }

  statement {
    sid       = "EventBridgeRuleDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq[each.key].arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [each.key == "tick" ? aws_cloudwatch_event_rule.tick.arn : aws_cloudwatch_event_rule.batch[0].arn]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  for_each = data.aws_iam_policy_document.dlq

  queue_url = aws_sqs_queue.dlq[each.key].id
  policy    = each.value.json
}

resource "aws_lambda_function" "this" {
  for_each = local.functions

  function_name = module.naming.function_names[each.key]
  description   = "Squall ${each.key} (${each.value.handler})"
  role          = aws_iam_role.lambda[each.key].arn
  handler       = each.value.handler
  runtime       = module.settings.lambda_runtime
  architectures = ["arm64"] # Graviton: cheaper per GB-second; `squall package` builds arm64 wheels

  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)

  memory_size                    = each.value.memory_size
  timeout                        = each.value.timeout
  reserved_concurrent_executions = each.value.reserved_concurrent_executions
  kms_key_arn                    = local.kms_key_arn

  # SnapStart (api only): every change publishes a version, which Lambda initialises once
  # and snapshots; cold starts restore the snapshot instead of importing pydantic models and
  # powertools again. The other functions are invoked asynchronously, where a cold start
  # costs no one any waiting, so they stay on $LATEST and are not billed for snapshots.
  publish = local.api_snap_start && each.key == "api"

  dynamic "snap_start" {
    for_each = local.api_snap_start && each.key == "api" ? ["PublishedVersions"] : []
    content {
      apply_on = snap_start.value
    }
  }

  # The sweeper's lacks the secrets and endpoint settings (modules/settings).
  environment {
    variables = module.settings.environments[each.key]
  }

  # JSON: Lambda writes each standard-library log record as one JSON object with its
  # `extra` keys (control_plane/handlers/__init__.py relies on it) and filters by level; it
  # sets AWS_LAMBDA_LOG_LEVEL from application_log_level, which the handlers' loggers and
  # the api's powertools Logger follow (powertools prefers it to POWERTOOLS_LOG_LEVEL).
  logging_config {
    log_format            = module.settings.logging.log_format
    application_log_level = module.settings.logging.application_log_level
    system_log_level      = module.settings.logging.system_log_level
    log_group             = aws_cloudwatch_log_group.lambda[each.key].name
  }

  tracing_config {
    mode = module.settings.tracing_enabled ? "Active" : "PassThrough"
  }

  # Only async functions: API Gateway invokes `api` synchronously, where a DLQ never fires.
  dynamic "dead_letter_config" {
    for_each = each.value.async ? [aws_sqs_queue.dlq[each.key].arn] : []
    content {
      target_arn = dead_letter_config.value
    }
  }

  tags = var.tags

  # The log group and the role's permissions exist before the first invocation can log.
  depends_on = [aws_cloudwatch_log_group.lambda, aws_iam_role_policy.lambda]
}

# What API Gateway invokes when SnapStart is on: the api function's latest published
# version (SnapStart never applies to $LATEST). Each apply that changes the function
# publishes a version and moves the alias; older versions stay until deleted.
resource "aws_lambda_alias" "api" {
  count = local.api_snap_start ? 1 : 0

  name             = module.naming.api_alias_name
  description      = "Latest published version of the api function (SnapStart)"
  function_name    = aws_lambda_function.this["api"].function_name
  function_version = aws_lambda_function.this["api"].version
}

# Retries of async invocations. A tick older than a minute is superseded by the next one;
# a job event or a schedule is worth retrying for a while (each is idempotent).
resource "aws_lambda_function_event_invoke_config" "this" {
  for_each = local.async_functions

  function_name                = aws_lambda_function.this[each.key].function_name
  maximum_retry_attempts       = each.key == "tick" ? 0 : 2
  maximum_event_age_in_seconds = each.key == "tick" ? 60 : 21600
}

# The sweeper purges what TTL cannot reach: a split-mode execution's task runs and logs
# written before its end, and its offloaded outputs. Only TTL expiries of an execution's
# META item invoke it (the same test control_plane/handlers/sweeper.py makes).
resource "aws_lambda_event_source_mapping" "sweeper" {
  function_name     = aws_lambda_function.this["sweeper"].arn
  event_source_arn  = aws_dynamodb_table.this.stream_arn
  starting_position = "LATEST"
  batch_size        = 100

  # A failing batch is split to isolate the record, retried, then sent to the queue:
  # purging is idempotent, and one bad record must not stall the shard for a day.
  bisect_batch_on_function_error = true
  maximum_retry_attempts         = 10
  maximum_record_age_in_seconds  = 86400

  filter_criteria {
    filter {
      pattern = jsonencode({
        eventName    = ["REMOVE"]
        userIdentity = { type = ["Service"], principalId = ["dynamodb.amazonaws.com"] }
        dynamodb = {
          Keys = {
            PK = { S = [{ prefix = "EXEC#" }] }
            SK = { S = ["META"] }
          }
        }
      })
    }
  }

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.dlq["sweeper"].arn
    }
  }

  tags = var.tags
}
