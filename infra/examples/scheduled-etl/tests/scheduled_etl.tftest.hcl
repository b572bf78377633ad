# The example as a user applies it, planned against a mocked AWS provider (offline; see
# modules/squall/tests). tests/infra/test_terraform.py runs it.

mock_provider "aws" {
  source = "../../modules/squall/tests/mocks"
}

variables {
  job_queue_arn          = "arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"
  job_execution_role_arn = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
  # Any readable file stands in for `squall package`'s zip: the mock uploads nothing.
  lambda_zip_path = "versions.tf"
}

run "plans" {
  command = plan

  assert {
    condition     = jsonencode(keys(output.schedule_arns)) == jsonencode(["squall.examples/nightly-etl/nightly"])
    error_message = "One schedule, for the flow's `nightly` trigger (flows/nightly-etl.yaml)."
  }

  assert {
    condition     = output.region == "eu-west-1" && module.squall.bucket_name == "squall-etl-123456789012-eu-west-1"
    error_message = "Named after var.name, the account and the region."
  }

  assert {
    condition     = module.squall.function_names["schedule"] == "squall-etl-schedule" && module.squall.role_names["scheduler"] == "squall-etl-scheduler"
    error_message = "The schedule function, and the role the Scheduler assumes to invoke it."
  }
}
