"""The ``squall`` command's entry point.

``squall run FILE``, the command users repeat most, runs without typer: each run is a new
process, and importing typer (with its vendored click and ``inspect``) and building the
command tree cost ~10-15 ms, ~5% of a cached 200-task run. :func:`main` calls
:func:`control_plane.cli_common.run_flow` for exactly that form (the subcommand and one path,
with no option), with the options' values typer would give it: the two environment variables
it reads (``SQUALL_DB``, ``SQUALL_SECRETS_FILE``, an empty one counting as unset) and the
defaults; the exceptions typer's main turns into exits are turned into the same ones here.
Every other command line (an option, ``--``, ``--help``, a completion request) goes to the
typer app in :mod:`control_plane.cli_commands`, whose ``run`` calls the same function; a test
runs both ways and compares what they print and return.

``from control_plane.cli import app`` still gives the typer app (imported on that access).
"""

import errno
import os
import signal
import sys
from pathlib import Path
from typing import Any

from control_plane import cli_common

__all__ = ["main"]  # and `app`, through __getattr__


def __getattr__(name: str) -> Any:
    if name == "app":
        from control_plane.cli_commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    cli_common.whole_process()
    # A signal ignored when squall starts stays ignored, as Python does for SIGINT: `nohup`
    # ignores SIGHUP so that closing the terminal does not stop the run.
    stops = [sig for sig in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(sig) is not signal.SIG_IGN]
    for sig in stops:
        signal.signal(sig, cli_common.on_stop)
    try:
        file = _plain_run(sys.argv[1:])
        if file is not None:
            _run_without_typer(file)
        from control_plane.cli_commands import app

        app()
    except SystemExit as done:
        if _is_the_command():
            _leave(done.code)
        raise
    finally:
        # The command is done: a stop arriving now has nothing left to stop. Ignored, not
        # defaulted: the interpreter resets Python handlers to the default action while it
        # exits, and a finished run would then die of the signal instead of exiting 0.
        for sig in stops:
            signal.signal(sig, signal.SIG_IGN)


def _plain_run(args: list[str]) -> str | None:
    """The flow file of ``squall run FILE`` given exactly so, else None (typer parses it).

    A path typer would read otherwise is left to typer: one starting with ``-`` (an option,
    ``--``), an empty one, one that is not valid text (undecodable bytes from the shell), as
    is a shell-completion request (``_SQUALL_COMPLETE``-style variables, which typer answers
    before parsing anything).
    """
    if len(args) != 2 or args[0] != "run":
        return None
    file = args[1]
    if not file or file.startswith("-"):
        return None
    try:
        file.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if any(name.startswith("_") and name.endswith("_COMPLETE") for name in os.environ):
        return None
    return file


def _run_without_typer(file: str) -> None:
    """``squall run FILE`` as typer would run it (see the module docstring): exits, never returns."""
    try:
        cli_common.run_flow(
            Path(file),
            db=_from_environment("SQUALL_DB"),
            secrets_file=_from_environment("SQUALL_SECRETS_FILE"),
        )
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except EOFError:
        sys.stderr.write("\nAborted!\n")
        sys.stderr.flush()
        raise SystemExit(1) from None
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        from typer._click.utils import PacifyFlushWrapper

        sys.stdout = PacifyFlushWrapper(sys.stdout)
        sys.stderr = PacifyFlushWrapper(sys.stderr)
        raise SystemExit(1) from None


def _from_environment(name: str) -> Path | None:
    """An option's value from its environment variable, as click reads one (empty is unset)."""
    value = os.environ.get(name)
    return Path(value) if value else None


def _is_the_command() -> bool:
    """Whether this process is the ``squall`` command (its console script, or ``python -m
    control_plane.cli``), not a program that called :func:`main` and may go on after it."""
    entry = sys.modules.get("__main__")
    spec = getattr(entry, "__spec__", None)
    if spec is not None:
        return bool(spec.name == "control_plane.cli")
    return Path(getattr(entry, "__file__", None) or "").name == "squall"


def _leave(code: object) -> None:
    """End the process as the interpreter would, without tearing it down.

    Why: the teardown frees every object of the ~500 modules imported, one by one (~8 ms of
    CPU, 3% of a cached 200-task ``squall run``), and nothing after the command needs it. What
    an exit must do is done first: the ``atexit`` functions (logging's flush) and flushing
    stdout and stderr. Everything the command acknowledged is already committed (synced or
    in the WAL), as it must be against a crash. Where that is not certain, the interpreter's
    own exit runs instead: another thread still running, an exit with a message, or a flush
    that fails (a closed pipe then gives Python's usual message and status).
    """
    import atexit
    import threading

    if threading.active_count() > 1 or not isinstance(code, int | None):
        return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit((code or 0) & 0xFF)  # the status the interpreter's exit gives (-1 is 255)


if __name__ == "__main__":
    main()
