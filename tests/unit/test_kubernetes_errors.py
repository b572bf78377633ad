"""The Kubernetes runner's classifier, fed the exceptions the real libraries raise."""

from __future__ import annotations

import pytest

kubernetes = pytest.importorskip("kubernetes")
urllib3 = pytest.importorskip("urllib3")

from pydantic import BaseModel, ValidationError  # noqa: E402

from runners.kubernetes.runner import MalformedResponse, classify  # noqa: E402


class _Job(BaseModel):
    name: str


def _validation_error() -> ValidationError:
    try:
        _Job.model_validate({"name": 3})
    except ValidationError as exc:
        return exc
    raise AssertionError("the model accepted a number as a name")


def test_throttling_and_server_errors_are_transient_the_rest_permanent() -> None:
    from kubernetes.client.exceptions import ApiException

    assert classify(ApiException(status=429, reason="Too Many Requests")) is True
    assert classify(ApiException(status=503, reason="Service Unavailable")) is True
    assert classify(ApiException(status=403, reason="Forbidden")) is False
    assert classify(ApiException(status=422, reason="Unprocessable Entity")) is False


def test_connection_errors_wrapped_by_urllib3_are_transient() -> None:
    from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")  # type: ignore[arg-type]
    assert classify(MaxRetryError(None, "/apis/batch/v1/jobs", refused)) is True  # type: ignore[arg-type]
    assert classify(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))) is True


def test_malformed_answers_are_transient_and_foreign_errors_are_left_to_others() -> None:
    assert classify(MalformedResponse("cut body")) is True
    assert classify(_validation_error()) is True
    assert classify(ValueError("not ours")) is None
