"""Google's client errors, judged in one place for every Google client Squall has (GCS, Batch, Cloud Run).

Recognised by shape, so importing this module imports no SDK. google-api-core turns an HTTP
answer into a class of ``google.api_core.exceptions`` named after its status; the REST
transports send their requests through ``requests`` and do not wrap what ``requests`` or
``urllib3`` raise before an answer (a reset connection, a read timeout), and
google-resumable-media raises its own errors with the ``requests`` response attached. Each
user registers :func:`classify` scoped to its own calls::

    retry.register_classifier(google_errors.classify, runner="google-batch")
    retry.register_classifier(google_errors.classify, runner="storage-gcs")
"""

from __future__ import annotations

__all__ = ["TRANSIENT_API", "api_error_names", "classify"]

TRANSIENT_API = frozenset(
    {"TooManyRequests", "InternalServerError", "BadGateway", "ServiceUnavailable", "GatewayTimeout"}
)
"""google.api_core.exceptions classes that say "later" (429 and 5xx; RESOURCE_EXHAUSTED is a 429)."""

_TRANSIENT_HTTP = frozenset(
    {"ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout", "ChunkedEncodingError", "TransportError"}
)
_HTTP_MODULES = ("requests", "urllib3", "google")


def _names(exc: BaseException, roots: tuple[str, ...]) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.partition(".")[0] in roots}


def api_error_names(exc: BaseException) -> set[str]:
    """Names of ``exc``'s classes from google.api_core.exceptions (empty for anything else)."""
    return {cls.__name__ for cls in type(exc).__mro__ if cls.__module__ == "google.api_core.exceptions"}


def classify(exc: BaseException) -> bool | None:
    """429 and 5xx answers and broken connections are transient; other API errors are not."""
    api = api_error_names(exc)
    if api:
        return bool(api & TRANSIENT_API)
    status = getattr(getattr(exc, "response", None), "status_code", None)  # google-resumable-media
    if _names(exc, ("google",)) and isinstance(status, int):
        return status == 429 or status >= 500
    if _names(exc, _HTTP_MODULES) & _TRANSIENT_HTTP:
        return True
    return None
