terraform {
  # 1.9: cross-variable validation in modules/settings.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.x: data.aws_region.current.region (5.x only had the now deprecated .name).
      version = ">= 6.0, < 7.0"
    }
  }
}
