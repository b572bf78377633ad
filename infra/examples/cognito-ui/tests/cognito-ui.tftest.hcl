# The example as a user applies it, planned against a mocked AWS provider (offline; see
# modules/squall/tests). tests/infra/test_terraform.py runs it; tests/infra/test_hcl.py checks
# the wiring (one issuer, the client as the audience) in the source.

mock_provider "aws" {
  source = "../../modules/squall/tests/mocks"

  override_during = plan

  mock_resource "aws_cognito_user_pool" {
    defaults = {
      id = "eu-west-1_AbC123"
    }
  }

  mock_resource "aws_cognito_user_pool_client" {
    defaults = {
      id = "4example5client6id"
    }
  }

  mock_resource "aws_apigatewayv2_stage" {
    defaults = {
      invoke_url = "https://abc123.execute-api.eu-west-1.amazonaws.com"
    }
  }
}

variables {
  login_domain_prefix = "squall-login-test"
  # Any readable file stands in for `squall package`'s zip: the mock uploads nothing.
  lambda_zip_path = "versions.tf"
}

run "plans" {
  command = plan

  assert {
    condition     = output.issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
    error_message = "The issuer is the user pool's, in the region."
  }

  assert {
    condition     = aws_cognito_user_pool_client.ui.callback_urls == toset(["https://abc123.execute-api.eu-west-1.amazonaws.com/ui/"]) && output.ui_url == "https://abc123.execute-api.eu-west-1.amazonaws.com/ui/"
    error_message = "Cognito sends the browser back to the UI's own URL."
  }

  assert {
    condition     = !aws_cognito_user_pool_client.ui.generate_secret && aws_cognito_user_pool_client.ui.allowed_oauth_flows == toset(["code"]) && contains(aws_cognito_user_pool_client.ui.allowed_oauth_scopes, "openid")
    error_message = "A public client, authorization code flow only, with openid."
  }

  assert {
    condition     = output.client_id == "4example5client6id"
    error_message = "The app client is the UI's."
  }
}

run "rejects_a_domain_prefix_cognito_refuses" {
  command = plan
  variables {
    login_domain_prefix = "my-cognito-login"
  }
  expect_failures = [var.login_domain_prefix]
}
