output "ui_url" {
  description = "The web UI: opening it sends the browser to the Cognito login."
  value       = local.ui_url
}

output "api_url" {
  description = "Base URL of the Squall API (send `Authorization: Bearer <access token>`)."
  value       = module.squall.api_url
}

output "user_pool_id" {
  description = "The Cognito user pool: invite users with `aws cognito-idp admin-create-user`."
  value       = aws_cognito_user_pool.ui.id
}

output "client_id" {
  description = "The app client the UI logs in with (the JWT authorizer's audience)."
  value       = aws_cognito_user_pool_client.ui.id
}

output "issuer" {
  description = "The OIDC issuer of the user pool."
  value       = local.issuer
}
