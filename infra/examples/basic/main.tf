provider "aws" {
  region = var.region

  default_tags {
    tags = { Project = "squall" }
  }
}

module "squall" {
  source = "../../modules/squall"

  name            = var.name
  lambda_zip_path = var.lambda_zip_path

  # Tasks with `taskRunner: {type: io.kestra.plugin.ee.aws.runner.Batch}` run on this queue
  # unless they name another one of aws_batch.job_queue_arns.
  aws_batch = {
    job_queue_arns     = [var.job_queue_arn]
    execution_role_arn = var.job_execution_role_arn
    task_role_arn      = var.job_task_role_arn
  }

  tags = var.tags
}
