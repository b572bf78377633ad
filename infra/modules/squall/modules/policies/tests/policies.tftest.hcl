# The statements hold no "*" action, use resource "*" only for actions IAM cannot scope, and
# grant exactly what each configuration needs.

variables {
  partition        = "aws"
  region           = "eu-west-1"
  account_id       = "123456789012"
  table_arn        = "arn:aws:dynamodb:eu-west-1:123456789012:table/squall"
  table_stream_arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/squall/stream/2026-01-01T00:00:00.000"
  bucket_arn       = "arn:aws:s3:::squall-123456789012-eu-west-1"
  function_log_group_arns = {
    api      = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/squall-api"
    tick     = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/squall-tick"
    events   = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/squall-events"
    schedule = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/squall-schedule"
    sweeper  = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/squall-sweeper"
  }
  dlq_arns = {
    tick     = "arn:aws:sqs:eu-west-1:123456789012:squall-tick-dlq"
    events   = "arn:aws:sqs:eu-west-1:123456789012:squall-events-dlq"
    schedule = "arn:aws:sqs:eu-west-1:123456789012:squall-schedule-dlq"
    sweeper  = "arn:aws:sqs:eu-west-1:123456789012:squall-sweeper-dlq"
  }
  schedule_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:squall-schedule"
  tracing_enabled       = true
  kms_key_arn           = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  aws_batch = {
    job_queue_arns           = ["arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate", "arn:aws:batch:us-east-1:210987654321:job-queue/gpu"]
    job_definition_arns      = ["arn:aws:batch:eu-west-1:123456789012:job-definition/etl:3"]
    register_job_definitions = true
    execution_role_arn       = "arn:aws:iam::123456789012:role/squall-batch-execution"
    task_role_arn            = "arn:aws:iam::123456789012:role/squall-batch-task"
    compute_environment_arn  = "arn:aws:batch:eu-west-1:123456789012:compute-environment/fargate-spot"
    log_group_name           = "/aws/batch/job"
  }
}

run "everything_enabled" {
  command = plan

  assert {
    condition     = alltrue(flatten([for f, sts in output.statements : [for s in sts : [for a in s.actions : a != "*" && !endswith(a, ":*")]]]))
    error_message = "No statement may grant a \"*\" or \"service:*\" action."
  }

  assert {
    condition = alltrue(flatten([
      for f, sts in output.statements : [
        for s in sts : [for a in s.actions : contains(keys(output.wildcard_actions), a)] if contains(s.resources, "*")
      ]
    ]))
    error_message = "A statement on resource \"*\" may only hold actions without resource-level permissions (wildcard_actions)."
  }

  assert {
    condition     = alltrue(flatten([for f, sts in output.statements : [for s in sts : !contains(s.resources, "*") || length(s.resources) == 1]]))
    error_message = "Resource \"*\" must stand alone in its statement, so the scoped resources next to it are not a false comfort."
  }

  assert {
    condition     = jsonencode(sort(keys(output.statements))) == jsonencode(["api", "events", "schedule", "sweeper", "tick"])
    error_message = "One statement list per function."
  }

  assert {
    condition     = length([for s in output.statements.api : s if s.sid == "DeadLetterQueue"]) == 0 && length([for s in output.statements.events : s if s.sid == "DeadLetterQueue"]) == 1
    error_message = "Only the async functions may write to a dead-letter queue."
  }

  assert {
    condition     = jsonencode(one([for s in output.statements.tick : s if s.sid == "BatchControlJobs"]).resources) == jsonencode(["arn:aws:batch:eu-west-1:123456789012:job/*", "arn:aws:batch:us-east-1:210987654321:job/*"])
    error_message = "Jobs are scoped to the region and account of each configured queue."
  }

  assert {
    condition     = jsonencode(one([for s in output.statements.tick : s if s.sid == "BatchPassJobRoles"]).resources) == jsonencode(["arn:aws:iam::123456789012:role/squall-batch-execution", "arn:aws:iam::123456789012:role/squall-batch-task"])
    error_message = "iam:PassRole only for the configured job roles."
  }

  assert {
    condition     = one([for s in output.statements.tick : s if s.sid == "BatchPassJobRoles"]).condition[0].values[0] == "ecs-tasks.amazonaws.com"
    error_message = "iam:PassRole only to ECS tasks."
  }

  assert {
    condition     = contains(one([for s in output.statements.api : s if s.sid == "BatchSubmit"]).resources, "arn:aws:batch:eu-west-1:123456789012:job-definition/squall-*")
    error_message = "SubmitJob must cover the squall-* definitions the runner registers."
  }

  assert {
    condition     = one([for s in output.statements.api : s if s.sid == "BatchJobLogs"]).resources[1] == "arn:aws:logs:us-east-1:210987654321:log-group:/aws/batch/job:*"
    error_message = "Batch logs are read in each queue's region and account."
  }

  assert {
    condition     = length([for s in output.statements.sweeper : s if startswith(s.sid, "Batch")]) == 0 && length([for s in output.statements.sweeper : s if contains(s.actions, "dynamodb:PutItem")]) == 0
    error_message = "The sweeper only purges: no Batch, no PutItem."
  }

  assert {
    condition     = jsonencode(one([for s in output.statements.sweeper : s if s.sid == "ReadTableStream"]).resources) == jsonencode(["arn:aws:dynamodb:eu-west-1:123456789012:table/squall/stream/2026-01-01T00:00:00.000"])
    error_message = "The sweeper reads the table's stream only."
  }

  assert {
    condition     = jsonencode(one([for s in output.statements.api : s if s.sid == "TableIndexes"]).actions) == jsonencode(["dynamodb:Query"])
    error_message = "Indexes are only queried."
  }

  assert {
    condition     = jsonencode(output.scheduler_statements[0].resources) == jsonencode(["arn:aws:lambda:eu-west-1:123456789012:function:squall-schedule", "arn:aws:lambda:eu-west-1:123456789012:function:squall-schedule:*"])
    error_message = "The Scheduler role invokes the schedule function and nothing else."
  }

  assert {
    condition     = jsonencode(output.managed_tag) == jsonencode({ key = "squall:managed", value = "true" })
    error_message = "The tag is squall:managed = true, what runners/aws_batch/runner.py puts on every job."
  }

  assert {
    condition = alltrue(flatten([
      for f, sts in output.statements : [
        for s in sts : jsonencode(s.condition) == jsonencode([{ test = "StringEquals", variable = "aws:ResourceTag/squall:managed", values = ["true"] }])
        if contains(s.actions, "batch:CancelJob") || contains(s.actions, "batch:TerminateJob")
      ]
    ]))
    error_message = "Every statement that cancels or terminates Batch jobs is limited to jobs tagged squall:managed = true."
  }

  assert {
    condition     = length(flatten([for f, sts in output.statements : [for s in sts : s if contains(s.actions, "batch:TerminateJob")]])) == 4
    error_message = "Exactly the four service functions (not the sweeper) may stop jobs."
  }

  assert {
    condition = alltrue(flatten([
      for f, sts in output.statements : [
        for s in sts : jsonencode(s.condition) == jsonencode([{ test = "StringEquals", variable = "aws:RequestTag/squall:managed", values = ["true"] }])
        if length(setintersection(s.actions, ["batch:SubmitJob", "batch:RegisterJobDefinition", "batch:TagResource"])) > 0
      ]
    ]))
    error_message = "SubmitJob, RegisterJobDefinition and TagResource require the request to carry squall:managed = true."
  }

  assert {
    condition     = length(flatten([for f, sts in output.statements : [for s in sts : s if length(setintersection(s.actions, ["batch:SubmitJob", "batch:RegisterJobDefinition", "batch:TagResource"])) > 0]])) == 12
    error_message = "Each service function has its submit, register and tag statements (three each), all covered above."
  }
}

run "minimal_has_no_wildcard_resource" {
  command = plan

  variables {
    aws_batch       = null
    bucket_arn      = null
    kms_key_arn     = null
    tracing_enabled = false
  }

  assert {
    condition     = alltrue(flatten([for f, sts in output.statements : [for s in sts : !contains(s.resources, "*") || jsonencode(s.actions) == jsonencode(["dynamodb:ListStreams"])]]))
    error_message = "Without Batch and X-Ray only the sweeper's ListStreams needs resource \"*\"."
  }

  assert {
    condition     = length(flatten([for f, sts in output.statements : [for s in sts : s if startswith(s.actions[0], "s3:") || startswith(s.actions[0], "batch:")]])) == 0
    error_message = "No S3 or Batch permissions without a bucket and a Batch runner."
  }
}

run "fixed_definitions_only" {
  command = plan

  variables {
    aws_batch = {
      job_queue_arns           = ["arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"]
      job_definition_arns      = ["arn:aws:batch:eu-west-1:123456789012:job-definition/etl:3"]
      register_job_definitions = false
      execution_role_arn       = null
      task_role_arn            = null
      compute_environment_arn  = null
      log_group_name           = "/aws/batch/job"
    }
  }

  assert {
    condition     = length([for s in output.statements.tick : s if s.sid == "BatchRegisterOwnDefinitions" || s.sid == "BatchPassJobRoles"]) == 0
    error_message = "No RegisterJobDefinition and no PassRole when Squall registers nothing and passes no role."
  }

  assert {
    condition     = jsonencode(one([for s in output.statements.tick : s if s.sid == "BatchReadJobs"]).actions) == jsonencode(["batch:DescribeJobs", "batch:ListJobs"])
    error_message = "Only the wildcard reads the runner needs."
  }

  assert {
    condition     = one([for s in output.statements.tick : s if s.sid == "BatchSubmit"]).condition[0].variable == "aws:RequestTag/squall:managed" && one([for s in output.statements.tick : s if s.sid == "BatchControlJobs"]).condition[0].variable == "aws:ResourceTag/squall:managed"
    error_message = "Fixed job definitions change nothing about the tag conditions."
  }
}

# secret('NAME'): each AWS backend's one read action, on the prefix, for the four functions
# that run flows; never for the sweeper or the Scheduler role.

run "secrets_in_both_services_with_a_customer_key" {
  command = plan

  variables {
    secret_backends      = ["env", "secretsmanager", "ssm"]
    secrets_prefix       = "/prod/squall/"
    secrets_kms_key_arns = ["arn:aws:kms:eu-west-1:123456789012:key/5678abcd-12ab-34cd-56ef-1234567890ab"]
  }

  assert {
    condition = alltrue([
      for f in ["api", "tick", "events", "schedule"] : jsonencode([for s in output.statements[f] : [s.actions, s.resources] if contains(["ReadSecrets", "ReadParameters"], s.sid)]) == jsonencode([
        [["secretsmanager:GetSecretValue"], ["arn:aws:secretsmanager:eu-west-1:123456789012:secret:/prod/squall/*"]],
        [["ssm:GetParameter"], ["arn:aws:ssm:eu-west-1:123456789012:parameter/prod/squall/*"]],
      ])
    ])
    error_message = "Each function that runs flows reads secrets and parameters under the prefix only; the parameter ARN does not repeat the name's leading /."
  }

  assert {
    condition = alltrue([
      for f in ["api", "tick", "events", "schedule"] : jsonencode(one([for s in output.statements[f] : s if s.sid == "DecryptSecrets"])) == jsonencode({
        sid       = "DecryptSecrets"
        actions   = ["kms:Decrypt"]
        resources = ["arn:aws:kms:eu-west-1:123456789012:key/5678abcd-12ab-34cd-56ef-1234567890ab"]
        condition = [{ test = "StringEquals", variable = "kms:ViaService", values = ["secretsmanager.eu-west-1.amazonaws.com", "ssm.eu-west-1.amazonaws.com"] }]
      })
    ])
    error_message = "The secrets' customer key is decrypted only through Secrets Manager or SSM."
  }

  assert {
    condition     = length([for s in concat(output.statements.sweeper, output.scheduler_statements) : s if length([for a in s.actions : a if startswith(a, "secretsmanager:") || startswith(a, "ssm:")]) > 0 || s.sid == "DecryptSecrets"]) == 0
    error_message = "The sweeper and the Scheduler role read no secret."
  }
}

run "secrets_manager_only_with_aws_managed_key" {
  command = plan

  variables {
    secret_backends = ["env", "secretsmanager"]
  }

  assert {
    condition     = jsonencode(one([for s in output.statements.api : s if s.sid == "ReadSecrets"]).resources) == jsonencode(["arn:aws:secretsmanager:eu-west-1:123456789012:secret:squall/*"])
    error_message = "Secrets Manager under the default prefix squall/."
  }

  assert {
    condition     = length(flatten([for f, sts in output.statements : [for s in sts : s if contains(["ReadParameters", "DecryptSecrets"], s.sid)]])) == 0
    error_message = "No SSM permission without the ssm backend, and no kms:Decrypt for the AWS managed key."
  }
}

run "parameter_store_with_the_default_prefix" {
  command = plan

  variables {
    secret_backends = ["ssm"]
  }

  assert {
    condition     = jsonencode(one([for s in output.statements.events : s if s.sid == "ReadParameters"]).resources) == jsonencode(["arn:aws:ssm:eu-west-1:123456789012:parameter/squall/*"])
    error_message = "Parameter /squall/NAME has the ARN parameter/squall/NAME."
  }

  assert {
    condition     = length(flatten([for f, sts in output.statements : [for s in sts : s if s.sid == "ReadSecrets"]])) == 0
    error_message = "No Secrets Manager permission without the secretsmanager backend."
  }
}

run "env_only_reads_nothing_from_aws" {
  command = plan

  variables {
    secret_backends      = ["env"]
    secrets_kms_key_arns = ["arn:aws:kms:eu-west-1:123456789012:key/5678abcd-12ab-34cd-56ef-1234567890ab"]
  }

  assert {
    condition     = length(flatten([for f, sts in output.statements : [for s in sts : s if contains(["ReadSecrets", "ReadParameters", "DecryptSecrets"], s.sid)]])) == 0
    error_message = "The env backend needs no permission, and a key no backend reads through is not granted."
  }
}

run "storage_objects_under_the_prefix_only" {
  command = plan
  variables {
    storage      = { url = "s3://tenant-data/prod", bucket = "tenant-data", prefix = "prod/" }
    storage_read = [{ bucket = "shared-datasets", prefix = "public/" }]
  }

  assert {
    condition = alltrue([for f in ["api", "tick", "events", "schedule"] : length([
      for s in output.statements[f] : s if s.sid == "StorageObjects" && s.resources == ["arn:aws:s3:::tenant-data/prod/*"] && toset(s.actions) == toset(["s3:DeleteObject", "s3:GetObject", "s3:PutObject"])
    ]) == 1])
    error_message = "The functions that run flows get, put and delete objects under the storage prefix, nothing else."
  }

  assert {
    condition = alltrue([for f in ["api", "tick", "events", "schedule"] : length([
      for s in output.statements[f] : s if s.sid == "StorageList" && s.resources == ["arn:aws:s3:::tenant-data"] && try(s.condition[0].variable, "") == "s3:prefix" && try(s.condition[0].values, []) == ["prod/*"]
    ]) == 1])
    error_message = "Listing the storage bucket is limited to the storage prefix."
  }

  assert {
    condition = length([
      for s in output.statements["api"] : s if startswith(s.sid, "StorageRead") && anytrue([for a in s.actions : a == "s3:PutObject" || a == "s3:DeleteObject"])
    ]) == 0 && length([for s in output.statements["api"] : s if s.sid == "StorageRead0" && s.resources == ["arn:aws:s3:::shared-datasets/public/*"]]) == 1
    error_message = "The read allowlist is read-only, on its prefix."
  }

  assert {
    condition     = length([for s in output.statements["sweeper"] : s if startswith(s.sid, "Storage")]) == 0
    error_message = "The sweeper touches no storage."
  }
}
