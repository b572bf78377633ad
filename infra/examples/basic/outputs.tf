output "api_url" {
  description = "Base URL of the Squall API."
  value       = module.squall.api_url
}

output "api_execution_arn" {
  description = "Grant callers execute-api:Invoke on <this>/*/*/api/* to use the API."
  value       = module.squall.api_execution_arn
}

output "table_name" {
  description = "DynamoDB table."
  value       = module.squall.table_name
}

output "bucket_name" {
  description = "Bucket for outputs and Batch staging."
  value       = module.squall.bucket_name
}

output "function_names" {
  description = "The Lambda functions."
  value       = module.squall.function_names
}
