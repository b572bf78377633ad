# Squall's control plane on AWS (the squall module) sending tasks to Google Cloud Batch, with
# the Google Cloud side it needs: the staging bucket, the jobs' service account, the topic Batch
# publishes job state changes to and its push subscription to the events function, and the
# keyless identity the functions use on Google Cloud (workload identity federation from their
# AWS roles). Roles: docs/runners/google-batch.md, "IAM".

provider "aws" {
  region = var.aws_region
}

provider "google" {
  project = var.project_id
  region  = var.region
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "google_project" "this" {}

locals {
  # Any fixed string: the push subscription puts it in its tokens' `aud`, and the events
  # function accepts no other (SQUALL_PUBSUB_AUDIENCE). Not the endpoint's URL, which exists
  # only once the module is applied.
  pubsub_audience = "${var.name}-pubsub-push"

  # Batch's service agent publishes the notifications of a project's jobs (Google requires its
  # grant when the topic is in another project than the jobs; harmless otherwise).
  batch_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-cloudbatch.iam.gserviceaccount.com"

  # The functions that run flows call Google; the sweeper never does.
  control_functions = ["api", "tick", "events", "schedule"]

  # A credential configuration, as `gcloud iam workload-identity-pools create-cred-config
  # --aws` writes it: the functions exchange their AWS role's credentials (google-auth reads
  # them from the Lambda environment) for a token of the control service account. No secret.
  credentials_config = jsonencode({
    universe_domain                   = "googleapis.com"
    type                              = "external_account"
    audience                          = "//iam.googleapis.com/${google_iam_workload_identity_pool_provider.aws.name}"
    subject_token_type                = "urn:ietf:params:aws:token-type:aws4_request"
    service_account_impersonation_url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/${google_service_account.control.email}:generateAccessToken"
    token_url                         = "https://sts.googleapis.com/v1/token"
    credential_source = {
      environment_id                 = "aws1"
      region_url                     = "http://169.254.169.254/latest/meta-data/placement/availability-zone"
      url                            = "http://169.254.169.254/latest/meta-data/iam/security-credentials"
      regional_cred_verification_url = "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
    }
  })
}

resource "google_project_service" "this" {
  for_each = toset([
    "batch.googleapis.com",
    "compute.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "storage.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "sts.googleapis.com",
  ])

  service            = each.value
  disable_on_destroy = false
}

################################################################################
# Squall on AWS, with the Google Batch runner's deployment defaults
################################################################################

module "squall" {
  source = "../../modules/squall"

  name            = var.name
  lambda_zip_path = var.lambda_zip_path

  # Opens POST /events/pubsub on the events function: a push is accepted only with a Google
  # ID token for this audience, signed for this service account.
  pubsub_push_audience        = local.pubsub_audience
  pubsub_push_service_account = google_service_account.push.email

  # Tasks with `taskRunner: {type: io.kestra.plugin.ee.gcp.runner.Batch}` need no option of
  # their own: these are the defaults (SQUALL_RUNNERS "google-batch").
  google_batch = {
    project_id          = var.project_id
    region              = var.region
    bucket              = google_storage_bucket.staging.name
    notification_topic  = google_pubsub_topic.batch_events.id
    deployment          = var.name
    job_service_account = google_service_account.job.email
    credentials_config  = local.credentials_config
  }
}

################################################################################
# Batch's notifications: topic -> push subscription -> events function
################################################################################

resource "google_pubsub_topic" "batch_events" {
  name = "${var.name}-batch-events"

  depends_on = [google_project_service.this]
}

resource "google_pubsub_subscription" "batch_events" {
  name  = "${var.name}-batch-events-push"
  topic = google_pubsub_topic.batch_events.id

  # The events function answers within its timeout (60 s by default); a push it did not
  # acknowledge (an error, a 503 while Google's keys are unreachable) comes again.
  ack_deadline_seconds       = 60
  message_retention_duration = "86400s" # a day of redelivery; the tick's reconcile covers the rest

  push_config {
    push_endpoint = module.squall.event_ingress_urls.pubsub

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.pubsub_audience
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = "" # never deleted for inactivity: a quiet week must not lose the subscription
  }
}

# The account the push subscription signs its tokens as (SQUALL_PUBSUB_SERVICE_ACCOUNT).
resource "google_service_account" "push" {
  account_id   = "${var.name}-pubsub-push"
  display_name = "Squall: Pub/Sub pushes to the events function"
}

resource "google_pubsub_topic_iam_member" "batch_agent_publishes" {
  topic  = google_pubsub_topic.batch_events.id
  role   = "roles/pubsub.publisher"
  member = local.batch_service_agent
}

resource "google_pubsub_topic_iam_member" "job_publishes" {
  topic  = google_pubsub_topic.batch_events.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.job.email}"
}

################################################################################
# Files and logs: the staging bucket, mounted into every job at /mnt/disks/squall
################################################################################

resource "google_storage_bucket" "staging" {
  name                        = var.bucket_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  dynamic "lifecycle_rule" {
    for_each = var.staging_retention_days > 0 ? [var.staging_retention_days] : []
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }
}

resource "google_storage_bucket_iam_member" "job_files" {
  bucket = google_storage_bucket.staging.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.job.email}"
}

resource "google_storage_bucket_iam_member" "control_files" {
  bucket = google_storage_bucket.staging.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.control.email}"
}

################################################################################
# The jobs' service account (taskRunner jobServiceAccount)
################################################################################

resource "google_service_account" "job" {
  account_id   = "${var.name}-batch-job"
  display_name = "Squall: Google Batch jobs"
}

# What every Batch job's service account needs (Google's "Get started with Batch").
resource "google_project_iam_member" "job" {
  for_each = toset(["roles/batch.agentReporter", "roles/logging.logWriter"])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.job.email}"
}

################################################################################
# The control plane's identity on Google Cloud: the functions' AWS roles, federated
################################################################################

resource "google_service_account" "control" {
  account_id   = "${var.name}-control"
  display_name = "Squall: control plane on AWS"
}

resource "google_project_iam_member" "control_creates_jobs" {
  project = var.project_id
  role    = "roles/batch.jobsEditor"
  member  = "serviceAccount:${google_service_account.control.email}"
}

resource "google_service_account_iam_member" "control_runs_jobs_as_job_account" {
  service_account_id = google_service_account.job.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.control.email}"
}

# Google lists Pub/Sub Editor on the topic for whoever creates a job that sends notifications.
resource "google_pubsub_topic_iam_member" "control_names_topic" {
  topic  = google_pubsub_topic.batch_events.id
  role   = "roles/pubsub.editor"
  member = "serviceAccount:${google_service_account.control.email}"
}

resource "google_iam_workload_identity_pool" "aws" {
  workload_identity_pool_id = "${var.name}-aws"
  display_name              = "Squall on AWS"

  depends_on = [google_project_service.this]
}

resource "google_iam_workload_identity_pool_provider" "aws" {
  workload_identity_pool_id          = google_iam_workload_identity_pool.aws.workload_identity_pool_id
  workload_identity_pool_provider_id = "aws"
  display_name                       = "Squall's AWS account"

  # Google's default mapping for AWS: attribute.aws_role is the assumed role's ARN without
  # its session name.
  attribute_mapping = {
    "google.subject"     = "assertion.arn"
    "attribute.aws_role" = "assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"
  }

  # Only this deployment's assumed roles (the squall module names them <name>-<function>-lambda);
  # the binding below narrows it to the four functions that run flows.
  attribute_condition = "assertion.arn.startsWith('arn:${data.aws_partition.current.partition}:sts::${data.aws_caller_identity.current.account_id}:assumed-role/${var.name}-')"

  aws {
    account_id = data.aws_caller_identity.current.account_id
  }
}

# Only the roles of the four functions that run flows may act as the control account.
resource "google_service_account_iam_member" "control_federated" {
  for_each = toset(local.control_functions)

  service_account_id = google_service_account.control.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.aws.name}/attribute.aws_role/arn:${data.aws_partition.current.partition}:sts::${data.aws_caller_identity.current.account_id}:assumed-role/${module.squall.role_names[each.key]}"
}
