data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.id # the name in 5.x and 6.x alike (see versions.tf)

  # A bucket the module creates gets a generated, globally unique name unless one is given;
  # with create_bucket = false, bucket_name names an existing bucket (or null: no bucket).
  bucket_name = var.create_bucket ? coalesce(var.bucket_name, module.naming.bucket_name) : var.bucket_name
  bucket_arn  = local.bucket_name == null ? null : "arn:${local.partition}:s3:::${local.bucket_name}"

  functions       = module.settings.functions
  async_functions = { for k, f in local.functions : k => f if f.async }
  queued          = { for k, f in local.functions : k => f if f.dead_letters }
  kms_key_arn     = module.settings.kms_key_arn
  api_snap_start  = module.settings.snap_start
}

module "naming" {
  source = "./modules/naming"

  name          = var.name
  account_id    = local.account_id
  region        = local.region
  schedule_keys = [for s in var.schedules : "${s.namespace}/${s.flow_id}/${s.trigger_id}"]
}

# Every setting goes through this module: it holds the validation (testable without a
# provider) and hands back the values the resources use.
module "settings" {
  source = "./modules/settings"

  table_name                  = module.naming.table_name
  bucket_name                 = local.bucket_name
  lambda_runtime              = var.lambda_runtime
  functions                   = var.functions
  tracing_enabled             = var.tracing_enabled
  log_retention_in_days       = var.log_retention_in_days
  kms_key_arn                 = var.kms_key_arn
  api_authorization           = var.api_authorization
  jwt_authorizer              = var.jwt_authorizer
  ui_oidc                     = var.ui_oidc
  api_throttling              = var.api_throttling
  max_body_bytes              = var.max_body_bytes
  reconcile_after_seconds     = var.reconcile_after_seconds
  submit_grace_seconds        = var.submit_grace_seconds
  submit_budget               = var.submit_budget
  tick_submits                = var.tick_submits
  fanout_chunk                = var.fanout_chunk
  submit_seconds              = var.submit_seconds
  schedule_submit_seconds     = var.schedule_submit_seconds
  tick_seconds                = var.tick_seconds
  application_log_level       = var.application_log_level
  system_log_level            = var.system_log_level
  snap_start                  = var.snap_start
  finished_ttl_days           = var.finished_ttl_days
  tick_schedule_expression    = var.tick_schedule_expression
  aws_batch                   = var.aws_batch
  google_batch                = var.google_batch
  cloud_run                   = var.cloud_run
  schedules                   = var.schedules
  extra_environment_variables = var.extra_environment_variables
  secret_backends             = var.secret_backends
  secrets_prefix              = var.secrets_prefix
  secrets_kms_key_arns        = var.secrets_kms_key_arns
  aws_endpoint_allowlist      = var.aws_endpoint_allowlist
  storage                     = var.storage
  storage_read                = var.storage_read
  pubsub_push_audience        = var.pubsub_push_audience
  pubsub_push_service_account = var.pubsub_push_service_account
  webhook_secret_arn          = var.webhook_secret_arn
}

################################################################################
# DynamoDB: the single table of control_plane/store/dynamodb_schema.py. Keys, attributes
# and indexes are checked against that module's constants by tests/infra.
################################################################################

resource "aws_dynamodb_table" "this" {
  name         = module.naming.table_name
  billing_mode = "PAY_PER_REQUEST" # dynamodb_schema.BILLING_MODE: an idle installation pays for storage only
  hash_key     = "PK"
  range_key    = "SK"

  attribute {
    name = "PK"
    type = "S"
  }
  attribute {
    name = "SK"
    type = "S"
  }
  attribute {
    name = "xg"
    type = "S"
  }
  attribute {
    name = "xc"
    type = "S"
  }
  attribute {
    name = "tq"
    type = "S"
  }
  attribute {
    name = "ta"
    type = "S"
  }
  attribute {
    name = "jq"
    type = "S"
  }
  attribute {
    name = "jr"
    type = "S"
  }
  attribute {
    name = "aq"
    type = "S"
  }
  attribute {
    name = "ar"
    type = "S"
  }
  attribute {
    name = "fg"
    type = "S"
  }
  attribute {
    name = "fk"
    type = "S"
  }

  # Listing index: immutable attributes only, so it is written once per execution.
  global_secondary_index {
    name               = "executions"
    hash_key           = "xg"
    range_key          = "xc"
    projection_type    = "INCLUDE"
    non_key_attributes = ["xn", "xf"]
  }

  global_secondary_index {
    name            = "timers"
    hash_key        = "tq"
    range_key       = "ta"
    projection_type = "KEYS_ONLY"
  }

  global_secondary_index {
    name            = "active-jobs"
    hash_key        = "jq"
    range_key       = "jr"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "active-executions"
    hash_key        = "aq"
    range_key       = "ar"
    projection_type = "KEYS_ONLY"
  }

  global_secondary_index {
    name            = "flows"
    hash_key        = "fg"
    range_key       = "fk"
    projection_type = "ALL"
  }

  # dynamodb_schema.STREAM_VIEW_TYPE: the sweeper needs the keys of the META items TTL removed.
  stream_enabled   = true
  stream_view_type = "KEYS_ONLY"

  # Finished executions, DONE jobs and leftover redo chunks carry `ttl` (epoch seconds).
  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery_enabled
  }

  # Always KMS: the customer key when given, else the AWS managed aws/dynamodb key.
  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }

  deletion_protection_enabled = var.deletion_protection_enabled

  tags = var.tags
}
