variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "squall"
}

variable "lambda_zip_path" {
  description = "The package built by `squall package --output dist/lambda.zip`."
  type        = string
  default     = "dist/lambda.zip"
}

variable "job_queue_arn" {
  description = "ARN of an existing AWS Batch job queue on Fargate (arn:aws:batch:<region>:<account>:job-queue/<name>)."
  type        = string
}

variable "job_execution_role_arn" {
  description = "Role ECS uses to pull the image and write logs (AmazonECSTaskExecutionRolePolicy); Fargate requires one."
  type        = string
}

variable "job_task_role_arn" {
  description = "Role the job's code runs as (needs s3:GetObject/PutObject on the bucket's squall/jobs/ prefix); null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
