variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "squall"
}

variable "lambda_zip_path" {
  description = "The package built by `squall package --output dist/lambda.zip`."
  type        = string
  default     = "dist/lambda.zip"
}

variable "login_domain_prefix" {
  description = "Prefix of the Cognito hosted login domain, <prefix>.auth.<region>.amazoncognito.com: unique in the region, lowercase letters, digits and hyphens."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", var.login_domain_prefix)) && !strcontains(var.login_domain_prefix, "cognito") && !strcontains(var.login_domain_prefix, "aws")
    error_message = "login_domain_prefix: lowercase letters, digits and hyphens, 1-63 characters, not starting or ending with a hyphen; Cognito refuses the words aws and cognito in it."
  }
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
