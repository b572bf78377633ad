"""One place for retrying backend (SDK) calls: classification, policy, and the retry loop.

Why here and nowhere else: every runner talks to an API that fails now and then for reasons
that go away on their own (throttling, 5xx, connection resets, ``fork`` hitting EAGAIN).
If each runner retried in its own way, the control plane could not reason about how long a
``submit`` may block or what escapes it. So a runner wraps each backend call in :func:`call`
(or decorates it with :func:`retrying`), and what escapes is always a
:class:`~runners.base.RunnerError`::

    try:
        job = call(client.submit_job, policy=RetryPolicy(attempts=5), runner="aws-batch", **request)
    except TransientRunnerError:   # still failing after 5 attempts: the caller may try later
        ...
    except RunnerError:            # permanent: the backend's own message, retrying cannot help
        ...

Classification is a registry rather than one function so that each cloud runner teaches it
its SDK's errors (botocore's ``ClientError`` codes, ``google.api_core`` exceptions...) at
import time, without this module importing any SDK::

    @register_classifier(runner="aws-batch")   # asked only about aws-batch's calls
    def _botocore(exc: BaseException) -> bool | None:
        if type(exc).__name__ != "ClientError":
            return None                      # no opinion: ask the next classifier
        return exc.response["Error"]["Code"] in {"ThrottlingException", "TooManyRequestsException"}

Classifiers registered later are asked first; the built-in rules for the standard library's
exceptions are asked last; an exception nobody has an opinion on is permanent (retrying an
unknown error only delays the real message).
"""

from __future__ import annotations

import errno
import functools
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar, overload

from msgspec import Struct

from runners.base import RunnerError, TransientRunnerError

if TYPE_CHECKING:  # tenacity is imported by the first call(): ~5 ms a run that retries nothing saves
    from tenacity import RetryCallState

__all__ = [
    "DEFAULT_POLICY",
    "TRANSIENT_ERRNOS",
    "Classifier",
    "RetryCallback",
    "RetryPolicy",
    "builtin_classifier",
    "call",
    "is_transient",
    "register_classifier",
    "retrying",
    "unregister_classifier",
]

P = ParamSpec("P")
T = TypeVar("T")

Classifier = Callable[[BaseException], bool | None]
"""``fn(exc) -> True`` (transient), ``False`` (permanent) or ``None`` (no opinion)."""

RetryCallback = Callable[[int, BaseException, float], None]
"""Called before each retry with (attempt number that failed, its error, seconds to wait)."""

TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EWOULDBLOCK,
        errno.ENOMEM,  # fork() under memory pressure
        errno.EMFILE,  # per-process descriptor table full: other jobs will close theirs
        errno.ENFILE,
        errno.EINTR,
        errno.ECONNRESET,
        errno.ECONNREFUSED,  # an endpoint (or an emulator) that is restarting
        errno.ETIMEDOUT,
        errno.EPIPE,
    }
)
"""``OSError.errno`` values that say "the system is busy", not "the request is wrong"."""


def builtin_classifier(exc: BaseException) -> bool | None:
    """The standard library's exceptions; asked after every registered classifier."""
    if isinstance(exc, TransientRunnerError):
        # A runner may raise it inside a retried call to ask for a retry (e.g. after
        # mapping an HTTP 429 by hand).
        return True
    if isinstance(exc, RunnerError):
        return False
    # Permanent subclasses of OSError first: they would otherwise match the errno rule.
    if isinstance(exc, PermissionError | FileNotFoundError):
        return False
    if isinstance(exc, ConnectionError | TimeoutError | BlockingIOError | InterruptedError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in TRANSIENT_ERRNOS
    if isinstance(exc, ValueError):
        return False
    return None


_registry_lock = threading.Lock()
_classifiers: dict[str | None, tuple[Classifier, ...]] = {}
"""Classifiers by the runner that registered them (None: every runner's calls)."""


@overload
def register_classifier(fn: Classifier, /, *, runner: str | None = None) -> Classifier: ...


@overload
def register_classifier(
    fn: None = None, /, *, runner: str | None = None
) -> Callable[[Classifier], Classifier]: ...


def register_classifier(
    fn: Classifier | None = None, /, *, runner: str | None = None
) -> Classifier | Callable[[Classifier], Classifier]:
    """Add ``fn`` in front of the registry (asked before earlier ones); returns ``fn``.

    ``runner`` scopes it: it is then asked only about errors of calls made with
    ``call(..., runner=<that name>)``. A runner's classifier should be scoped: it recognises
    its SDK's exceptions by shape (to import no SDK at import time), and a shape such as
    "a class named ``ClientError``" also matches other SDKs' classes (Google's has one), so an
    unscoped classifier would judge other runners' errors by the wrong rules depending on
    which runner module happened to be imported. Usable as ``@register_classifier`` or
    ``@register_classifier(runner="aws-batch")``. Registering the same function twice for the
    same scope is a no-op, so a runner module may register at import even if reloaded.
    """

    def add(classifier: Classifier) -> Classifier:
        with _registry_lock:
            current = _classifiers.get(runner, ())
            if classifier not in current:
                _classifiers[runner] = (classifier, *current)
        return classifier

    return add if fn is None else add(fn)


def unregister_classifier(fn: Classifier, *, runner: str | None = None) -> None:
    """Remove ``fn`` from the registry of ``runner`` (tests; a no-op when absent)."""
    with _registry_lock:
        _classifiers[runner] = tuple(c for c in _classifiers.get(runner, ()) if c is not fn)


def is_transient(exc: BaseException, runner: str | None = None) -> bool:
    """Whether retrying the call that raised ``exc`` may succeed.

    Classifiers scoped to ``runner`` are asked first (newest first), then the unscoped ones,
    then :func:`builtin_classifier`; the first ``True``/``False`` wins. An error nobody
    recognises is permanent.
    """
    scoped = _classifiers.get(runner, ()) if runner is not None else ()
    for classifier in (*scoped, *_classifiers.get(None, ()), builtin_classifier):
        verdict = classifier(exc)
        if verdict is not None:
            return verdict
    return False


class RetryPolicy(Struct, frozen=True):
    """How hard to retry: ``attempts`` calls in all, jittered exponential delays between them.

    The n-th delay (n = 1 after the first failure) is ``min(initial_delay * multiplier**(n-1),
    max_delay)`` scaled down by a random factor in ``[1 - jitter, 1]``. The default ``jitter``
    of 0.5 ("equal jitter") spreads clients that failed together (one throttled API, many
    jobs) while still waiting at least half the nominal delay; ``jitter=0`` gives fixed delays.
    With the defaults the worst case is 0.5 + 1 + 2 + 4 = 7.5 s of waiting before giving up,
    short enough for a Lambda invocation.
    """

    attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 20.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must not be negative")
        if self.multiplier < 1:
            raise ValueError("RetryPolicy.multiplier must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1")

    def delay(self, failed_attempt: int, rand: float) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed; ``rand`` in [0, 1)."""
        nominal = min(self.initial_delay * self.multiplier ** (failed_attempt - 1), self.max_delay)
        return nominal * (1.0 - self.jitter * rand)


DEFAULT_POLICY = RetryPolicy()

_JITTER = random.Random()
"""The jitter's own generator: retries in background threads (a runner's poll loop) never move
the global ``random`` state that other code, or a property-based test, relies on."""


class _PolicyWait:
    """tenacity wait strategy driven by a :class:`RetryPolicy` (so delays are unit-testable);
    tenacity takes any callable of the retry state, so no ``wait_base`` (and no import) needed."""

    def __init__(self, policy: RetryPolicy, rand: Callable[[], float]) -> None:
        self.policy = policy
        self.rand = rand

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.policy.delay(retry_state.attempt_number, self.rand())


def call(
    fn: Callable[..., T],
    /,
    *args: object,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: RetryCallback | None = None,
    runner: str | None = None,
    what: str | None = None,
    rand: Callable[[], float] = _JITTER.random,
    **kwargs: object,
) -> T:
    """Call ``fn(*args, **kwargs)`` and retry transient errors according to ``policy``.

    - A transient error (:func:`is_transient`) is retried after a jittered delay, at most
      ``policy.attempts`` calls in all; when the policy gives up, :class:`TransientRunnerError`
      is raised, chained (``__cause__``) to the last error.
    - A permanent :class:`RunnerError` is re-raised as is; any other permanent exception
      becomes a :class:`RunnerError` with the original message, chained to it.
    - ``BaseException``s that are not ``Exception`` (KeyboardInterrupt, SystemExit) pass through.

    ``sleep`` and ``rand`` are injectable so tests never wait and get fixed delays;
    ``on_retry(attempt, error, delay)`` makes the attempt count observable. ``what`` names
    the operation in messages (default: ``fn``'s name), ``runner`` is copied onto the errors.
    Those keyword names are taken by ``call``; every other keyword argument goes to ``fn``.
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt

    label = what or getattr(fn, "__qualname__", None) or repr(fn)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            if error is not None:
                on_retry(state.attempt_number, error, delay)

    retryer = Retrying(
        sleep=sleep,
        stop=stop_after_attempt(policy.attempts),
        wait=_PolicyWait(policy, rand),
        retry=retry_if_exception(lambda exc: isinstance(exc, Exception) and is_transient(exc, runner)),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retryer(fn, *args, **kwargs)
    except Exception as exc:
        if is_transient(exc, runner):
            attempts = retryer.statistics.get("attempt_number", policy.attempts)
            raise TransientRunnerError(
                f"{label}: still failing after {attempts} attempt(s): {_message(exc)}", runner=runner
            ) from exc
        if isinstance(exc, RunnerError):
            raise
        raise RunnerError(_message(exc), runner=runner) from exc


def retrying(
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: RetryCallback | None = None,
    runner: str | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator factory: ``@retrying(policy=..., runner="gcp-batch")`` wraps a function in :func:`call`."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            bound = functools.partial(fn, *args, **kwargs)  # fn's keywords never clash with call's
            what = fn.__qualname__
            return call(bound, policy=policy, sleep=sleep, on_retry=on_retry, runner=runner, what=what)

        return wrapper

    return decorate


def _message(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__
