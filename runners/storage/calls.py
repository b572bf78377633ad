"""Every backend's SDK calls go through here: one retry policy, errors mapped to StorageError.

Why: the SDKs each retry in their own way (botocore's modes, google-api-core's ``Retry``,
azure-core's ``RetryPolicy``) with their own budgets, so a read could block for minutes or
give up at once depending on the cloud. Their retries are turned off in each backend and
:func:`runners.retry.call` does it instead, with a classifier registered per backend
(``runner="storage-s3"``...). What escapes is a :class:`StorageError` naming the URI: the
backend's :data:`Explain` says which :class:`Reason` an SDK error means.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from msgspec import Struct

from runners import retry
from runners.base import RunnerError, TransientRunnerError
from runners.storage.base import Reason, StorageError

__all__ = ["Explain", "SdkCalls"]

T = TypeVar("T")

Explain = Callable[[BaseException], Reason | None]
"""An SDK error's :class:`Reason` (missing object, access denied...), None when it has none."""


class SdkCalls(Struct, frozen=True):
    """How one backend calls its SDK: the retry scope, the policy, and its error explanation.

    ``sleep`` is a seam so tests of the retry path never wait.
    """

    runner: str
    explain: Explain
    policy: retry.RetryPolicy = retry.DEFAULT_POLICY
    sleep: Callable[[float], None] = time.sleep

    def __call__(self, uri: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` retried on transient errors; any failure a StorageError on ``uri``."""
        try:
            return retry.call(
                fn,
                *args,
                policy=self.policy,
                sleep=self.sleep,
                runner=self.runner,
                what=f"{self.runner} {getattr(fn, '__name__', 'call')}",
                **kwargs,
            )
        except TransientRunnerError as exc:
            detail = f"{Reason.UNAVAILABLE.value}: {exc}"
            raise StorageError(uri, Reason.UNAVAILABLE, detail, transient=True) from exc
        except RunnerError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            reason = self.explain(cause) or Reason.FAILED
            detail = reason.value if reason is not Reason.FAILED else f"{reason.value}: {exc}"
            if reason is Reason.MISSING and isinstance(cause, OSError) and cause.strerror:
                detail = f"{reason.value} ({cause.strerror})"
            raise StorageError(uri, reason, detail) from exc
