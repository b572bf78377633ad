################################################################################
# EventBridge: the tick's rate rule, Batch job state changes, and Scheduler schedules.
################################################################################

locals {
  batch_enabled = module.settings.aws_batch != null
}

resource "aws_cloudwatch_event_rule" "tick" {
  name                = module.naming.tick_rule_name
  description         = "Squall tick: timers, outbox recovery, reconcile, Schedule triggers"
  schedule_expression = module.settings.tick_schedule_expression

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "tick" {
  rule = aws_cloudwatch_event_rule.tick.name
  arn  = aws_lambda_function.this["tick"].arn

  # A tick delivered late is worthless: the next one comes within a minute.
  retry_policy {
    maximum_event_age_in_seconds = 60
    maximum_retry_attempts       = 0
  }

  dead_letter_config {
    arn = aws_sqs_queue.dlq["tick"].arn
  }
}

resource "aws_lambda_permission" "tick" {
  statement_id  = "AllowTickRule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["tick"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.tick.arn
}

# Completion is event-first: Batch publishes job state changes on the default bus for free.
# Only the configured queues' jobs, and only their ends (runners/aws_batch/taxonomy.py
# PUSHED_STATES: the engine acts on nothing else; a running job is polled by the tick once it
# had no news for reconcile_after). Events from queues in another region or account never
# reach this bus, and the tick's reconcile poll covers those.
resource "aws_cloudwatch_event_rule" "batch" {
  count = local.batch_enabled ? 1 : 0

  name        = module.naming.batch_rule_name
  description = "Squall: AWS Batch job state changes of the configured job queues"
  event_pattern = jsonencode({
    source        = ["aws.batch"]
    "detail-type" = ["Batch Job State Change"]
    detail = {
      jobQueue = module.settings.aws_batch.job_queue_arns
      status   = ["SUCCEEDED", "FAILED"]
    }
  })

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "batch" {
  count = local.batch_enabled ? 1 : 0

  rule = aws_cloudwatch_event_rule.batch[0].name
  arn  = aws_lambda_function.this["events"].arn

  retry_policy {
    maximum_event_age_in_seconds = 21600
    maximum_retry_attempts       = 10
  }

  dead_letter_config {
    arn = aws_sqs_queue.dlq["events"].arn
  }
}

resource "aws_lambda_permission" "batch" {
  count = local.batch_enabled ? 1 : 0

  statement_id  = "AllowBatchJobStateRule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["events"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.batch[0].arn
}

# One schedule per entry of var.schedules, invoking the schedule function with
# {"namespace", "flowId", "triggerId"}. Terraform owns them (not the Lambda), so the
# functions need no scheduler:* or iam:PassRole permission; the tick evaluates every
# Schedule trigger each minute anyway, so a missing or late schedule only costs precision.
resource "aws_scheduler_schedule_group" "this" {
  name = module.naming.schedule_group_name

  tags = var.tags
}

resource "aws_scheduler_schedule" "this" {
  for_each = module.settings.schedules

  name                         = module.naming.schedule_names[each.key]
  group_name                   = aws_scheduler_schedule_group.this.name
  description                  = "Squall Schedule trigger ${each.key}"
  schedule_expression          = each.value.schedule_expression
  schedule_expression_timezone = each.value.timezone
  state                        = each.value.enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = local.kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.this["schedule"].arn
    role_arn = aws_iam_role.scheduler.arn
    input    = each.value.input

    retry_policy {
      maximum_event_age_in_seconds = 3600
      maximum_retry_attempts       = 2
    }

    dead_letter_config {
      arn = aws_sqs_queue.dlq["schedule"].arn
    }
  }
}
