output "api_url" {
  description = "Base URL of the Squall API."
  value       = module.squall.api_url
}

output "pubsub_push_endpoint" {
  description = "Where the push subscription delivers Batch's notifications (the events function's POST /events/pubsub)."
  value       = module.squall.event_ingress_urls.pubsub
}

output "notification_topic" {
  description = "The topic Batch publishes job state changes to (taskRunner notificationTopic)."
  value       = google_pubsub_topic.batch_events.id
}

output "job_service_account" {
  description = "The service account the jobs' VMs run as (taskRunner jobServiceAccount)."
  value       = google_service_account.job.email
}

output "control_service_account" {
  description = "The service account the control plane's functions act as on Google Cloud, through workload identity federation."
  value       = google_service_account.control.email
}

output "bucket" {
  description = "The staging bucket (taskRunner bucket)."
  value       = google_storage_bucket.staging.name
}
