"""The Lambda container's runtime: built from the environment on first use, reused while warm.

Each Lambda function runs in containers of its own, and each container builds one runtime
(:func:`control_plane.runtime.open_runtime` on :func:`~control_plane.runtime.load_settings`)
the first time a handler asks for it, then keeps its store client, runner clients and parsed
flows for the invocations that follow. ``install`` puts a runtime in its place (tests that
play several containers, one at a time); ``reset`` closes and drops it.
"""

from __future__ import annotations

from control_plane.runtime import Runtime, load_settings, open_runtime

__all__ = ["install", "reset", "runtime"]

_current: Runtime | None = None


def runtime() -> Runtime:
    """The container's runtime, built on first use from the environment."""
    global _current
    if _current is None:
        _current = open_runtime(load_settings())
    return _current


def install(value: Runtime | None) -> None:
    """Use ``value`` as the container's runtime (tests build their own)."""
    global _current
    _current = value


def reset() -> None:
    """Close and drop the container's runtime; the next :func:`runtime` builds a new one."""
    global _current
    if _current is not None:
        _current.close()
    _current = None
