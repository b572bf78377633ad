# The example as a user applies it, planned against a mocked AWS provider (offline; see
# modules/squall/tests). tests/infra/test_terraform.py runs it.

mock_provider "aws" {
  source = "../../modules/squall/tests/mocks"
}

variables {
  job_queue_arn          = "arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"
  job_execution_role_arn = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
  job_task_role_arn      = "arn:aws:iam::123456789012:role/squall-batch-task"
  # Any readable file stands in for `squall package`'s zip: the mock uploads nothing.
  lambda_zip_path = "versions.tf"
}

run "plans" {
  command = plan

  assert {
    condition     = output.function_names == { api = "squall-api", tick = "squall-tick", events = "squall-events", schedule = "squall-schedule", sweeper = "squall-sweeper" }
    error_message = "The five functions, named after var.name."
  }

  assert {
    condition     = output.table_name == "squall" && output.bucket_name == "squall-123456789012-eu-west-1"
    error_message = "The table, and a bucket named after the account and region."
  }

  assert {
    condition     = module.squall.role_names["tick"] == "squall-tick-lambda" && module.squall.role_names["scheduler"] == "squall-scheduler"
    error_message = "One role per function and one for the Scheduler."
  }

  assert {
    condition     = length(module.squall.schedule_arns) == 0
    error_message = "The basic example schedules nothing."
  }
}
