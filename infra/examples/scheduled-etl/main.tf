provider "aws" {
  region = var.region
}

module "squall" {
  source = "../../modules/squall"

  name            = var.name
  lambda_zip_path = var.lambda_zip_path

  aws_batch = {
    job_queue_arns     = [var.job_queue_arn]
    execution_role_arn = var.job_execution_role_arn
  }

  # flows/nightly-etl.yaml has a Schedule trigger `nightly` with cron "0 2 * * *" in
  # Europe/Paris. The Scheduler wakes the schedule function at that time; the function
  # starts the run the trigger has due (the tick would within a minute anyway).
  schedules = [
    {
      namespace           = "squall.examples"
      flow_id             = "nightly-etl"
      trigger_id          = "nightly"
      schedule_expression = "cron(0 2 * * ? *)"
      timezone            = "Europe/Paris"
    },
  ]
}
