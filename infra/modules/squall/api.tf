################################################################################
# HTTP API (API Gateway v2) in front of the api function.
################################################################################

locals {
  jwt = module.settings.api_authorization == "JWT"

  # Everything under /api/ needs the authorizer; the api Lambda (SQUALL_AUTH=gateway) also
  # refuses any request no authorizer checked, so a route added without one fails closed.
  # Two kinds of route are public by design (docs/api.md): webhooks carry their key in the
  # path (at Squall's /webhooks/ and at Kestra's /api/v1/main/executions/webhook/, tenant main
  # being the only one served), and /openapi.json and /api/v1/configs describe the API and the
  # server without holding any data (Kestra's clients read configs before authenticating).
  # The web UI's static files (/ui) hold no data either: the browser loads them, then calls
  # /api/ with its credentials (ADR 0012).
  routes = {
    "ANY /api/{proxy+}"                             = module.settings.api_authorization
    "GET /openapi.json"                             = "NONE"
    "GET /api/v1/configs"                           = "NONE"
    "GET /webhooks/{proxy+}"                        = "NONE"
    "POST /webhooks/{proxy+}"                       = "NONE"
    "PUT /webhooks/{proxy+}"                        = "NONE"
    "GET /api/v1/main/executions/webhook/{proxy+}"  = "NONE"
    "POST /api/v1/main/executions/webhook/{proxy+}" = "NONE"
    "PUT /api/v1/main/executions/webhook/{proxy+}"  = "NONE"
    "GET /ui"                                       = "NONE"
    "GET /ui/{proxy+}"                              = "NONE"
  }
}

resource "aws_apigatewayv2_api" "this" {
  name          = module.naming.api_name
  description   = "Squall control plane API"
  protocol_type = "HTTP"

  tags = var.tags
}

# With SnapStart, the integration invokes the alias of the published version: $LATEST never
# restores from a snapshot.
resource "aws_apigatewayv2_integration" "api" {
  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = local.api_snap_start ? aws_lambda_alias.api[0].invoke_arn : aws_lambda_function.this["api"].invoke_arn
  payload_format_version = "2.0" # what control_plane/handlers/api.py parses
  timeout_milliseconds   = module.settings.api_integration_timeout_ms
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  count = local.jwt ? 1 : 0

  api_id           = aws_apigatewayv2_api.this.id
  name             = "${module.naming.api_name}-jwt"
  authorizer_type  = "JWT"
  identity_sources = [module.settings.jwt_authorizer.identity_source]

  jwt_configuration {
    issuer   = module.settings.jwt_authorizer.issuer
    audience = module.settings.jwt_authorizer.audience
  }
}

resource "aws_apigatewayv2_route" "this" {
  for_each = local.routes

  api_id             = aws_apigatewayv2_api.this.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.api.id}"
  authorization_type = each.value
  authorizer_id      = each.value == "JWT" ? aws_apigatewayv2_authorizer.jwt[0].id : null
}

resource "aws_cloudwatch_log_group" "api_access" {
  name              = module.naming.log_group_names["api_access"]
  retention_in_days = module.settings.log_retention_in_days
  kms_key_id        = local.kms_key_arn

  tags = var.tags
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit    = module.settings.api_throttling.rate_limit
    throttling_burst_limit   = module.settings.api_throttling.burst_limit
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    # requestId matches the api Lambda's log line and its 500 responses' requestId.
    format = jsonencode({
      requestId        = "$context.requestId"
      ip               = "$context.identity.sourceIp"
      caller           = "$context.identity.caller"
      requestTime      = "$context.requestTime"
      httpMethod       = "$context.httpMethod"
      routeKey         = "$context.routeKey"
      path             = "$context.path"
      status           = "$context.status"
      responseLength   = "$context.responseLength"
      latency          = "$context.responseLatency"
      integrationError = "$context.integrationErrorMessage"
      authorizerError  = "$context.authorizer.error"
    })
  }

  tags = var.tags
}

# Granted on what the integration invokes: the alias with SnapStart, else the function.
resource "aws_lambda_permission" "api" {
  statement_id  = "AllowHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["api"].function_name
  qualifier     = local.api_snap_start ? aws_lambda_alias.api[0].name : null
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*/*"
}

################################################################################
# Event ingress: HTTP pushes to the events function (control_plane/ingress), on the same API.
# A route on the existing HTTP API rather than a function URL: the stage's throttling and
# access log cover it, it costs nothing while idle (billed per request, like a function URL's
# invocations), and no second public endpoint exists. No API Gateway authorizer: a Pub/Sub
# push carries a Google OIDC token and a webhook an HMAC signature, both checked by the
# handler, which refuses (401/403) before applying anything.
################################################################################

locals {
  ingress = module.settings.ingress

  event_routes = merge(
    local.ingress.pubsub ? { "POST /events/pubsub" = "NONE" } : {},
    local.ingress.webhook ? { "POST /events/webhook/{key}" = "NONE" } : {},
  )
}

resource "aws_apigatewayv2_integration" "events" {
  count = local.ingress.enabled ? 1 : 0

  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.this["events"].invoke_arn
  payload_format_version = "2.0" # what control_plane/ingress parses
  timeout_milliseconds   = local.ingress.integration_timeout_ms
}

resource "aws_apigatewayv2_route" "events" {
  for_each = local.event_routes

  api_id             = aws_apigatewayv2_api.this.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.events[0].id}"
  authorization_type = each.value
}

# Only POSTs under /events/ of this API may invoke the events function this way.
resource "aws_lambda_permission" "events_ingress" {
  count = local.ingress.enabled ? 1 : 0

  statement_id  = "AllowHttpApiEventIngress"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["events"].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*/POST/events/*"
}
