output "api_url" {
  description = "Base URL of the Squall API."
  value       = module.squall.api_url
}

output "region" {
  description = "Region of the API (for SigV4 signing)."
  value       = var.region
}

output "schedule_arns" {
  description = "The Scheduler schedule of the flow's trigger."
  value       = module.squall.schedule_arns
}
