"""runners/retry.py: which errors are transient, how the policy waits, what escapes a retried call."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator

import pytest

from runners.base import JobNotFoundError, RunnerError, TransientRunnerError
from runners.retry import (
    DEFAULT_POLICY,
    RetryPolicy,
    call,
    is_transient,
    register_classifier,
    retrying,
    unregister_classifier,
)

FIXED = RetryPolicy(attempts=4, initial_delay=0.5, max_delay=1.5, multiplier=2.0, jitter=0.0)


class Flaky:
    """A backend call failing with ``errors`` in turn, then returning ``result``."""

    def __init__(self, *errors: BaseException, result: str = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> str:
        self.calls += 1
        self.last_args = (args, kwargs)
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class Sleeps:
    """An injected sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EAGAIN, "again"),
        OSError(errno.ENOMEM, "no memory"),
        OSError(errno.EMFILE, "too many open files"),
        OSError(errno.ENFILE, "file table overflow"),
        OSError(errno.EINTR, "interrupted"),
        OSError(errno.ECONNRESET, "reset"),
        OSError(errno.ECONNREFUSED, "refused"),
        OSError(errno.ETIMEDOUT, "timed out"),
        OSError(errno.EPIPE, "broken pipe"),
        BlockingIOError(errno.EAGAIN, "fork"),
        ConnectionResetError(),
        ConnectionError("down"),
        TimeoutError(),
        InterruptedError(),
        TransientRunnerError("throttled"),
    ],
)
def test_transient_errors(exc: BaseException) -> None:
    assert is_transient(exc) is True


@pytest.mark.parametrize(
    "exc",
    [
        PermissionError(errno.EACCES, "denied"),
        FileNotFoundError(errno.ENOENT, "missing"),
        OSError(errno.EINVAL, "invalid"),
        ValueError("bad"),
        RunnerError("quota refused"),
        JobNotFoundError("gone"),
        KeyError("x"),
        RuntimeError("unknown"),
    ],
)
def test_permanent_errors(exc: BaseException) -> None:
    assert is_transient(exc) is False


@pytest.fixture
def throttling() -> Iterator[Callable[[BaseException], bool | None]]:
    """An SDK classifier like a cloud runner registers: its throttling error is transient."""

    class Throttled(Exception):
        pass

    def classify(exc: BaseException) -> bool | None:
        if isinstance(exc, Throttled):
            return True
        if isinstance(exc, TimeoutError) and "deadline" in str(exc):
            return False  # overrides the built-in rule for this one case
        return None

    classify.Throttled = Throttled  # type: ignore[attr-defined]
    assert register_classifier(classify) is classify
    register_classifier(classify)  # twice is fine
    yield classify
    unregister_classifier(classify)


def test_registered_classifiers_extend_and_override_builtins(
    throttling: Callable[[BaseException], bool | None],
) -> None:
    throttled = throttling.Throttled  # type: ignore[attr-defined]
    assert is_transient(throttled()) is True
    assert is_transient(TimeoutError("deadline exceeded")) is False
    assert is_transient(TimeoutError("read timed out")) is True  # no opinion: built-in rule
    unregister_classifier(throttling)
    assert is_transient(throttled()) is False


def test_a_scoped_classifier_judges_only_its_runners_calls() -> None:
    """Google's ``ClientError`` must not be judged by AWS's rules (or the reverse)."""

    class ClientError(Exception):  # the shape of another SDK's error class
        pass

    def aws_rules(exc: BaseException) -> bool | None:
        return True if type(exc).__name__ == "ClientError" else None

    register_classifier(aws_rules, runner="aws-like")
    try:
        assert is_transient(ClientError("throttled"), "aws-like") is True
        assert is_transient(ClientError("throttled"), "gcp-like") is False  # nobody's opinion: permanent
        assert is_transient(ClientError("throttled")) is False
        calls = Flaky(ClientError("x"), result="ok")
        assert call(calls, runner="aws-like", sleep=lambda _: None) == "ok"
        with pytest.raises(RunnerError):
            call(Flaky(ClientError("x"), result="ok"), runner="gcp-like", sleep=lambda _: None)
    finally:
        unregister_classifier(aws_rules, runner="aws-like")
    assert is_transient(ClientError("throttled"), "aws-like") is False


def test_the_botocore_classifier_ignores_other_sdks_client_errors() -> None:
    from runners.aws_batch.runner import botocore_classifier

    class ClientError(Exception):
        response = {"Error": {"Code": "ThrottlingException"}}

    assert botocore_classifier(ClientError()) is None
    from botocore.exceptions import ClientError as BotoClientError

    throttled = BotoClientError({"Error": {"Code": "ThrottlingException"}}, "SubmitJob")
    assert botocore_classifier(throttled) is True
    assert is_transient(throttled, "aws-batch") is True
    assert is_transient(throttled, "gcp-batch") is False


def test_retries_transient_errors_then_returns(sleeps: Sleeps) -> None:
    fn = Flaky(BlockingIOError(errno.EAGAIN, "fork"), ConnectionResetError("reset"), result="done")
    seen: list[tuple[int, str, float]] = []
    result = call(
        fn,
        1,
        key="v",
        policy=FIXED,
        sleep=sleeps,
        on_retry=lambda attempt, exc, delay: seen.append((attempt, type(exc).__name__, delay)),
    )
    assert result == "done"
    assert fn.calls == 3
    assert fn.last_args == ((1,), {"key": "v"})
    assert sleeps.delays == [0.5, 1.0]
    assert seen == [(1, "BlockingIOError", 0.5), (2, "ConnectionResetError", 1.0)]


def test_gives_up_with_transient_runner_error_chained_to_the_last_error(sleeps: Sleeps) -> None:
    errors = [OSError(errno.EAGAIN, f"busy {i}") for i in range(10)]
    fn = Flaky(*errors)
    with pytest.raises(TransientRunnerError) as raised:
        call(fn, policy=FIXED, sleep=sleeps, runner="process", what="spawning 'sh'")
    assert fn.calls == FIXED.attempts
    assert sleeps.delays == [0.5, 1.0, 1.5]  # capped at max_delay
    assert raised.value.__cause__ is errors[FIXED.attempts - 1]
    assert raised.value.runner == "process"
    assert "spawning 'sh'" in str(raised.value) and "4 attempt" in str(raised.value)
    assert "busy 3" in str(raised.value)


def test_permanent_error_is_not_retried_and_keeps_its_message(sleeps: Sleeps) -> None:
    original = ValueError("jobQueueArn is not a valid ARN")
    fn = Flaky(original)
    with pytest.raises(RunnerError) as raised:
        call(fn, policy=FIXED, sleep=sleeps, runner="aws-batch")
    assert type(raised.value) is RunnerError
    assert str(raised.value) == "jobQueueArn is not a valid ARN"
    assert raised.value.__cause__ is original
    assert raised.value.runner == "aws-batch"
    assert fn.calls == 1 and sleeps.delays == []


def test_permanent_runner_error_is_reraised_as_is(sleeps: Sleeps) -> None:
    original = JobNotFoundError("no such job")
    with pytest.raises(JobNotFoundError) as raised:
        call(Flaky(original), policy=FIXED, sleep=sleeps)
    assert raised.value is original


def test_permanent_error_after_transient_ones(sleeps: Sleeps) -> None:
    fn = Flaky(TimeoutError("slow"), PermissionError(errno.EACCES, "AccessDenied"))
    with pytest.raises(RunnerError, match="AccessDenied"):
        call(fn, policy=FIXED, sleep=sleeps)
    assert fn.calls == 2


def test_error_without_message_is_named(sleeps: Sleeps) -> None:
    with pytest.raises(RunnerError) as raised:
        call(Flaky(RuntimeError()), policy=FIXED, sleep=sleeps)
    assert str(raised.value) == "RuntimeError"


def test_keyboard_interrupt_passes_through(sleeps: Sleeps) -> None:
    fn = Flaky(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        call(fn, policy=FIXED, sleep=sleeps)
    assert fn.calls == 1


def test_single_attempt_policy_never_sleeps(sleeps: Sleeps) -> None:
    with pytest.raises(TransientRunnerError):
        call(Flaky(TimeoutError()), policy=RetryPolicy(attempts=1), sleep=sleeps)
    assert sleeps.delays == []


def test_retrying_decorator(sleeps: Sleeps) -> None:
    fn = Flaky(ConnectionRefusedError(), result="up")

    @retrying(policy=FIXED, sleep=sleeps, runner="k8s")
    def describe(name: str) -> str:
        return fn(name)

    assert describe("job-1") == "up"
    assert describe.__name__ == "describe"
    assert fn.calls == 2 and sleeps.delays == [0.5]


def test_jittered_delays_stay_within_bounds() -> None:
    policy = RetryPolicy(attempts=10, initial_delay=1.0, max_delay=8.0, jitter=0.5)
    assert [policy.delay(n, 0.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert [policy.delay(n, 0.999999) for n in (1, 4)] == pytest.approx([0.5, 4.0], rel=1e-5)
    full = RetryPolicy(jitter=1.0)
    assert full.delay(1, 0.999999) == pytest.approx(0.0, abs=1e-5)


def test_default_policy_waits_are_random_but_bounded(sleeps: Sleeps) -> None:
    with pytest.raises(TransientRunnerError):
        call(Flaky(*[TimeoutError()] * 10), sleep=sleeps)
    assert len(sleeps.delays) == DEFAULT_POLICY.attempts - 1
    policy = DEFAULT_POLICY
    for n, delay in enumerate(sleeps.delays, start=1):
        nominal = min(policy.initial_delay * policy.multiplier ** (n - 1), policy.max_delay)
        assert nominal * (1 - policy.jitter) <= delay <= nominal


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"initial_delay": -1.0}, {"multiplier": 0.5}, {"jitter": 1.5}],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
