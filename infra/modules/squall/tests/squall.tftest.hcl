# The whole module, planned against a mocked AWS provider: no credentials, no network, no
# AWS API call. Terraform still loads the real provider's schema, so every argument of every
# resource is type-checked, and the assertions read what the plan would create.
#
# tests/infra/test_terraform.py runs this offline against the filesystem mirror of
# hashicorp/aws; by hand: `terraform init && terraform test` in modules/squall.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name = "squall"
  # Any readable file: filebase64sha256() hashes it, and the mock uploads nothing.
  lambda_zip_path = "versions.tf"
}

run "without_batch" {
  command = plan

  assert {
    condition     = aws_dynamodb_table.this.name == "squall" && aws_dynamodb_table.this.billing_mode == "PAY_PER_REQUEST"
    error_message = "One on-demand table."
  }

  assert {
    condition     = output.bucket_name == "squall-123456789012-eu-west-1"
    error_message = "The bucket name carries the account and the region read from data.aws_region.current.id."
  }

  assert {
    condition     = jsonencode(sort(keys(aws_lambda_function.this))) == jsonencode(["api", "events", "schedule", "sweeper", "tick"])
    error_message = "Five functions."
  }

  assert {
    condition     = alltrue([for k, f in aws_lambda_function.this : f.runtime == "python3.12" && jsonencode(f.architectures) == jsonencode(["arm64"]) && f.handler == "control_plane.handlers.${k}.handler"])
    error_message = "Every function runs its handler on python3.12, arm64."
  }

  assert {
    condition     = aws_lambda_function.this["tick"].reserved_concurrent_executions == 1 && aws_lambda_function.this["api"].timeout <= 30
    error_message = "The tick runs alone; the api answers within API Gateway's 30 s."
  }

  assert {
    condition     = aws_lambda_function.this["api"].environment[0].variables["SQUALL_STORE"] == "dynamodb" && jsondecode(aws_lambda_function.this["api"].environment[0].variables["SQUALL_RUNNERS"]) == {}
    error_message = "DynamoDB store; no runner configured without aws_batch."
  }

  assert {
    condition     = !contains(keys(aws_lambda_function.this["api"].environment[0].variables), "SQUALL_AWS_ENDPOINT_ALLOWLIST")
    error_message = "No flow may name an AWS endpoint unless the deployment says so."
  }

  assert {
    condition     = length(flatten([for k, d in data.aws_iam_policy_document.lambda : [for s in d.statement : s if startswith(s.sid, "Batch")]])) == 0
    error_message = "No Batch permission without aws_batch."
  }
}

run "with_batch" {
  command = plan

  variables {
    aws_batch = {
      job_queue_arns     = ["arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"]
      execution_role_arn = "arn:aws:iam::123456789012:role/exec"
      task_role_arn      = "arn:aws:iam::123456789012:role/task"
    }
  }

  assert {
    condition     = jsondecode(aws_lambda_function.this["tick"].environment[0].variables["SQUALL_RUNNERS"])["aws-batch"]["defaults"]["jobQueueArn"] == "arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"
    error_message = "The runner's default queue is the configured one."
  }

  # The conditions survive the parent's dynamic blocks into each role's policy document.
  assert {
    condition = alltrue([
      for f in ["api", "tick", "events", "schedule"] : jsonencode([
        for s in data.aws_iam_policy_document.lambda[f].statement : [for c in s.condition : [c.test, c.variable, c.values]] if s.sid == "BatchControlJobs"
      ]) == jsonencode([[["StringEquals", "aws:ResourceTag/squall:managed", ["true"]]]])
    ])
    error_message = "Each service role cancels and terminates only jobs tagged squall:managed = true."
  }

  assert {
    condition = alltrue([
      for f in ["api", "tick", "events", "schedule"] : jsonencode([
        for s in data.aws_iam_policy_document.lambda[f].statement : [for c in s.condition : c.variable] if contains(["BatchSubmit", "BatchTagOwnResources", "BatchRegisterOwnDefinitions"], s.sid)
      ]) == jsonencode([["aws:RequestTag/squall:managed"], ["aws:RequestTag/squall:managed"], ["aws:RequestTag/squall:managed"]])
    ])
    error_message = "Each service role submits, registers and tags only with squall:managed = true in the request."
  }

  assert {
    condition     = length([for s in data.aws_iam_policy_document.lambda["sweeper"].statement : s if startswith(s.sid, "Batch")]) == 0
    error_message = "The sweeper gets no Batch permission."
  }

  assert {
    condition     = jsonencode([for c in one([for s in data.aws_iam_policy_document.lambda["tick"].statement : s if s.sid == "BatchPassJobRoles"]).condition : [c.variable, c.values]]) == jsonencode([["iam:PassedToService", ["ecs-tasks.amazonaws.com"]]])
    error_message = "Job roles are passed to ECS tasks only."
  }
}
