# The IAM statements of the squall module as plain data: no provider, so `terraform test`
# can check them offline. The parent module turns each list into an
# `aws_iam_policy_document` with dynamic `statement` blocks.
#
# Every action is scoped to a resource ARN where IAM supports it. The few that IAM only
# authorizes on "*" are listed in `local.wildcard_actions` with the reason; a statement with
# resource "*" may only hold those (the tests enforce it).

variable "partition" {
  description = "AWS partition (aws, aws-cn, aws-us-gov)."
  type        = string
}

variable "region" {
  description = "Region of the deployment."
  type        = string
}

variable "account_id" {
  description = "Account of the deployment."
  type        = string
}

variable "table_arn" {
  description = "ARN of the DynamoDB table."
  type        = string
}

variable "table_stream_arn" {
  description = "ARN of the table's stream (the sweeper reads it)."
  type        = string
}

variable "bucket_arn" {
  description = "ARN of the staging/outputs bucket, or null."
  type        = string
  default     = null
}

variable "store_prefix" {
  description = "Key prefix of the store's offloaded outputs (with trailing slash)."
  type        = string
  default     = "squall/outputs/"
}

variable "staging_prefix" {
  description = "Key prefix of Batch staged files (no trailing slash)."
  type        = string
  default     = "squall/jobs"
}

variable "storage" {
  description = "The deployment storage (the settings module's storage output: {url, bucket, prefix}), or null."
  type = object({
    url    = string
    bucket = string
    prefix = string
  })
  default = null
}

variable "storage_read" {
  description = "The storage read allowlist (the settings module's storage_read output: {bucket, prefix} each)."
  type = list(object({
    bucket = string
    prefix = string
  }))
  default = []
}

variable "kms_key_arn" {
  description = "Customer managed key encrypting the bucket and queues, or null."
  type        = string
  default     = null
}

variable "function_log_group_arns" {
  description = "ARN of each function's own log group, by function key (api, tick, events, schedule, sweeper)."
  type        = map(string)
}

variable "dlq_arns" {
  description = "Dead-letter queue ARN by function key (every function but api)."
  type        = map(string)
  default     = {}
}

variable "schedule_function_arn" {
  description = "ARN of the schedule function (the Scheduler role invokes it)."
  type        = string
}

variable "tracing_enabled" {
  description = "Whether the functions send X-Ray traces."
  type        = bool
  default     = false
}

variable "aws_batch" {
  description = "Validated Batch settings (the settings module's aws_batch output), or null."
  type = object({
    job_queue_arns           = list(string)
    job_definition_arns      = list(string)
    register_job_definitions = bool
    execution_role_arn       = string
    task_role_arn            = string
    compute_environment_arn  = string
    log_group_name           = string
  })
  default = null
}

variable "secret_backends" {
  description = "Validated secret() backends (the settings module's secret_backends): secretsmanager and ssm each add a read statement."
  type        = list(string)
  default     = []
}

variable "secrets_prefix" {
  description = "Validated secrets prefix: secret `<prefix><NAME>`, parameter `/<prefix><NAME>`."
  type        = string
  default     = "squall/"
}

variable "secrets_kms_key_arns" {
  description = "Customer managed keys of the secrets; empty for the AWS managed keys, which need no grant."
  type        = list(string)
  default     = []
}

variable "dns_suffix" {
  description = "DNS suffix of the partition (amazonaws.com; amazonaws.com.cn in China), for kms:ViaService."
  type        = string
  default     = "amazonaws.com"
}

variable "webhook_secret_arn" {
  description = "Secrets Manager secret of the signed webhooks, or null: the events function alone may read it."
  type        = string
  default     = null
}

locals {
  # Actions IAM authorizes only on Resource "*" (their "Resource types" column is empty in
  # the Service Authorization Reference), each with why Squall calls it.
  wildcard_actions = {
    "batch:DescribeJobs"                = "no resource-level permissions; the tick polls job states, 100 ids a call"
    "batch:ListJobs"                    = "no resource-level permissions; finds a job by its deterministic name before submitting (exactly once)"
    "batch:DescribeJobDefinitions"      = "no resource-level permissions; reuses a squall-* definition registered earlier"
    "batch:DescribeComputeEnvironments" = "no resource-level permissions; reads the compute environment type (Fargate/EC2, spot)"
    "dynamodb:ListStreams"              = "no resource-level permissions; the sweeper's event source mapping lists the table's streams"
    "xray:PutTraceSegments"             = "no resource-level permissions; X-Ray tracing, only when tracing_enabled"
    "xray:PutTelemetryRecords"          = "no resource-level permissions; X-Ray tracing, only when tracing_enabled"
  }

  no_conditions = []

  # The tag the AWS Batch runner puts on every job it submits and every job definition it
  # registers (runners/aws_batch/runner.py MANAGED_TAG/MANAGED_VALUE; tests/infra checks they
  # agree). Batch authorizes CancelJob and TerminateJob per job with aws:ResourceTag, and
  # SubmitJob, RegisterJobDefinition and TagResource with aws:RequestTag (Service
  # Authorization Reference, "Actions defined by AWS Batch").
  managed_tag = { key = "squall:managed", value = "true" }
  # Only jobs Squall tagged: another workload's job in the same account and region (the job
  # ARN has no name to scope by) cannot be cancelled through Squall's roles, whatever job id
  # reaches them (a handle, an event, a name found in a shared queue).
  on_managed_jobs = [{ test = "StringEquals", variable = "aws:ResourceTag/${local.managed_tag.key}", values = [local.managed_tag.value] }]
  # Every create request must carry the tag, so nothing Squall creates can escape it.
  tagged_requests = [{ test = "StringEquals", variable = "aws:RequestTag/${local.managed_tag.key}", values = [local.managed_tag.value] }]

  # DynamoDB: exactly the calls the control_plane/store/dynamodb/ package makes (TransactWriteItems is
  # authorized per item as PutItem/UpdateItem/DeleteItem; the store sends no ConditionCheck).
  # Only Query reads the indexes. No Scan, no table management.
  dynamodb = [
    {
      sid       = "TableItems"
      actions   = ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"]
      resources = [var.table_arn]
      condition = local.no_conditions
    },
    {
      sid       = "TableIndexes"
      actions   = ["dynamodb:Query"]
      resources = ["${var.table_arn}/index/*"]
      condition = local.no_conditions
    },
  ]

  store_objects = var.bucket_arn == null ? [] : [
    {
      sid       = "StoreOffloadedOutputs"
      actions   = ["s3:GetObject", "s3:PutObject"]
      resources = ["${var.bucket_arn}/${var.store_prefix}*"]
      condition = local.no_conditions
    },
  ]

  # The deployment storage (runners/storage/s3.py): GetObject (HeadObject too), PutObject,
  # DeleteObjects (authorized per key as DeleteObject) under the storage prefix only, and
  # ListObjectsV2 of that prefix. The read allowlist: reading and listing, never writing.
  storage_statements = concat(
    var.storage == null ? [] : [
      {
        sid       = "StorageObjects"
        actions   = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
        resources = ["arn:${var.partition}:s3:::${var.storage.bucket}/${var.storage.prefix}*"]
        condition = local.no_conditions
      },
      {
        sid       = "StorageList"
        actions   = ["s3:ListBucket"]
        resources = ["arn:${var.partition}:s3:::${var.storage.bucket}"]
        condition = [{ test = "StringLike", variable = "s3:prefix", values = ["${var.storage.prefix}*"] }]
      },
    ],
    flatten([
      for i, area in var.storage_read : [
        {
          sid       = "StorageRead${i}"
          actions   = ["s3:GetObject"]
          resources = ["arn:${var.partition}:s3:::${area.bucket}/${area.prefix}*"]
          condition = local.no_conditions
        },
        {
          sid       = "StorageReadList${i}"
          actions   = ["s3:ListBucket"]
          resources = ["arn:${var.partition}:s3:::${area.bucket}"]
          condition = [{ test = "StringLike", variable = "s3:prefix", values = ["${area.prefix}*"] }]
        },
      ]
    ]),
  )

  kms = var.kms_key_arn == null ? [] : [
    {
      sid       = "CustomerKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
      condition = local.no_conditions
    },
  ]

  batch = var.aws_batch

  # Jobs, job definitions and logs live in each queue's region and account: read them from
  # the queue ARNs (arn:<partition>:batch:<region>:<account>:job-queue/<name>) instead of
  # assuming the deployment's own.
  queue_scopes = local.batch == null ? [] : distinct([for q in local.batch.job_queue_arns : join(":", slice(split(":", q), 0, 5))])
  job_arns     = [for s in local.queue_scopes : "${s}:job/*"]
  # The runner names the definitions it registers squall-<hash>; "*" also covers ":<revision>".
  own_job_definition_arns = local.batch == null ? [] : (local.batch.register_job_definitions ? [for s in local.queue_scopes : "${s}:job-definition/squall-*"] : [])
  job_definition_arns     = local.batch == null ? [] : concat(local.batch.job_definition_arns, local.own_job_definition_arns)
  batch_log_arns = local.batch == null ? [] : [
    for s in local.queue_scopes : format("arn:%s:logs:%s:%s:log-group:%s:*", split(":", s)[1], split(":", s)[3], split(":", s)[4], local.batch.log_group_name)
  ]
  pass_role_arns = local.batch == null ? [] : compact([local.batch.execution_role_arn, local.batch.task_role_arn])

  batch_statements = local.batch == null ? [] : concat(
    [
      {
        sid       = "BatchSubmit"
        actions   = ["batch:SubmitJob"]
        resources = concat(local.batch.job_queue_arns, local.job_definition_arns, local.job_arns)
        condition = local.tagged_requests
      },
      {
        # Batch authorizes the tags of SubmitJob (and RegisterJobDefinition) as TagResource.
        # It has no condition key that tells tagging on creation from tagging an existing job
        # (no batch:CreateAction), so this statement also lets the role add the tag to another
        # job of these accounts and regions: it keeps Squall from cancelling a job it was handed
        # by mistake, not someone holding the role's credentials (see the module README).
        sid       = "BatchTagOwnResources"
        actions   = ["batch:TagResource"]
        resources = concat(local.job_arns, local.own_job_definition_arns)
        condition = local.tagged_requests
      },
      {
        sid       = "BatchControlJobs"
        actions   = ["batch:CancelJob", "batch:TerminateJob"]
        resources = local.job_arns
        condition = local.on_managed_jobs
      },
      {
        # DescribeJobs and ListJobs: see local.wildcard_actions.
        sid       = "BatchReadJobs"
        actions   = concat(["batch:DescribeJobs", "batch:ListJobs"], local.batch.register_job_definitions ? ["batch:DescribeJobDefinitions"] : [], local.batch.compute_environment_arn == null ? [] : ["batch:DescribeComputeEnvironments"])
        resources = ["*"]
        condition = local.no_conditions
      },
      {
        sid       = "BatchJobLogs"
        actions   = ["logs:GetLogEvents"]
        resources = local.batch_log_arns
        condition = local.no_conditions
      },
    ],
    local.batch.register_job_definitions ? [
      {
        sid       = "BatchRegisterOwnDefinitions"
        actions   = ["batch:RegisterJobDefinition"]
        resources = local.own_job_definition_arns
        condition = local.tagged_requests
      },
    ] : [],
    length(local.pass_role_arns) == 0 ? [] : [
      {
        # Only the configured job roles, and only to ECS tasks (what Batch jobs run as).
        sid       = "BatchPassJobRoles"
        actions   = ["iam:PassRole"]
        resources = local.pass_role_arns
        condition = [{ test = "StringEquals", variable = "iam:PassedToService", values = ["ecs-tasks.amazonaws.com"] }]
      },
    ],
    var.bucket_arn == null ? [] : [
      {
        # GetObject: the runner reads back a job's submit lock (one submitter across Lambdas).
        sid       = "BatchStageFiles"
        actions   = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
        resources = ["${var.bucket_arn}/${var.staging_prefix}/*"]
        condition = local.no_conditions
      },
      {
        # Listing job outputs and staged inputs: the bucket, but only under the staging prefix.
        sid       = "BatchListStagedFiles"
        actions   = ["s3:ListBucket"]
        resources = [var.bucket_arn]
        condition = [{ test = "StringLike", variable = "s3:prefix", values = ["${var.staging_prefix}/*"] }]
      },
    ],
  )

  # secret('NAME'): exactly the calls control_plane/secrets/aws.py makes, on the prefix only.
  # Secrets Manager: GetSecretValue with SecretId <prefix><NAME>; the secret's ARN is
  # secret:<prefix><NAME>-<6 random characters>, which <prefix>* covers. Parameter Store:
  # GetParameter (WithDecryption) of /<prefix><NAME>, whose ARN is parameter/<prefix><NAME>:
  # the name's leading / is not repeated in the ARN, and the runtime strips one the prefix
  # itself starts with.
  secret_services = [for s in ["secretsmanager", "ssm"] : s if contains(var.secret_backends, s)]
  secrets = concat(
    contains(local.secret_services, "secretsmanager") ? [
      {
        sid       = "ReadSecrets"
        actions   = ["secretsmanager:GetSecretValue"]
        resources = ["arn:${var.partition}:secretsmanager:${var.region}:${var.account_id}:secret:${var.secrets_prefix}*"]
        condition = local.no_conditions
      },
    ] : [],
    contains(local.secret_services, "ssm") ? [
      {
        sid       = "ReadParameters"
        actions   = ["ssm:GetParameter"]
        resources = ["arn:${var.partition}:ssm:${var.region}:${var.account_id}:parameter/${trimprefix(var.secrets_prefix, "/")}*"]
        condition = local.no_conditions
      },
    ] : [],
    # The AWS managed keys (aws/secretsmanager, aws/ssm) let every principal of the account
    # decrypt through their service in their own key policy: no statement for them. A customer
    # key gets Decrypt only through the enabled services, never directly on a ciphertext.
    length(var.secrets_kms_key_arns) == 0 || length(local.secret_services) == 0 ? [] : [
      {
        sid       = "DecryptSecrets"
        actions   = ["kms:Decrypt"]
        resources = var.secrets_kms_key_arns
        condition = [{ test = "StringEquals", variable = "kms:ViaService", values = [for s in local.secret_services : "${s}.${var.region}.${var.dns_suffix}"] }]
      },
    ],
  )

  # The events function's webhook secret (control_plane/ingress/webhook.py): GetSecretValue of
  # that one secret, AWSCURRENT and AWSPREVIOUS (the stage is not an IAM resource). No other
  # function verifies webhooks, so no other role gets it.
  ingress = var.webhook_secret_arn == null ? [] : [
    {
      sid       = "ReadWebhookSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [var.webhook_secret_arn]
      condition = local.no_conditions
    },
  ]

  tracing = var.tracing_enabled ? [
    {
      # See local.wildcard_actions: X-Ray has no resource-level permissions.
      sid       = "XRay"
      actions   = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
      resources = ["*"]
      condition = local.no_conditions
    },
  ] : []

  # Each function writes its own log group only (the module creates it; no CreateLogGroup).
  own_logs = {
    for key, arn in var.function_log_group_arns : key => [
      {
        sid       = "OwnLogs"
        actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        resources = ["${arn}:*"]
        condition = local.no_conditions
      },
    ]
  }

  dead_letters = {
    for key, arn in var.dlq_arns : key => [
      {
        sid       = "DeadLetterQueue"
        actions   = ["sqs:SendMessage"]
        resources = [arn]
        condition = local.no_conditions
      },
    ]
  }

  # The sweeper only purges expired executions (DynamoDBStore.purge_execution): it reads the
  # stream, checks META is gone (GetItem), lists the partition (Query), deletes it
  # (BatchWriteItem) and its offloaded outputs. No Batch, no other writes.
  sweeper = concat(
    [
      {
        sid       = "PurgeExpiredExecutions"
        actions   = ["dynamodb:BatchWriteItem", "dynamodb:GetItem", "dynamodb:Query"]
        resources = [var.table_arn]
        condition = local.no_conditions
      },
      {
        sid       = "ReadTableStream"
        actions   = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"]
        resources = [var.table_stream_arn]
        condition = local.no_conditions
      },
      {
        # See local.wildcard_actions.
        sid       = "ListTableStreams"
        actions   = ["dynamodb:ListStreams"]
        resources = ["*"]
        condition = local.no_conditions
      },
    ],
    var.bucket_arn == null ? [] : [
      {
        sid       = "PurgeOffloadedOutputs"
        actions   = ["s3:DeleteObject"]
        resources = ["${var.bucket_arn}/${var.store_prefix}*"]
        condition = local.no_conditions
      },
      {
        sid       = "ListOffloadedOutputs"
        actions   = ["s3:ListBucket"]
        resources = [var.bucket_arn]
        condition = [{ test = "StringLike", variable = "s3:prefix", values = ["${var.store_prefix}*"] }]
      },
    ],
  )

  # The other functions run the same Service: any of them may create an execution and submit
  # its first job (api, schedule), advance one after an event (events, tick), or cancel jobs
  # (api kill), rendering expressions (and so secret()) on the way. So they share the store,
  # bucket, Batch and secrets statements; the sweeper renders nothing and reads no secret.
  shared = {
    sweeper = concat(local.sweeper, local.kms, local.tracing)
    service = concat(local.dynamodb, local.store_objects, local.storage_statements, local.kms, local.batch_statements, local.secrets, local.tracing)
  }

  statements = {
    for key in keys(var.function_log_group_arns) : key => concat(
      local.own_logs[key],
      lookup(local.dead_letters, key, []),
      local.shared[key == "sweeper" ? "sweeper" : "service"],
      key == "events" ? local.ingress : [],
    )
  }


  # The role EventBridge Scheduler assumes: invoke the schedule function, and write to its
  # dead-letter queue what it could not deliver.
  scheduler_statements = concat(
    [
      {
        sid       = "InvokeScheduleFunction"
        actions   = ["lambda:InvokeFunction"]
        resources = [var.schedule_function_arn, "${var.schedule_function_arn}:*"]
        condition = local.no_conditions
      },
    ],
    contains(keys(var.dlq_arns), "schedule") ? [
      {
        sid       = "DeadLetterQueue"
        actions   = ["sqs:SendMessage"]
        resources = [var.dlq_arns["schedule"]]
        condition = local.no_conditions
      },
    ] : [],
    local.kms,
  )
}

output "statements" {
  description = "IAM statements by function key: sid, actions, resources, condition (list of test/variable/values)."
  value       = local.statements
}

output "scheduler_statements" {
  description = "IAM statements of the EventBridge Scheduler role."
  value       = local.scheduler_statements
}

output "managed_tag" {
  description = "The tag (key, value) IAM requires on Batch jobs Squall submits, cancels or terminates."
  value       = local.managed_tag
}

output "wildcard_actions" {
  description = "The only actions allowed on Resource \"*\", with the reason each needs it."
  value       = local.wildcard_actions
}
