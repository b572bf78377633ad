"""The Azure Batch runner's error classifier (runners/azure_errors.py) on what azure-core raises."""

from __future__ import annotations

import pytest

pytest.importorskip("azure.core")
import requests
import urllib3
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from runners import retry
from runners.azure_errors import classify


class _Answer:
    """Enough of an azure-core response for HttpResponseError to read a status."""

    def __init__(self, status: int) -> None:
        self.status_code = status
        self.reason = "reason"
        self.headers: dict[str, str] = {}

    def text(self) -> str:
        return ""


def _http(status: int, cls: type[HttpResponseError] = HttpResponseError) -> HttpResponseError:
    return cls(message=f"HTTP {status}", response=_Answer(status))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ServiceRequestError("connection refused"), True),  # never sent
        (ServiceResponseError("connection reset"), True),  # sent, no answer: a lost response
        (IncompleteReadError("body cut short"), True),  # a streamed task file
        (_http(503), True),
        (_http(500), True),
        (_http(429), True),
        (_http(408), True),
        (_http(409, ResourceExistsError), False),  # TaskExists: the caller handles it
        (_http(404, ResourceNotFoundError), False),
        (_http(401, ClientAuthenticationError), False),
        (_http(400), False),
        (requests.exceptions.ConnectionError("reset while reading a body"), True),
        (urllib3.exceptions.ProtocolError("connection broken"), True),
        (ValueError("begin_terminate_job without options"), None),  # a caller's bug: no opinion
    ],
)
def test_classify(error: BaseException, transient: bool | None) -> None:
    assert classify(error) is transient


def test_the_runner_registers_it_for_its_own_calls_only() -> None:
    import runners.azure_batch.runner  # noqa: F401  (registers at import)

    assert retry.is_transient(ServiceResponseError("reset"), "azure-batch")
    assert not retry.is_transient(_http(400), "azure-batch")


def test_a_busy_code_is_transient_whatever_the_status() -> None:
    error = _http(400)
    error.error_code = "ServerBusy"
    assert classify(error) is True
