# Names stay within each AWS service's limits for the longest prefix the module accepts.

variables {
  name       = "abcdefghijklmnopqrstuvwx" # 24 characters: the longest accepted
  account_id = "123456789012"
  region     = "ap-southeast-5" # among the longest region names
  schedule_keys = [
    "squall.samples/nightly-etl/every-night",
    "a.very.long.namespace.for.testing.limits/${join("", [for i in range(90) : "f"])}/${join("", [for i in range(90) : "t"])}",
  ]
}

run "longest_names_fit_aws_limits" {
  command = plan

  assert {
    condition     = length(output.bucket_name) <= 63 && can(regex("^[a-z0-9][a-z0-9.-]*[a-z0-9]$", output.bucket_name))
    error_message = "S3 bucket names are 3-63 lowercase characters: ${output.bucket_name}"
  }

  assert {
    condition     = alltrue([for n in values(output.function_names) : length(n) <= 64 && can(regex("^[A-Za-z0-9_-]+$", n))])
    error_message = "Lambda function names are at most 64 of [A-Za-z0-9_-]."
  }

  assert {
    condition     = alltrue([for n in values(output.role_names) : length(n) <= 64])
    error_message = "IAM role names are at most 64 characters."
  }

  assert {
    condition     = alltrue([for n in values(output.dlq_names) : length(n) <= 80])
    error_message = "SQS queue names are at most 80 characters."
  }

  assert {
    condition     = alltrue([for n in values(output.schedule_names) : length(n) <= 64 && can(regex("^[0-9A-Za-z_.-]+$", n))])
    error_message = "Scheduler schedule names are at most 64 of [0-9a-zA-Z-_.]: ${jsonencode(output.schedule_names)}"
  }

  assert {
    condition     = length(output.schedule_group_name) <= 64 && length(output.tick_rule_name) <= 64 && length(output.batch_rule_name) <= 64
    error_message = "Scheduler groups and EventBridge rules are at most 64 characters."
  }

  assert {
    condition     = length(distinct(values(output.schedule_names))) == 2
    error_message = "Two schedule keys must get two names."
  }

  assert {
    condition     = can(regex("^[A-Za-z0-9_-]{1,128}$", output.api_alias_name)) && !can(regex("^[0-9]+$", output.api_alias_name))
    error_message = "Lambda alias names are 1-128 of [A-Za-z0-9_-] and not all digits (those are version numbers)."
  }

  assert {
    condition     = output.log_group_names.api == "/aws/lambda/${output.function_names.api}"
    error_message = "A Lambda writes to /aws/lambda/<function name>: the module must create exactly that group to own its retention."
  }
}

run "shortest_name" {
  command = plan

  variables {
    name = "s"
  }

  assert {
    condition     = output.bucket_name == "s-123456789012-ap-southeast-5"
    error_message = "Unexpected bucket name ${output.bucket_name}."
  }
}

run "rejects_uppercase_name" {
  command = plan

  variables {
    name = "Squall"
  }

  expect_failures = [var.name]
}

run "rejects_too_long_name" {
  command = plan

  variables {
    name = "abcdefghijklmnopqrstuvwxy" # 25
  }

  expect_failures = [var.name]
}

run "rejects_trailing_hyphen" {
  command = plan

  variables {
    name = "squall-"
  }

  expect_failures = [var.name]
}
