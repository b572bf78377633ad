variable "aws_region" {
  description = "AWS region of the control plane."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix of every resource name, on both clouds."
  type        = string
  default     = "squall"
}

variable "lambda_zip_path" {
  description = "The package built by `squall package --output dist/lambda.zip --extra gcp` (the Google SDKs)."
  type        = string
  default     = "dist/lambda.zip"
}

variable "project_id" {
  description = "Google Cloud project the Batch jobs run in (and the topic, bucket and service accounts live in)."
  type        = string
}

variable "region" {
  description = "Google Cloud region of the Batch jobs and the staging bucket, e.g. europe-west1."
  type        = string
  default     = "europe-west1"
}

variable "bucket_name" {
  description = "Name of the Cloud Storage bucket the jobs' files and logs go through (globally unique)."
  type        = string
}

variable "staging_retention_days" {
  description = "Days before staged files, outputs and logs in the bucket are deleted (0: kept)."
  type        = number
  default     = 30
}
