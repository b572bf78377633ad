terraform {
  # 1.9: cross-variable validation in modules/settings.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.x and 6.x: nothing here needs 6.x. The region is data.aws_region.current.id, the
      # region's name in both (5.x has no `.region`, 6.x deprecates `.name`). 5.100.0 is the
      # provider the offline checks validate and plan with (tests/infra/test_terraform.py).
      version = ">= 5.100, < 7.0"
    }
  }
}
