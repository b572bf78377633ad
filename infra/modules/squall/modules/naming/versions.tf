terraform {
  # 1.9: a validation block may refer to other variables (JWT settings checked against the
  # authorizer type, timeouts against the submit grace).
  required_version = ">= 1.9"
}
