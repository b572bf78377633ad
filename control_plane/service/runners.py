"""Which runner instance serves a ``taskRunner`` type: one instance per runner, made on first use.

Built-in and third-party runners are found the same way, through the ``squall.runners``
entry-point group. The service passes construction arguments per runner name (the process
runner needs its jobs directory); a runner without arguments is built with none.

A runner whose SDK is not installed (the base install has no boto3) fails at construction
or, since runners import their SDK lazily, at its first call. Either way the ImportError
becomes a :class:`RunnerUnavailableError` (a ``RunnerError``) naming the extra to install::

    with dependencies("aws-batch"):          # ImportError -> RunnerUnavailableError
        runner = registry.get("aws-batch")   # raises it too, and remembers the failure
        runner.submit(spec)

so the service fails (or skips) only the jobs of that runner, never its whole loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeGuard, TypeVar

from msgspec import Struct

from runners.base import Evented, JobEvent, PushEvent, Runner, RunnerError, runner_classes

__all__ = [
    "EXTRAS",
    "RunnerEvent",
    "RunnerRegistry",
    "RunnerUnavailableError",
    "UnknownRunnerError",
    "dependencies",
    "implements",
]

EXTRAS = {
    "boto3": "aws",
    "botocore": "aws",
    "s3transfer": "aws",
    "aws_lambda_powertools": "aws",
    "google": "gcp",
    "azure": "azure",
    "kubernetes": "k8s",
    "docker": "docker",
}
"""Top-level module a built-in runner imports -> the ``squall[...]`` extra that installs it."""

LAMBDA_OPTIONAL_EXTRAS = frozenset({"gcp", "azure", "k8s"})
"""Extras ``squall package --extra`` can put in the Lambda zip (control_plane/packaging.py's
OPTIONAL_EXTRAS; kept here as data so the message costs no import of the packager)."""

_log = logging.getLogger("squall.runners")
_T = TypeVar("_T")
_capabilities: dict[tuple[type, object], bool] = {}  # (runner class, Protocol) -> implements it


def implements(runner: object, capability: Callable[..., _T]) -> TypeGuard[_T]:
    """``isinstance(runner, capability)`` for a runtime-checkable Protocol, decided once per class.

    A runner's optional abilities (:class:`~runners.base.Waitable`, ``Disposable``,
    ``Evented``) are declared by its class; checking a Protocol inspects every member each
    time (~20 us), and the job supervision loop asks a few times per task.
    """
    key: tuple[type, object] = (type(runner), capability)
    found = _capabilities.get(key)
    if found is None:
        assert isinstance(capability, type)
        found = _capabilities[key] = isinstance(runner, capability)
    return found


class RunnerEvent(Struct, frozen=True):
    """A push event, understood: which runner it is for and what it says of which job."""

    runner: str
    event: JobEvent


class UnknownRunnerError(LookupError):
    def __init__(self, name: str, installed: list[str]) -> None:
        super().__init__(
            f"unknown task runner type '{name}' (installed runners: {', '.join(installed) or 'none'})"
        )


class RunnerUnavailableError(RunnerError):
    """A runner that cannot work here because a module it imports is not installed.

    ``str()`` names the runner by its entry-point name; :meth:`for_type` by the type the
    flow wrote, which is what its author recognises.
    """

    def __init__(self, runner: str, cause: ImportError) -> None:
        self.module = (cause.name or "").split(".")[0] or None
        self.extra = EXTRAS.get(self.module or "")
        self.cause = cause
        super().__init__(self.for_type(runner), runner=runner)

    def for_type(self, runner_type: str) -> str:
        if self.extra is not None:
            extra = self.extra
            hint = f"pip install 'squall[{extra}]'"
            if extra in LAMBDA_OPTIONAL_EXTRAS:
                hint += f" (on Lambda: a zip built with `squall package --extra {extra}`)"
            return f"task runner '{runner_type}' needs the {extra} extra: {hint}"
        what = f"the Python module '{self.module}'" if self.module else "a Python module"
        return f"task runner '{runner_type}' needs {what}, which is not installed ({self.cause})"


@contextmanager
def dependencies(runner: str) -> Iterator[None]:
    """Turn an ImportError raised inside (a runner's lazy SDK import) into RunnerUnavailableError."""
    try:
        yield
    except ImportError as exc:
        _log.debug("task runner %s: import failed", runner, exc_info=True)
        raise RunnerUnavailableError(runner, exc) from exc


class RunnerRegistry:
    def __init__(
        self,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        instances: Mapping[str, Runner] | None = None,
        classes: Callable[[], Mapping[str, type[Runner]]] | None = None,
    ) -> None:
        self._config = dict(config or {})
        self._instances: dict[str, Runner] = dict(instances or {})
        self._classes_of = classes or (lambda: runner_classes(self._load_failed))
        self._classes: Mapping[str, type[Runner]] | None = None
        self._unavailable: dict[str, RunnerUnavailableError] = {}

    def _load_failed(self, name: str, error: ImportError) -> None:
        """An installed runner whose module cannot be imported: unavailable, the others still work."""
        _log.debug("task runner %s: import failed", name, exc_info=error)
        self._unavailable[name] = RunnerUnavailableError(name, error)

    def classes(self) -> Mapping[str, type[Runner]]:
        if self._classes is None:
            self._classes = self._classes_of()
        return self._classes

    def get(self, name: str) -> Runner:
        """The runner named ``name``, built on first use.

        UnknownRunnerError when no such runner is installed; RunnerUnavailableError when its
        class cannot be loaded or built for want of a module (remembered: not retried).
        """
        runner = self._instances.get(name)
        if runner is None:
            classes = self.classes()
            if (unavailable := self._unavailable.get(name)) is not None:
                raise unavailable
            try:
                with dependencies(name):
                    cls = classes.get(name)
                    if cls is None:
                        raise UnknownRunnerError(name, sorted({*self.classes(), *self._instances}))
                    runner = cls(**self._config.get(name, {}))
            except RunnerUnavailableError as exc:
                self._unavailable[name] = exc
                raise
            self._instances[name] = runner
        return runner

    def parse_event(self, event: PushEvent) -> RunnerEvent | None:
        """What a push event says, asking only the runners that declared its key.

        A runner class lists the keys it understands in ``event_keys`` (:class:`Evented`;
        ``aws.batch`` for AWS Batch); the others are not even built, so an events Lambda
        does not pay for SDK clients it will never use.
        """
        for name in sorted({*self._instances, *self.classes()}):
            if event.key not in self._declared_keys(name):
                continue
            try:
                with dependencies(name):
                    runner = self.get(name)
                    parsed = runner.parse_event(event) if isinstance(runner, Evented) else None
            except RunnerUnavailableError as exc:
                _log.warning("%s event not understood: %s", event.key, exc)
                continue
            if parsed is not None:
                return RunnerEvent(name, parsed)
        return None

    def event_keys(self) -> frozenset[str]:
        """Every push-event key some runner here declares: what the event ingress may route.

        Read from the classes (an instance given to the registry counts as its class), so no
        runner is built to answer: a webhook naming a key nobody declares is refused without
        importing any SDK.
        """
        return frozenset().union(*(self._declared_keys(n) for n in {*self._instances, *self.classes()}))

    def _declared_keys(self, name: str) -> frozenset[str]:
        cls = type(self._instances[name]) if name in self._instances else self.classes()[name]
        return frozenset(getattr(cls, "event_keys", ()))  # a class attribute of Evented

    def started(self) -> list[Runner]:
        """Runners already in use (the ones worth polling or waiting on)."""
        return list(self._instances.values())
