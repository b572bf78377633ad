################################################################################
# IAM: one role per function, least privilege. The statements are data in
# modules/policies (tested offline); this file only renders them.
################################################################################

module "policies" {
  source = "./modules/policies"

  partition               = local.partition
  region                  = local.region
  account_id              = local.account_id
  table_arn               = aws_dynamodb_table.this.arn
  table_stream_arn        = aws_dynamodb_table.this.stream_arn
  bucket_arn              = local.bucket_arn
  store_prefix            = module.settings.store_prefix
  staging_prefix          = module.settings.staging_prefix
  kms_key_arn             = local.kms_key_arn
  function_log_group_arns = { for k, g in aws_cloudwatch_log_group.lambda : k => g.arn }
  dlq_arns                = { for k, q in aws_sqs_queue.dlq : k => q.arn }
  schedule_function_arn   = "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${module.naming.function_names["schedule"]}"
  tracing_enabled         = module.settings.tracing_enabled
  aws_batch               = module.settings.aws_batch
  secret_backends         = module.settings.secret_backends
  secrets_prefix          = module.settings.secrets_prefix
  secrets_kms_key_arns    = module.settings.secrets_kms_key_arns
  dns_suffix              = data.aws_partition.current.dns_suffix
  storage                 = module.settings.storage
  storage_read            = module.settings.storage_read
  webhook_secret_arn      = module.settings.ingress.webhook_secret_arn
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    sid     = "LambdaAssume"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  for_each = local.functions

  name                 = module.naming.role_names[each.key]
  description          = "Squall ${each.key} function"
  assume_role_policy   = data.aws_iam_policy_document.lambda_assume.json
  permissions_boundary = var.role_permissions_boundary_arn

  tags = var.tags
}

data "aws_iam_policy_document" "lambda" {
  for_each = local.functions

  dynamic "statement" {
    for_each = module.policies.statements[each.key]
    content {
      sid       = statement.value.sid
      effect    = "Allow"
      actions   = statement.value.actions
      resources = statement.value.resources

      dynamic "condition" {
        for_each = statement.value.condition
        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }
}

resource "aws_iam_role_policy" "lambda" {
  for_each = local.functions

  name   = "squall"
  role   = aws_iam_role.lambda[each.key].id
  policy = data.aws_iam_policy_document.lambda[each.key].json
}

resource "aws_iam_role_policy_attachment" "additional" {
  for_each = {
    for pair in setproduct(keys(local.functions), var.additional_policy_arns) : "${pair[0]}:${pair[1]}" => { function = pair[0], policy_arn = pair[1] }
  }

  role       = aws_iam_role.lambda[each.value.function].name
  policy_arn = each.value.policy_arn
}

# EventBridge Scheduler assumes this role to invoke the schedule function. Only schedules
# of this account may use it (confused deputy).
data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    sid     = "SchedulerAssume"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name                 = module.naming.role_names["scheduler"]
  description          = "EventBridge Scheduler: invokes the Squall schedule function"
  assume_role_policy   = data.aws_iam_policy_document.scheduler_assume.json
  permissions_boundary = var.role_permissions_boundary_arn

  tags = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  dynamic "statement" {
    for_each = module.policies.scheduler_statements
    content {
      sid       = statement.value.sid
      effect    = "Allow"
      actions   = statement.value.actions
      resources = statement.value.resources

      dynamic "condition" {
        for_each = statement.value.condition
        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "squall"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
