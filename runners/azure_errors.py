"""Azure SDK errors (azure-batch, azure-storage-blob on azure-core), judged in one place.

Recognised by shape, so importing this module imports no SDK. azure-core maps an HTTP answer
to ``HttpResponseError`` and its subclasses (with ``status_code`` and the service's
``error_code``), and a request that got no answer to ``ServiceRequestError`` (never sent: DNS,
refused, reset before the request went out) or ``ServiceResponseError`` (sent, no answer:
reset, read timeout). Some errors escape those types: reading a streamed body (a task file's
content) can raise ``requests``'/``urllib3``'s own connection errors or azure-core's
``IncompleteReadError``, and azure-batch's long-running helpers raise ``ValueError`` for a
missing options object (never retried: a bug of the caller). Retries inside the SDKs are off
(``retry_total=0``), so each call is judged once, here::

    retry.register_classifier(azure_errors.classify, runner="azure-batch")
"""

from __future__ import annotations

__all__ = ["TRANSIENT_CODES", "azure_names", "classify"]

TRANSIENT_CODES = frozenset({"ServerBusy", "OperationTimedOut", "InternalError", "ServiceUnavailable"})
"""Batch and Storage error codes that say "later" (their answers are 5xx or 429 anyway)."""

_TRANSIENT_HTTP = frozenset(
    {"ConnectionError", "ProtocolError", "ChunkedEncodingError", "ReadTimeoutError", "Timeout", "ReadTimeout"}
)


def azure_names(exc: BaseException) -> set[str]:
    """Names of ``exc``'s classes that come from an ``azure`` package (empty for anything else)."""
    return {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.partition(".")[0] == "azure"}


def classify(exc: BaseException) -> bool | None:
    """No answer, 408, 429, 5xx and busy codes are transient; other answers are not."""
    names = azure_names(exc)
    if names & {"ServiceRequestError", "ServiceResponseError", "IncompleteReadError"}:
        return True
    if names:
        status = getattr(exc, "status_code", None)
        if getattr(exc, "error_code", None) in TRANSIENT_CODES:
            return True
        if isinstance(status, int):
            return status in (408, 429) or status >= 500
        return False
    roots = {cls.__module__.partition(".")[0] for cls in type(exc).__mro__}
    if roots & {"requests", "urllib3"} and {cls.__name__ for cls in type(exc).__mro__} & _TRANSIENT_HTTP:
        return True
    return None
