provider "aws" {
  region = var.region

  default_tags {
    tags = { Project = "squall" }
  }
}

locals {
  # The user pool's issuer: what API Gateway's JWT authorizer checks and the UI discovers.
  issuer = "https://cognito-idp.${var.region}.amazonaws.com/${aws_cognito_user_pool.ui.id}"
  # Where Cognito sends the browser back after a login: the UI's own URL, served by the api function.
  ui_url = "${module.squall.api_url}/ui/"
  # The hosted UI's origin, where the token endpoint is (not the issuer's): the page fetches it.
  login_origin = "https://${aws_cognito_user_pool_domain.ui.domain}.auth.${var.region}.amazoncognito.com"
}

# Users are invited (admin-create-user), nobody signs up on their own.
resource "aws_cognito_user_pool" "ui" {
  name = "${var.name}-ui"

  admin_create_user_config {
    allow_admin_create_user_only = true
  }

  tags = var.tags
}

resource "aws_cognito_user_pool_domain" "ui" {
  domain       = var.login_domain_prefix
  user_pool_id = aws_cognito_user_pool.ui.id
}

# A public client: the browser cannot keep a secret, PKCE protects the code instead.
resource "aws_cognito_user_pool_client" "ui" {
  name         = "${var.name}-ui"
  user_pool_id = aws_cognito_user_pool.ui.id

  generate_secret                      = false
  allowed_oauth_flows_user_pool_client = true
  allowed_oauth_flows                  = ["code"]
  allowed_oauth_scopes                 = ["openid", "email"]
  supported_identity_providers         = ["COGNITO"]
  callback_urls                        = [local.ui_url]
  logout_urls                          = [local.ui_url]
  explicit_auth_flows                  = ["ALLOW_REFRESH_TOKEN_AUTH"]
  prevent_user_existence_errors        = "ENABLED"

  # The UI logs in again when its token expires (it keeps no refresh token).
  access_token_validity = 60
  id_token_validity     = 60
  token_validity_units {
    access_token = "minutes"
    id_token     = "minutes"
  }
}

module "squall" {
  source = "../../modules/squall"

  name            = var.name
  lambda_zip_path = var.lambda_zip_path

  # API Gateway accepts Cognito's access tokens for this app client: they carry it as client_id.
  api_authorization = "JWT"
  jwt_authorizer = {
    issuer   = local.issuer
    audience = [aws_cognito_user_pool_client.ui.id]
  }

  ui_oidc = {
    issuer    = local.issuer
    client_id = aws_cognito_user_pool_client.ui.id
    scopes    = ["openid", "email"]
    origins   = [local.login_origin]
  }

  tags = var.tags
}
