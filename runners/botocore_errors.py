"""botocore's errors, judged in one place for every AWS client Squall has (Batch, S3, logs).

Recognised by shape, so importing this module imports no SDK: only classes defined in
botocore's own modules count (google-api-core has a ``ClientError`` too, with other rules).
Each user registers :func:`classify` scoped to its own calls::

    retry.register_classifier(botocore_errors.classify, runner="aws-batch")
    retry.register_classifier(botocore_errors.classify, runner="storage-s3")
"""

from __future__ import annotations

__all__ = ["TRANSIENT_CLASSES", "TRANSIENT_CODES", "botocore_names", "classify", "code_and_status"]

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "ServerException",
        "RequestTimeout",
        "RequestTimeoutException",
        "RequestTimeTooSkewed",
        "ConditionalRequestConflict",  # S3: two conditional writes raced; the loser may try again
    }
)
"""Error codes that say "later", whatever the HTTP status they come with."""

TRANSIENT_CLASSES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ConnectionError",
        "ResponseStreamingError",
        "IncompleteReadError",
    }
)
"""botocore exceptions raised before or after an HTTP answer: the network, not the request."""


def botocore_names(exc: BaseException) -> set[str]:
    """Names of the classes of ``exc`` that botocore defines (empty: not a botocore error)."""
    return {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.partition(".")[0] == "botocore"}


def code_and_status(exc: BaseException) -> tuple[str, int]:
    """A ``ClientError``'s error code and HTTP status ("", 0 when absent)."""
    response = getattr(exc, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code", ""))
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return code, status


def classify(exc: BaseException) -> bool | None:
    """True (transient: throttling, 5xx, 429, the network), False (any other botocore error),
    None (not botocore's: another classifier's business)."""
    names = botocore_names(exc)
    if not names:
        return None
    if "ClientError" in names:
        code, status = code_and_status(exc)
        return code in TRANSIENT_CODES or status == 429 or status >= 500
    return bool(names & TRANSIENT_CLASSES)
