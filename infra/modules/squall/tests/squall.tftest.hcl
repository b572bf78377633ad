# The whole module, planned against a mocked AWS provider: no credentials, no network, no
# AWS API call. Terraform still loads the real provider's schema, so every argument of every
# resource is type-checked, and the assertions read what the plan would create.
#
# tests/infra/test_terraform.py runs this offline against the filesystem mirror of
# hashicorp/aws; by hand: `terraform init && terraform test` in modules/squall.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name = "squall"
  # Any readable file: filebase64sha256() hashes it, and the mock uploads nothing.
  lambda_zip_path = "versions.tf"
}

run "without_batch" {
  command = plan

  assert {
    condition     = aws_dynamodb_table.this.name == "squall" && aws_dynamodb_table.this.billing_mode == "PAY_PER_REQUEST"
    error_message = "One on-demand table."
  }

  assert {
    condition     = output.bucket_name == "squall-123456789012-eu-west-1"
    error_message = "The bucket name carries the account and the region read from data.aws_region.current.id."
  }

  assert {
    condition     = jsonencode(sort(keys(aws_lambda_function.this))) == jsonencode(["api", "events", "schedule", "sweeper", "tick"])
    error_message = "Five functions."
  }

  assert {
    condition     = alltrue([for k, f in aws_lambda_function.this : f.runtime == "python3.12" && jsonencode(f.architectures) == jsonencode(["arm64"]) && f.handler == "control_plane.handlers.${k}.handler"])
    error_message = "Every function runs its handler on python3.12, arm64."
  }

  assert {
    condition     = aws_lambda_function.this["tick"].reserved_concurrent_executions == 1 && aws_lambda_function.this["api"].timeout <= 30
    error_message = "The tick runs alone; the api answers within API Gateway's 30 s."
  }

  assert {
    condition     = aws_lambda_function.this["api"].environment[0].variables["SQUALL_STORE"] == "dynamodb" && jsondecode(aws_lambda_function.this["api"].environment[0].variables["SQUALL_RUNNERS"]) == {}
    error_message = "DynamoDB store; no runner configured without aws_batch."
  }

  assert {
    condition     = !contains(keys(aws_lambda_function.this["api"].environment[0].variables), "SQUALL_AWS_ENDPOINT_ALLOWLIST")
    error_message = "No flow may name an AWS endpoint unless the deployment says so."
  }

  assert {
    condition     = length(flatten([for k, d in data.aws_iam_policy_document.lambda : [for s in d.statement : s if startswith(s.sid, "Batch")]])) == 0
    error_message = "No Batch permission without aws_batch."
  }

  # secret(): by default SECRET_<NAME> variables, then Secrets Manager under squall/.
  assert {
    condition = alltrue([
      for f in ["api", "tick", "events", "schedule"] : aws_lambda_function.this[f].environment[0].variables["SQUALL_SECRETS"] == "env,secretsmanager" && aws_lambda_function.this[f].environment[0].variables["SQUALL_SECRETS_PREFIX"] == "squall/"
    ])
    error_message = "The functions that run flows get SQUALL_SECRETS and SQUALL_SECRETS_PREFIX from the variables' defaults."
  }

  assert {
    condition = alltrue([
      for f in ["api", "tick", "events", "schedule"] : jsonencode([for s in data.aws_iam_policy_document.lambda[f].statement : [s.actions, s.resources] if contains(["ReadSecrets", "ReadParameters", "DecryptSecrets"], s.sid)]) == jsonencode([
        [["secretsmanager:GetSecretValue"], ["arn:aws:secretsmanager:eu-west-1:123456789012:secret:squall/*"]],
      ])
    ])
    error_message = "Each role that runs flows reads Secrets Manager secrets under squall/ only; no SSM, no kms:Decrypt for the AWS managed key."
  }

  assert {
    condition     = length(setintersection(keys(aws_lambda_function.this["sweeper"].environment[0].variables), ["SQUALL_SECRETS", "SQUALL_SECRETS_PREFIX"])) == 0 && length([for s in data.aws_iam_policy_document.lambda["sweeper"].statement : s if length([for a in s.actions : a if startswith(a, "secretsmanager:") || startswith(a, "ssm:")]) > 0]) == 0
    error_message = "The sweeper renders nothing: no secrets settings, no secret permission."
  }
}

run "secrets_in_parameter_store_and_allowed_endpoints" {
  command = plan

  variables {
    secret_backends        = ["ssm"]
    secrets_prefix         = "/prod/squall/"
    secrets_kms_key_arns   = ["arn:aws:kms:eu-west-1:123456789012:key/5678abcd-12ab-34cd-56ef-1234567890ab"]
    aws_endpoint_allowlist = ["https://vpce-0abc.batch.eu-west-1.vpce.amazonaws.com"]
    aws_batch = {
      job_queue_arns = ["arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"]
    }
  }

  assert {
    condition = alltrue([
      for f in ["api", "tick", "events", "schedule"] : aws_lambda_function.this[f].environment[0].variables["SQUALL_SECRETS"] == "ssm" && aws_lambda_function.this[f].environment[0].variables["SQUALL_SECRETS_PREFIX"] == "/prod/squall/" && aws_lambda_function.this[f].environment[0].variables["SQUALL_AWS_ENDPOINT_ALLOWLIST"] == "https://vpce-0abc.batch.eu-west-1.vpce.amazonaws.com"
    ])
    error_message = "SQUALL_SECRETS, SQUALL_SECRETS_PREFIX and SQUALL_AWS_ENDPOINT_ALLOWLIST come from the variables."
  }

  assert {
    condition = alltrue([
      for f in ["api", "tick", "events", "schedule"] : jsonencode([for s in data.aws_iam_policy_document.lambda[f].statement : [s.sid, s.actions, s.resources, [for c in s.condition : [c.test, c.variable, c.values]]] if contains(["ReadSecrets", "ReadParameters", "DecryptSecrets"], s.sid)]) == jsonencode([
        ["ReadParameters", ["ssm:GetParameter"], ["arn:aws:ssm:eu-west-1:123456789012:parameter/prod/squall/*"], []],
        ["DecryptSecrets", ["kms:Decrypt"], ["arn:aws:kms:eu-west-1:123456789012:key/5678abcd-12ab-34cd-56ef-1234567890ab"], [["StringEquals", "kms:ViaService", ["ssm.eu-west-1.amazonaws.com"]]]],
      ])
    ])
    error_message = "SSM parameters under /prod/squall/ (ARN parameter/prod/squall/*), the given key through SSM only; no Secrets Manager."
  }

  assert {
    condition     = length(setintersection(keys(aws_lambda_function.this["sweeper"].environment[0].variables), ["SQUALL_SECRETS", "SQUALL_SECRETS_PREFIX", "SQUALL_AWS_ENDPOINT_ALLOWLIST"])) == 0 && length([for s in data.aws_iam_policy_document.lambda["sweeper"].statement : s if contains(["ReadSecrets", "ReadParameters", "DecryptSecrets"], s.sid) || contains(s.actions, "ssm:GetParameter")]) == 0
    error_message = "The sweeper gets neither the settings nor the permissions."
  }
}

run "with_batch" {
  command = plan

  variables {
    aws_batch = {
      job_queue_arns     = ["arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"]
      execution_role_arn = "arn:aws:iam::123456789012:role/exec"
      task_role_arn      = "arn:aws:iam::123456789012:role/task"
    }
  }

  assert {
    condition     = jsondecode(aws_lambda_function.this["tick"].environment[0].variables["SQUALL_RUNNERS"])["aws-batch"]["defaults"]["jobQueueArn"] == "arn:aws:batch:eu-west-1:123456789012:job-queue/squall-fargate"
    error_message = "The runner's default queue is the configured one."
  }

  # The conditions survive the parent's dynamic blocks into each role's policy document.
  assert {
    condition = alltrue([
      for f in ["api", "tick", "events", "schedule"] : jsonencode([
        for s in data.aws_iam_policy_document.lambda[f].statement : [for c in s.condition : [c.test, c.variable, c.values]] if s.sid == "BatchControlJobs"
      ]) == jsonencode([[["StringEquals", "aws:ResourceTag/squall:managed", ["true"]]]])
    ])
    error_message = "Each service role cancels and terminates only jobs tagged squall:managed = true."
  }

  assert {
    condition = alltrue([
      for f in ["api", "tick", "events", "schedule"] : jsonencode([
        for s in data.aws_iam_policy_document.lambda[f].statement : [for c in s.condition : c.variable] if contains(["BatchSubmit", "BatchTagOwnResources", "BatchRegisterOwnDefinitions"], s.sid)
      ]) == jsonencode([["aws:RequestTag/squall:managed"], ["aws:RequestTag/squall:managed"], ["aws:RequestTag/squall:managed"]])
    ])
    error_message = "Each service role submits, registers and tags only with squall:managed = true in the request."
  }

  assert {
    condition     = length([for s in data.aws_iam_policy_document.lambda["sweeper"].statement : s if startswith(s.sid, "Batch")]) == 0
    error_message = "The sweeper gets no Batch permission."
  }

  assert {
    condition     = jsonencode([for c in one([for s in data.aws_iam_policy_document.lambda["tick"].statement : s if s.sid == "BatchPassJobRoles"]).condition : [c.variable, c.values]]) == jsonencode([["iam:PassedToService", ["ecs-tasks.amazonaws.com"]]])
    error_message = "Job roles are passed to ECS tasks only."
  }
}

run "without_ingress" {
  command = plan

  assert {
    condition     = length(aws_apigatewayv2_route.events) == 0 && length(aws_apigatewayv2_integration.events) == 0 && length(aws_lambda_permission.events_ingress) == 0
    error_message = "No event ingress route unless Pub/Sub or a webhook secret is configured."
  }

  assert {
    condition     = length(setintersection(keys(aws_lambda_function.this["events"].environment[0].variables), ["SQUALL_PUBSUB_AUDIENCE", "SQUALL_PUBSUB_SERVICE_ACCOUNT", "SQUALL_WEBHOOK_SECRETS"])) == 0
    error_message = "The ingress settings are unset when it is off."
  }
}

run "with_event_ingress" {
  command = plan

  variables {
    pubsub_push_audience        = "https://squall.example.com/events/pubsub"
    pubsub_push_service_account = "pubsub-push@squall-project.iam.gserviceaccount.com"
    webhook_secret_arn          = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:squall-webhook-AbCdEf"
  }

  assert {
    condition     = jsonencode(sort(keys(aws_apigatewayv2_route.events))) == jsonencode(["POST /events/pubsub", "POST /events/webhook/{key}"]) && alltrue([for r in aws_apigatewayv2_route.events : r.authorization_type == "NONE"])
    error_message = "Two POST routes, authenticated by the handler (no API Gateway authorizer)."
  }

  assert {
    condition     = aws_apigatewayv2_integration.events[0].payload_format_version == "2.0" && aws_apigatewayv2_integration.events[0].timeout_milliseconds == 30000
    error_message = "Payload 2.0, within API Gateway's 30 s."
  }

  assert {
    condition     = aws_lambda_permission.events_ingress[0].principal == "apigateway.amazonaws.com" && aws_lambda_permission.events_ingress[0].action == "lambda:InvokeFunction"
    error_message = "API Gateway may invoke the events function (source ARN: tests/infra/test_hcl.py)."
  }

  assert {
    condition = (
      aws_lambda_function.this["events"].environment[0].variables["SQUALL_PUBSUB_AUDIENCE"] == "https://squall.example.com/events/pubsub"
      && aws_lambda_function.this["events"].environment[0].variables["SQUALL_PUBSUB_SERVICE_ACCOUNT"] == "pubsub-push@squall-project.iam.gserviceaccount.com"
      && aws_lambda_function.this["events"].environment[0].variables["SQUALL_WEBHOOK_SECRETS"] == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:squall-webhook-AbCdEf"
    )
    error_message = "The events function gets the ingress settings."
  }

  assert {
    condition     = alltrue([for f in ["api", "tick", "schedule", "sweeper"] : length(setintersection(keys(aws_lambda_function.this[f].environment[0].variables), ["SQUALL_PUBSUB_AUDIENCE", "SQUALL_PUBSUB_SERVICE_ACCOUNT", "SQUALL_WEBHOOK_SECRETS"])) == 0])
    error_message = "Only the events function gets them."
  }

  assert {
    condition = jsonencode([for s in data.aws_iam_policy_document.lambda["events"].statement : [s.actions, s.resources] if s.sid == "ReadWebhookSecret"]) == jsonencode([
      [["secretsmanager:GetSecretValue"], ["arn:aws:secretsmanager:eu-west-1:123456789012:secret:squall-webhook-AbCdEf"]],
    ])
    error_message = "The events role reads exactly the webhook secret."
  }

  assert {
    condition     = alltrue([for f in ["api", "tick", "schedule", "sweeper"] : length([for s in data.aws_iam_policy_document.lambda[f].statement : s if s.sid == "ReadWebhookSecret"]) == 0])
    error_message = "No other role reads the webhook secret."
  }
}

run "with_google_batch" {
  command = plan

  variables {
    pubsub_push_audience        = "squall-pubsub-push"
    pubsub_push_service_account = "squall-pubsub-push@my-project.iam.gserviceaccount.com"
    google_batch = {
      project_id         = "my-project"
      region             = "europe-west1"
      bucket             = "my-squall-staging"
      notification_topic = "projects/my-project/topics/squall-batch-events"
      credentials_config = jsonencode({ type = "external_account", audience = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/squall-aws/providers/aws" })
    }
  }

  assert {
    condition     = alltrue([for f in ["api", "tick", "events", "schedule"] : jsondecode(aws_lambda_function.this[f].environment[0].variables["SQUALL_RUNNERS"])["google-batch"].defaults.notificationTopic == "projects/my-project/topics/squall-batch-events"])
    error_message = "Every function that runs flows builds the Google Batch runner from SQUALL_RUNNERS."
  }

  assert {
    condition     = jsondecode(aws_lambda_function.this["events"].environment[0].variables["SQUALL_RUNNERS"])["google-batch"].credentials_config.type == "external_account" && length(aws_apigatewayv2_route.events) == 1
    error_message = "The events function signs Google calls with the federated credential configuration, and receives Batch's notifications on POST /events/pubsub."
  }

  assert {
    condition     = output.environment["SQUALL_RUNNERS"] == aws_lambda_function.this["tick"].environment[0].variables["SQUALL_RUNNERS"]
    error_message = "The module's environment output shows the same runners."
  }
}

run "with_the_ui_login" {
  command = plan

  variables {
    api_authorization = "JWT"
    jwt_authorizer    = { issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123", audience = ["ui-client"] }
    ui_oidc = {
      issuer    = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
      client_id = "ui-client"
      origins   = ["https://squall-login.auth.eu-west-1.amazoncognito.com"]
    }
  }

  assert {
    condition     = aws_apigatewayv2_authorizer.jwt[0].jwt_configuration[0].issuer == var.ui_oidc.issuer && contains(aws_apigatewayv2_authorizer.jwt[0].jwt_configuration[0].audience, var.ui_oidc.client_id)
    error_message = "The authorizer accepts the UI client's tokens: same issuer, the client in the audience."
  }

  assert {
    condition     = jsondecode(aws_lambda_function.this["api"].environment[0].variables["SQUALL_UI_OIDC"]).client_id == "ui-client" && aws_lambda_function.this["api"].environment[0].variables["SQUALL_AUTH"] == "gateway"
    error_message = "The api function publishes the login (SQUALL_UI_OIDC) and trusts the authorizer."
  }

  assert {
    condition     = alltrue([for k, f in aws_lambda_function.this : !contains(keys(f.environment[0].variables), "SQUALL_UI_OIDC") if k != "api"])
    error_message = "Only the api function serves the UI."
  }

  assert {
    condition     = aws_apigatewayv2_route.this["GET /ui/{proxy+}"].authorization_type == "NONE" && aws_apigatewayv2_route.this["GET /api/v1/configs"].authorization_type == "NONE" && aws_apigatewayv2_route.this["ANY /api/{proxy+}"].authorization_type == "JWT"
    error_message = "The UI's files and the configs it reads first are public; the API needs the token."
  }
}
