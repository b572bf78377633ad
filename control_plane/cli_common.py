"""What the ``squall`` commands share, and ``squall run`` itself, without typer.

``squall run FILE`` is the command users repeat most, and every run is a new process whose
start-up is most of a small flow's time. So its body and the helpers every command uses
(the consoles, failure exits, the local runtime, driving an execution and printing it) live
here, importing neither typer nor the other commands: :func:`control_plane.cli.main` calls
:func:`run_flow` directly for that exact form, and :mod:`control_plane.cli_commands` (the typer
app) calls the same function for every other one. A command ends by raising ``SystemExit``
with its status, which is what typer's ``Exit`` becomes too.
"""

import contextlib
import gc
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from control_plane.cli_output import literal, make_console, plain_json, plain_stdout

__all__ = [
    "check_known_inputs",
    "console",
    "drive_execution",
    "err",
    "exit_code",
    "fail",
    "on_stop",
    "open_runtime",
    "parse_inputs",
    "print_error",
    "print_log",
    "print_summary",
    "print_tree",
    "run_flow",
    "startup_done",
    "stoppable",
    "whole_process",
]

if TYPE_CHECKING:
    from control_plane.engine.model import Execution
    from control_plane.progress import LiveDisplay, PlainDisplay

console = make_console()
err = make_console(stderr=True)


def parse_inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            pair.encode("utf-8")
        except UnicodeEncodeError:  # the shell passed bytes that are not UTF-8 (surrogate escapes)
            raise fail(f"--input {key or pair!r}: the value is not valid UTF-8 text", 2) from None
        if not sep or not key:
            raise fail(f"--input expects KEY=VALUE, got {pair!r}", 2)
        inputs[key] = value
    return inputs


def check_known_inputs(given: dict[str, Any], declared: list[str], whose: str) -> None:
    """Every ``--input`` name must be one ``whose`` declares: a typo'd name would otherwise be
    dropped (as Kestra drops undeclared inputs) and the default used without a word."""
    for name in given:
        if name in declared:
            continue
        if not declared:
            raise fail(f"unknown input {name!r}: {whose} declares no inputs", 2)
        import difflib  # here: every run checks its inputs, few have a wrong one

        close = difflib.get_close_matches(name, declared, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" ({whose} declares {', '.join(declared)})"
        raise fail(f"unknown input {name!r}{hint}", 2)


def print_tree(execution: "Execution") -> None:
    """The task-run tree: written as text where rich would print no colour (``tree_text``),
    else by rich."""
    from control_plane.progress import tree, tree_text

    title = _title(execution)
    if (plain := plain_stdout()) is not None:
        text = tree_text(execution, title, width=plain.width, unicode=plain.unicode)
        if text is not None:
            _write(text)
            return
    console.print(tree(execution, title))


def _write(text: str) -> None:
    """``text`` on stdout as rich's console writes a print: at once, then flushed."""
    sys.stdout.write(text)
    sys.stdout.flush()


def print_error(message: str, style: str = "red") -> None:
    """One message on stderr, printed as it is: a message quoting ``[a, b]`` (allowed values, a
    list) must not be read as rich markup and vanish."""
    from rich.text import Text

    err.print(Text(message, style=style))


def fail(message: str, code: int = 1) -> SystemExit:
    """The exit a command raises after printing ``message`` (typer's ``Exit`` ends up as this
    same SystemExit; raised directly, it needs no typer where the command runs without it)."""
    print_error(message)
    return SystemExit(code)


def open_runtime(
    db: Path | None,
    secrets_file: Path | None = None,
    *,
    existing: bool = False,
    keep_jobs: bool = False,
    **options: Any,
) -> Any:
    """The local runtime (SQLite at ``db``), wired as every runtime is (``control_plane/runtime.py``).

    ``SQUALL_*`` settings apply as they do to ``squall server``: secrets, expression limits,
    ``SQUALL_MAX_OUTPUTS_BYTES``. A bad setting or database is one line, exit 1. ``existing``:
    the command only reads or acts on what is stored, so a database that is not there is an
    error, not a new empty one left behind.
    """
    from datetime import UTC, datetime

    from control_plane.errors import StoreError
    from control_plane.runtime import SettingsError, local_settings, open_local
    from control_plane.service.ownership import identity, orphans
    from control_plane.store.sqlite import SqliteStore

    try:
        settings = local_settings(db, secrets_file=str(secrets_file) if secrets_file else None)
        if existing and not Path(str(settings.db)).is_file():
            raise fail(f"no Squall database at {settings.db}: nothing has run with it (`squall run FILE`)")
        if keep_jobs:  # the process runner leaves each job's directory (log, status, outputs) in jobs/
            process = {**settings.runners.get("process", {}), "keep_jobs": True}
            settings = settings.model_copy(update={"runners": {**settings.runners, "process": process}})
        runtime = open_local(settings, **options)
    except (StoreError, SettingsError) as exc:
        raise fail(str(exc)) from None
    try:  # any command on the database moves on what a killed process left (ownership.py)
        store = runtime.store  # the service is built only when there is something to catch up
        if isinstance(store, SqliteStore) and orphans(store, datetime.now(UTC), identity()):
            runtime.service.catch_up()
    except StoreError as exc:
        runtime.close()
        raise fail(str(exc)) from None
    return runtime


def print_log(line: Any) -> None:
    from rich.text import Text

    who = f"{line.task_id}: " if line.task_id else ""
    style = {"ERROR": "red", "WARN": "yellow"}.get(str(line.level), "dim")
    console.print(Text.assemble((f"{line.level:5}", style), f" {who}{line.message}"), highlight=False)


def print_summary(execution: "Execution", seconds: float | None = None) -> None:
    from control_plane.progress import STYLE  # here, not at import: `squall --help` stays light

    style = STYLE.get(str(execution.state), "white")
    took = f" in {seconds:.2f}s" if seconds is not None else ""
    head = f"Execution {execution.id} {{}}{execution.state}{{}}{took}, {len(execution.taskruns)} task runs"
    plain = plain_stdout()  # then written as rich would print it, without rich (cli_output)
    if plain is not None and literal(shown := head.format("", "")):
        _write(shown + "\n")
    else:
        console.print(head.format(f"[{style}]", f"[/{style}]"))
    if execution.outputs:
        text = json.dumps(dict(execution.outputs), default=str)
        if plain is not None and (body := plain_json(text)) is not None:
            _write(body)
        else:
            console.print_json(text)
    if str(execution.state) == "PAUSED":
        console.print(f"paused: continue with `squall executions resume {execution.id}`", highlight=False)


def exit_code(execution: "Execution") -> int:
    return 0 if str(execution.state) in ("SUCCESS", "WARNING") else 1


_stop = {"interruptible": False, "requested": False}


def on_stop(signum: int, frame: Any) -> None:
    """SIGTERM (kill, docker stop, systemd) and SIGHUP (the terminal closed) stop as Ctrl-C does.

    Only where stopping means something (a run being driven, the server waiting): there they
    raise KeyboardInterrupt. Elsewhere (a finished run printing its summary, a kill under way,
    a listing) the command finishes: the signal must not end the process half-way.
    """
    _stop["requested"] = True
    if _stop["interruptible"]:
        raise KeyboardInterrupt


@contextlib.contextmanager
def stoppable() -> Iterator[None]:
    """Let SIGTERM and SIGHUP interrupt the block (see :func:`on_stop`)."""
    if _stop["requested"]:
        raise KeyboardInterrupt  # it came while the command was getting ready
    _stop["interruptible"] = True
    try:
        yield
    finally:
        _stop["interruptible"] = False


def drive_execution(
    runtime: Any,
    execution_id: str,
    begin: "Callable[[], Execution]",
    *,
    quiet: bool,
    started: float | None = None,
) -> "Execution":
    """Start (``begin``) and run execution ``execution_id`` to its end, showing its progress and logs.

    Ctrl-C kills it cleanly, even when it lands while ``begin`` is still submitting the first
    jobs: every job is cancelled through its runner and the state is KILLED.
    """
    service = runtime.service
    started = time.monotonic() if started is None else started
    watch = None if quiet else _watcher(runtime)
    # Quiet: nobody watches, so running jobs' output is not tailed either.
    service.on_change = None if watch is None else watch.on_change
    service.on_logs = None if watch is None else watch.on_logs
    try:
        with stoppable(), watch if watch is not None else contextlib.nullcontext():
            execution_id = begin().id
            execution = service.run(execution_id)
    except KeyboardInterrupt:
        if not _exists(runtime, execution_id):
            raise fail("interrupted before the execution was stored", 130) from None
        err.print("[red]interrupted: killing the execution and its jobs[/red]")
        service.on_change = None
        service.on_logs = None if quiet else _print_logs  # the display is gone: plain lines
        try:
            service.kill(execution_id)
        except Exception as exc:  # the kill itself must not hide the interruption
            print_error(str(exc))
        execution = service.run(execution_id, deadline=time.monotonic() + 30)
        print_summary(execution, time.monotonic() - started)
        raise SystemExit(130) from None
    if watch is not None:
        chain = [*watch.tally.previous, (execution.id, execution.state)]
        for (old, state), (new, _) in itertools.pairwise(chain):  # flow retries
            console.print(
                f"execution {old} {state}, retried as execution {new}", highlight=False, soft_wrap=True
            )
        print_tree(execution)
    print_summary(execution, time.monotonic() - started)
    return execution


def _watcher(runtime: Any) -> "LiveDisplay | PlainDisplay":
    """The live display on an interactive terminal, plain lines elsewhere (``progress.py``)."""
    from control_plane.progress import display_for

    service = runtime.service
    return display_for(
        console,
        lambda ex: service.flow(ex.namespace, ex.flow_id, ex.flow_revision),
        service.driver.retry_id,
        interactive=False if plain_stdout() is not None else None,  # a pipe or a file: no rich needed
    )


def _print_logs(execution: "Execution | None", lines: Any) -> None:
    for line in lines:
        print_log(line)


def _exists(runtime: Any, execution_id: str) -> bool:
    from control_plane.errors import NotFoundError

    try:
        runtime.store.get_execution(execution_id)
    except NotFoundError:
        return False
    return True


def _title(execution: "Execution") -> str:
    return f"[bold]{execution.namespace}.{execution.flow_id}[/bold]"


def run_flow(
    file: Path,
    input: list[str] | None = None,
    *,
    virtual_time: bool = False,
    quiet: bool = False,
    keep_jobs: bool = False,
    db: Path | None = None,
    secrets_file: Path | None = None,
) -> NoReturn:
    """``squall run``: deploy ``file`` to the local store and drive an execution of it to its
    end; raises SystemExit with the command's status (0 on SUCCESS or WARNING)."""
    from control_plane.errors import FlowValidationError, InputError
    from control_plane.flows.loader import parse_flow, read_flow_file
    from control_plane.service.clock import SystemClock, VirtualClock

    started = time.monotonic()
    clock = VirtualClock() if virtual_time else SystemClock()
    _use_caches(db)
    try:
        source = read_flow_file(file)
        parsed = parse_flow(source, str(file))
    except FlowValidationError as exc:
        raise fail(str(exc)) from None
    if parsed.disabled:  # Kestra refuses to create an execution of a disabled flow (409)
        raise fail(f"flow {parsed.namespace}.{parsed.id} is disabled (disabled: true in {file}): not run")
    with open_runtime(db, secrets_file, keep_jobs=keep_jobs, clock=clock) as runtime:
        try:
            record = runtime.service.deploy(source, str(file))
        except FlowValidationError as exc:
            raise fail(str(exc)) from None
        inputs = parse_inputs(input or [])
        flow = runtime.service.flow(record.namespace, record.id, record.revision)
        startup_done()
        check_known_inputs(inputs, [i.id for i in flow.inputs or ()], f"flow {record.namespace}.{record.id}")
        new_id = runtime.service.new_id()
        try:
            final = drive_execution(
                runtime,
                new_id,
                lambda: runtime.service.start(record.namespace, record.id, inputs, execution_id=new_id),
                quiet=quiet,
                started=started,
            )
        except InputError as exc:
            for message in exc.messages:
                print_error(message)
            raise SystemExit(1) from None
        _follow_triggered(runtime)
    raise SystemExit(exit_code(final))


def _use_caches(db: Path | None) -> None:
    """Before the flow is first read: validated flows are kept beside the database."""
    from control_plane.runtime import SettingsError, local_settings, use_local_caches

    with contextlib.suppress(SettingsError):  # the runtime reports it, with the same message
        use_local_caches(local_settings(db))


def _follow_triggered(runtime: Any) -> None:
    """Drive the executions the run's Flow triggers started (and theirs) to their end too.

    Left alone they would wait for the next ``squall`` command to take them over. The exit
    code stays the run's own execution's.
    """
    driver = runtime.service.driver
    seen: set[str] = set()
    with stoppable():
        while pending := [i for i in driver.triggered if i not in seen]:
            for execution_id in pending:
                seen.add(execution_id)
                execution = runtime.service.run(execution_id)
                console.print(
                    f"triggered: execution {execution.id} of {execution.namespace}.{execution.flow_id}"
                    f" {execution.state}",
                    highlight=False,
                )


_GC_THRESHOLDS = gc.get_threshold()
_whole_process = False


def whole_process() -> None:
    """This process is the ``squall`` command (:func:`control_plane.cli.main`): start-up runs
    with a large first collection threshold until :func:`startup_done` freezes what it made."""
    global _whole_process
    _whole_process = True
    # Until startup_done(): a command that never calls it only collects less often, never not at all.
    gc.set_threshold(max(_GC_THRESHOLDS[0], 100_000), *_GC_THRESHOLDS[1:])


def startup_done() -> None:
    """Start-up is over (modules imported, the flow validated): what it made lives as long as
    the process, so the collector stops rescanning it (``gc.freeze``) and runs as often as usual
    again. Start-up ran with a large first threshold (:func:`main`): ~300 collections, ~50 ms
    of a 200-task ``squall run``, each rescanning the imported modules' objects, freed nothing.

    Only when this process is the ``squall`` command (:func:`main`): a command run inside
    another program (tests, an embedding) leaves that program's collector as it found it."""
    if not _whole_process:
        return
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
