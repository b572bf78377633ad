"""The ``squall`` command.

Heavy modules are imported inside each command so that ``squall --help`` stays instant. Bad
user input (a flow that fails validation, bad inputs, a missing file) prints a clear message
and exits 1; a Python traceback is always a bug.

No ``from __future__ import annotations`` here: typer reads every command's signature on each
invocation (``inspect.signature(eval_str=True)`` and ``get_type_hints``), which compiles each
string annotation twice, ~170 ``compile`` calls and ~10 ms of a ``squall run``; evaluated once
at import they cost a fraction of that. Names imported only for type checking are quoted.
"""

import contextlib
import gc
import itertools
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from control_plane.cli_output import Format, chosen, emit_json, emit_rows, make_console

if TYPE_CHECKING:
    from control_plane.engine.model import Execution
    from control_plane.progress import LiveDisplay, PlainDisplay

app = typer.Typer(
    name="squall",
    help="Serverless orchestrator for Kestra-style YAML flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: no boxes to break in a pipe, no type after a flag
)
console = make_console()
err = make_console(stderr=True)


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            pair.encode("utf-8")
        except UnicodeEncodeError:  # the shell passed bytes that are not UTF-8 (surrogate escapes)
            raise _fail(f"--input {key or pair!r}: the value is not valid UTF-8 text", 2) from None
        if not sep or not key:
            raise _fail(f"--input expects KEY=VALUE, got {pair!r}", 2)
        inputs[key] = value
    return inputs


def _known_inputs(given: dict[str, Any], declared: list[str], whose: str) -> None:
    """Every ``--input`` name must be one ``whose`` declares: a typo'd name would otherwise be
    dropped (as Kestra drops undeclared inputs) and the default used without a word."""
    import difflib

    for name in given:
        if name in declared:
            continue
        if not declared:
            raise _fail(f"unknown input {name!r}: {whose} declares no inputs", 2)
        close = difflib.get_close_matches(name, declared, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" ({whose} declares {', '.join(declared)})"
        raise _fail(f"unknown input {name!r}{hint}", 2)


def _print_tree(execution: "Execution") -> None:
    """The task-run tree: written as text where rich would print no colour (``tree_text``),
    else by rich."""
    from control_plane.progress import tree, tree_text

    title = _title(execution)
    if console.color_system is None and not console.is_terminal and not console.legacy_windows:
        text = tree_text(execution, title, width=console.width, unicode=not console.options.ascii_only)
        if text is not None:
            console.file.write(text)
            return
    console.print(tree(execution, title))


SecretsOption = Annotated[
    Path | None,
    typer.Option(
        "--secrets",
        envvar="SQUALL_SECRETS_FILE",
        help="YAML file of secret('NAME') values (mode 600); SECRET_<NAME> variables (base64) work too",
    ),
]
DbOption = Annotated[
    Path | None,
    typer.Option("--db", envvar="SQUALL_DB", help="SQLite database (default: under the user data dir)"),
]
OutputOption = Annotated[
    Format | None,
    typer.Option(
        "--output",
        help="table, tsv (one row a line, tab-separated, no header) or json; default: a table on a "
        "terminal, tsv otherwise",
    ),
]
KeepJobsOption = Annotated[
    bool,
    typer.Option(
        "--keep-jobs",
        help="Keep each script task's directory under jobs/ beside the database (its log, status and "
        "files); by default it is removed once the task's log and outputs are stored",
    ),
]
InputOption = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", metavar="KEY=VALUE", help="Input KEY=VALUE (repeatable)"),
]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"squall {version('squall')}")
        except PackageNotFoundError:
            print("squall (not installed: run from a source tree)")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Serverless orchestrator for Kestra-style YAML flows."""


def _error(message: str, style: str = "red") -> None:
    """One message on stderr, printed as it is: a message quoting ``[a, b]`` (allowed values, a
    list) must not be read as rich markup and vanish."""
    from rich.text import Text

    err.print(Text(message, style=style))


def _fail(message: str, code: int = 1) -> typer.Exit:
    _error(message)
    return typer.Exit(code)


def _open(
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
            raise _fail(f"no Squall database at {settings.db}: nothing has run with it (`squall run FILE`)")
        if keep_jobs:  # the process runner leaves each job's directory (log, status, outputs) in jobs/
            process = {**settings.runners.get("process", {}), "keep_jobs": True}
            settings = settings.model_copy(update={"runners": {**settings.runners, "process": process}})
        runtime = open_local(settings, **options)
    except (StoreError, SettingsError) as exc:
        raise _fail(str(exc)) from None
    try:  # any command on the database moves on what a killed process left (ownership.py)
        store = runtime.store  # the service is built only when there is something to catch up
        if isinstance(store, SqliteStore) and orphans(store, datetime.now(UTC), identity()):
            runtime.service.catch_up()
    except StoreError as exc:
        runtime.close()
        raise _fail(str(exc)) from None
    return runtime


def _print_log(line: Any) -> None:
    from rich.text import Text

    who = f"{line.task_id}: " if line.task_id else ""
    style = {"ERROR": "red", "WARN": "yellow"}.get(str(line.level), "dim")
    console.print(Text.assemble((f"{line.level:5}", style), f" {who}{line.message}"), highlight=False)


def _summary(execution: "Execution", seconds: float | None = None) -> None:
    from control_plane.progress import STYLE  # here, not at import: `squall --help` stays light

    style = STYLE.get(str(execution.state), "white")
    took = f" in {seconds:.2f}s" if seconds is not None else ""
    console.print(
        f"Execution {execution.id} [{style}]{execution.state}[/{style}]{took},"
        f" {len(execution.taskruns)} task runs"
    )
    if execution.outputs:
        console.print_json(json.dumps(dict(execution.outputs), default=str))
    if str(execution.state) == "PAUSED":
        console.print(f"paused: continue with `squall executions resume {execution.id}`", highlight=False)


def _exit_code(execution: "Execution") -> int:
    return 0 if str(execution.state) in ("SUCCESS", "WARNING") else 1


_stop = {"interruptible": False, "requested": False}


def _on_stop(signum: int, frame: Any) -> None:
    """SIGTERM (kill, docker stop, systemd) and SIGHUP (the terminal closed) stop as Ctrl-C does.

    Only where stopping means something (a run being driven, the server waiting): there they
    raise KeyboardInterrupt. Elsewhere (a finished run printing its summary, a kill under way,
    a listing) the command finishes: the signal must not end the process half-way.
    """
    _stop["requested"] = True
    if _stop["interruptible"]:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _stoppable() -> Iterator[None]:
    """Let SIGTERM and SIGHUP interrupt the block (see :func:`_on_stop`)."""
    if _stop["requested"]:
        raise KeyboardInterrupt  # it came while the command was getting ready
    _stop["interruptible"] = True
    try:
        yield
    finally:
        _stop["interruptible"] = False


def _drive(
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
        with _stoppable(), watch if watch is not None else contextlib.nullcontext():
            execution_id = begin().id
            execution = service.run(execution_id)
    except KeyboardInterrupt:
        if not _exists(runtime, execution_id):
            raise _fail("interrupted before the execution was stored", 130) from None
        err.print("[red]interrupted: killing the execution and its jobs[/red]")
        service.on_change = None
        service.on_logs = None if quiet else _print_logs  # the display is gone: plain lines
        try:
            service.kill(execution_id)
        except Exception as exc:  # the kill itself must not hide the interruption
            _error(str(exc))
        execution = service.run(execution_id, deadline=time.monotonic() + 30)
        _summary(execution, time.monotonic() - started)
        raise typer.Exit(130) from None
    if watch is not None:
        chain = [*watch.tally.previous, (execution.id, execution.state)]
        for (old, state), (new, _) in itertools.pairwise(chain):  # flow retries
            console.print(
                f"execution {old} {state}, retried as execution {new}", highlight=False, soft_wrap=True
            )
        _print_tree(execution)
    _summary(execution, time.monotonic() - started)
    return execution


def _watcher(runtime: Any) -> "LiveDisplay | PlainDisplay":
    """The live display on an interactive terminal, plain lines elsewhere (``progress.py``)."""
    from control_plane.progress import display_for

    service = runtime.service
    return display_for(
        console, lambda ex: service.flow(ex.namespace, ex.flow_id, ex.flow_revision), service.driver.retry_id
    )


def _print_logs(execution: "Execution | None", lines: Any) -> None:
    for line in lines:
        _print_log(line)


def _exists(runtime: Any, execution_id: str) -> bool:
    from control_plane.errors import NotFoundError

    try:
        runtime.store.get_execution(execution_id)
    except NotFoundError:
        return False
    return True


def _title(execution: "Execution") -> str:
    return f"[bold]{execution.namespace}.{execution.flow_id}[/bold]"


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Flow YAML file")],
    input: InputOption = None,
    virtual_time: Annotated[
        bool, typer.Option(help="Skip waits (Sleep, retry intervals) instead of really waiting")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print the summary")] = False,
    keep_jobs: KeepJobsOption = False,
    db: DbOption = None,
    secrets_file: SecretsOption = None,
) -> None:
    """Deploy a flow to the local store and run it (process runner); exit 0 on SUCCESS or WARNING."""
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
        raise _fail(str(exc)) from None
    if parsed.disabled:  # Kestra refuses to create an execution of a disabled flow (409)
        raise _fail(f"flow {parsed.namespace}.{parsed.id} is disabled (disabled: true in {file}): not run")
    with _open(db, secrets_file, keep_jobs=keep_jobs, clock=clock) as runtime:
        try:
            record = runtime.service.deploy(source, str(file))
        except FlowValidationError as exc:
            raise _fail(str(exc)) from None
        inputs = _parse_inputs(input or [])
        flow = runtime.service.flow(record.namespace, record.id, record.revision)
        _started()
        _known_inputs(inputs, [i.id for i in flow.inputs or ()], f"flow {record.namespace}.{record.id}")
        new_id = runtime.service.new_id()
        try:
            final = _drive(
                runtime,
                new_id,
                lambda: runtime.service.start(record.namespace, record.id, inputs, execution_id=new_id),
                quiet=quiet,
                started=started,
            )
        except InputError as exc:
            for message in exc.messages:
                _error(message)
            raise typer.Exit(1) from None
        _follow_triggered(runtime)
    raise typer.Exit(_exit_code(final))


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
    with _stoppable():
        while pending := [i for i in driver.triggered if i not in seen]:
            for execution_id in pending:
                seen.add(execution_id)
                execution = runtime.service.run(execution_id)
                console.print(
                    f"triggered: execution {execution.id} of {execution.namespace}.{execution.flow_id}"
                    f" {execution.state}",
                    highlight=False,
                )


executions_app = typer.Typer(help="Inspect and control executions in the local store.", no_args_is_help=True)
flows_app = typer.Typer(help="Deploy and list flows in the local store.", no_args_is_help=True)
app.add_typer(executions_app, name="executions")
app.add_typer(flows_app, name="flows")


def _execution(runtime: Any, execution_id: str) -> "Execution":
    """The execution with this id, or with the one id that starts with it (a unique prefix)."""
    from control_plane.errors import NotFoundError

    try:
        return runtime.store.get_execution(execution_id)
    except NotFoundError:
        pass
    matches = runtime.store.execution_ids_starting(execution_id, limit=6) if execution_id else []
    if len(matches) == 1:
        return runtime.store.get_execution(matches[0])
    if matches:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise _fail(f"execution id {execution_id!r} is ambiguous: {shown}; give more of it")
    raise _fail(
        f"execution {execution_id!r} not found in {runtime.store.path}"
        " (`squall executions list` shows the known ones)"
    )


@executions_app.command("list")
def executions_list(
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    flow: Annotated[str | None, typer.Option("--flow", "-f", help="Flow id")] = None,
    state: Annotated[list[str] | None, typer.Option("--state", "-s", help="Only these states")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    output: OutputOption = None,
    db: DbOption = None,
) -> None:
    """Newest executions first: id, flow, state, created, duration (`| cut -f1` gives the ids)."""
    from rich.text import Text

    from control_plane.api.views import execution_summary_view
    from control_plane.engine.states import State
    from control_plane.progress import STYLE

    try:
        states = [State(s.upper()) for s in state or []]
    except ValueError:
        raise _fail(f"--state must be one of {', '.join(s.value for s in State)}") from None
    with _open(db, existing=True) as runtime:
        page = runtime.store.list_executions(namespace=namespace, flow_id=flow, states=states, limit=limit)
    fmt = chosen(output, console)
    if fmt is Format.json:
        emit_json([execution_summary_view(ex) for ex in page.items])
        return
    rows = [
        (
            ex.id,
            f"{ex.namespace}.{ex.flow_id}",
            Text(str(ex.state), style=STYLE.get(str(ex.state), "")),
            ex.created.strftime("%Y-%m-%d %H:%M:%S"),
            f"{(ex.ended - ex.created).total_seconds():.2f}s" if ex.ended else "",
        )
        for ex in page.items
    ]
    emit_rows(console, fmt, ("id", "flow", "state", "created", "duration"), rows)
    if not page.items and fmt is Format.table:
        console.print("[dim]no executions[/dim]")


@executions_app.command("show")
def executions_show(
    execution_id: Annotated[str, typer.Argument(help="Execution id, or a unique prefix of it")],
    output: Annotated[
        Format | None, typer.Option("--output", help="json: the execution as the API returns it")
    ] = None,
    db: DbOption = None,
) -> None:
    """The execution's task-run tree, state and outputs."""
    from rich.text import Text

    from control_plane.api.views import execution_view

    with _open(db, existing=True) as runtime:
        execution = _execution(runtime, execution_id)
    if output is Format.json:
        emit_json(execution_view(execution))
        return
    _print_tree(execution)
    _summary(execution)
    for tr in execution.ordered_taskruns():
        if tr.error:
            console.print(Text.assemble((tr.task_id, "red"), f": {tr.error}"))


@executions_app.command("logs")
def executions_logs(
    execution_id: Annotated[str, typer.Argument(help="Execution id, or a unique prefix of it")],
    task: Annotated[str | None, typer.Option("--task", "-t", help="Only this task id or task run id")] = None,
    db: DbOption = None,
) -> None:
    """Every stored log line of the execution, in order."""
    with _open(db, existing=True) as runtime:
        execution = _execution(runtime, execution_id)
        wanted = None
        if task is not None:
            wanted = {tr.id for tr in execution.taskruns.values() if task in (tr.id, tr.task_id)}
            if not wanted:
                raise _fail(f"execution {execution.id} has no task or task run {task!r}")
        cursor = None
        while True:
            page = runtime.store.read_logs(execution.id, limit=5000, cursor=cursor)
            for line in page.items:
                if wanted is None or line.taskrun_id in wanted:
                    _print_log(line)
            cursor = page.cursor
            if cursor is None:
                break


@executions_app.command("purge")
def executions_purge(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="30d, 12h, 90m or ISO 8601 (P30D): created before now minus AGE",
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go")] = False,
    db: DbOption = None,
) -> None:
    """Delete finished executions older than AGE: their task runs, logs and stored files.

    Running, paused and queued executions are kept whatever their age.
    """
    from datetime import UTC, datetime

    age = _age(older_than)
    with _open(db, existing=True) as runtime:
        gone = runtime.store.purge_executions(datetime.now(UTC) - age, dry_run=dry_run)
        if not dry_run:
            storage = runtime.service.storage
            for execution_id, namespace, flow_id in gone:
                storage.delete_prefix(storage.execution_prefix(namespace, flow_id, execution_id))
    for execution_id, namespace, flow_id in gone:
        console.print(
            f"{'would purge' if dry_run else 'purged'} {execution_id} {namespace}.{flow_id}", markup=False
        )
    verb = "would be purged" if dry_run else "purged"
    err.print(
        f"{len(gone)} finished execution{'' if len(gone) == 1 else 's'} older than {older_than} {verb}",
        markup=False,
    )


def _age(text: str) -> Any:
    """``30d``, ``12h``, ``90m``, ``45s`` or an ISO 8601 duration, as a timedelta."""
    import re
    from datetime import timedelta

    match = re.fullmatch(r"(\d+)([dhms])", text.strip())
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}[match.group(2)]
        return timedelta(**{unit: int(match.group(1))})
    from control_plane.flows.durations import parse_timedelta

    try:  # the one duration parser, so an age reads like a flow's durations (Duration.parse)
        value = parse_timedelta(text.strip())
    except ValueError:
        raise _fail(f"--older-than {text!r}: give an age such as 30d, 12h, 90m or P30D", 2) from None
    if value < timedelta(0):
        raise _fail(f"--older-than {text!r}: the age must be positive", 2)
    return value


def _taskrun(runtime: Any, execution_id: str, kwargs: dict[str, Any]) -> str | None:
    """A ``--task`` given as a task id (first run of it) or as a task run id."""
    task = kwargs.get("task")
    if task is None:
        return None
    execution = runtime.store.get_execution(execution_id)
    if task in execution.taskruns:
        return str(task)
    for tr in execution.ordered_taskruns():
        if tr.task_id == task:
            return tr.id
    raise _fail(f"execution {execution_id} has no task or task run {task!r}")


def _control(db: Path | None, execution_id: str, what: str, quiet: bool, **kwargs: Any) -> None:
    from control_plane.errors import EngineError, InputError, ServiceError

    with _open(db, existing=True) as runtime:
        execution_id = _execution(runtime, execution_id).id
        service = runtime.service
        actions: dict[str, Callable[[], Execution]] = {
            "kill": lambda: service.kill(execution_id),
            "restart": lambda: service.restart(execution_id),
            "resume": lambda: _resume(runtime, execution_id, kwargs.get("inputs")),
            "replay": lambda: service.replay(
                execution_id, taskrun_id=_taskrun(runtime, execution_id, kwargs)
            ),
        }
        try:
            final = _drive(runtime, execution_id, actions[what], quiet=quiet)
        except InputError as exc:
            raise _fail("; ".join(exc.messages)) from None
        except (ServiceError, EngineError) as exc:
            raise _fail(str(exc)) from None
    raise typer.Exit(_exit_code(final) if what != "kill" else (0 if final.state.terminal else 1))


def _resume(runtime: Any, execution_id: str, inputs: dict[str, Any] | None) -> "Execution":
    """A PAUSED execution resumes with ``inputs``; a RUNNING one whose process is gone is taken over."""
    from control_plane.engine.states import State
    from control_plane.service.ownership import describe

    service = runtime.service
    execution = service.get(execution_id)
    if execution.state.terminal or execution.state is State.PAUSED:
        if inputs:
            _known_inputs(inputs, _resume_inputs(runtime, execution), "the paused task")
        return service.resume(execution_id, inputs)  # ends, or says why not
    if inputs:
        raise _fail(f"execution {execution_id} is {execution.state}, not PAUSED: --input is for a paused one")
    if not service.take_over(execution_id):
        holder = service.driver_of(execution_id)
        owner = describe(holder) if holder else "another process"
        raise _fail(f"execution {execution_id} is {execution.state} and driven by {owner}; it goes on there")
    err.print(f"execution {execution_id} was {execution.state}, its process gone: driving it on from here")
    return execution


def _resume_inputs(runtime: Any, execution: "Execution") -> list[str]:
    """The ``onResume`` input ids of the execution's paused tasks."""
    from control_plane.engine.states import State

    flow = runtime.service.driver.flow_of(execution)
    paused = {tr.task_id for tr in execution.taskruns.values() if tr.state is State.PAUSED}
    return [i.id for task in flow.walk() if task.id in paused for i in getattr(task, "onResume", None) or ()]


@executions_app.command("kill")
def executions_kill(execution_id: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """Cancel every running job of the execution; it ends KILLED."""
    _control(db, execution_id, "kill", quiet=True)


@executions_app.command("restart")
def executions_restart(
    execution_id: Annotated[str, typer.Argument()],
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    db: DbOption = None,
) -> None:
    """Run the failed task runs again in the same execution (Kestra's restart) and wait for the end."""
    _control(db, execution_id, "restart", quiet)


@executions_app.command("resume")
def executions_resume(
    execution_id: Annotated[str, typer.Argument()],
    input: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", metavar="KEY=VALUE", help="onResume input (repeatable)"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    db: DbOption = None,
) -> None:
    """Resume a paused execution with its Pause task's onResume inputs, or drive on one whose process died."""
    _control(db, execution_id, "resume", quiet, inputs=_parse_inputs(input or []))


@executions_app.command("replay")
def executions_replay(
    execution_id: Annotated[str, typer.Argument()],
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="Replay from this task id or task run id")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    db: DbOption = None,
) -> None:
    """A new execution of the same flow revision and inputs; with --task, from that task on."""
    _control(db, execution_id, "replay", quiet, task=task)


@flows_app.command("deploy")
def flows_deploy(
    files: Annotated[list[Path], typer.Argument(help="Flow YAML files")], db: DbOption = None
) -> None:
    """Validate and store flows; a new revision only when a flow changed."""
    from control_plane.errors import FlowValidationError
    from control_plane.flows.loader import read_flow_file

    bad = 0
    with _open(db) as runtime:
        for file in files:
            try:
                record = runtime.service.deploy(read_flow_file(file), str(file))
            except FlowValidationError as exc:
                bad += 1
                err.print(str(exc), highlight=False, markup=False)
            else:
                console.print(
                    f"[green]deployed[/green] {record.namespace}.{record.id} revision {record.revision}"
                )
    raise typer.Exit(1 if bad else 0)


@flows_app.command("list")
def flows_list(
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    output: OutputOption = None,
    db: DbOption = None,
) -> None:
    """Deployed flows with their latest revision: namespace, id, revision, updated."""
    from control_plane.api.views import flow_summary_view

    records = []
    with _open(db, existing=True) as runtime:
        cursor = None
        while True:
            page = runtime.store.list_flows(namespace, limit=500, cursor=cursor)
            records += page.items
            cursor = page.cursor
            if cursor is None:
                break
    fmt = chosen(output, console)
    if fmt is Format.json:
        emit_json([flow_summary_view(r) for r in records])
        return
    rows = [(r.namespace, r.id, str(r.revision), r.updated.strftime("%Y-%m-%d %H:%M:%S")) for r in records]
    emit_rows(console, fmt, ("namespace", "id", "revision", "updated"), rows)
    if not records and fmt is Format.table:
        console.print("[dim]no flows deployed (`squall flows deploy FILE`)[/dim]")


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Flow YAML files")],
    output: Annotated[
        Format | None,
        typer.Option("--output", help="json: [{file, valid, violations: [{line, column, path, message}]}]"),
    ] = None,
) -> None:
    """Validate flows; print every violation as file:line:column: path: message; exit 1 if any is invalid.

    Beyond what loading a flow checks, also reports what Kestra finds only at run time: template
    syntax errors, outputs.<id>/inputs.<id> that name nothing in the flow, input defaults that do
    not fit their type.
    """
    from rich.text import Text

    from control_plane.errors import FlowValidationError
    from control_plane.flows.loader import load_flow_file

    results: list[dict[str, Any]] = []
    for file in files:
        try:
            load_flow_file(file, lint=True)
        except FlowValidationError as exc:
            results.append(
                {"file": str(file), "valid": False, "violations": exc.violations, "text": str(exc)}
            )
        else:
            results.append({"file": str(file), "valid": True, "violations": []})
    if output is Format.json:
        emit_json(
            [
                {
                    "file": r["file"],
                    "valid": r["valid"],
                    "violations": [
                        {"line": v.line, "column": v.column, "path": v.path, "message": v.message}
                        for v in r["violations"]
                    ],
                }
                for r in results
            ]
        )
    else:
        for r in results:
            if r["valid"]:
                console.print(Text.assemble(("OK", "green"), f" {r['file']}"))
            else:
                err.print(r["text"], markup=False)
    raise typer.Exit(0 if all(r["valid"] for r in results) else 1)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file")] = None,
) -> None:
    """Print the JSON Schema of the flow language (for yaml-language-server completion)."""
    from control_plane.flows.schema import flow_json_schema

    text = json.dumps(flow_json_schema(), indent=2)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        try:
            output.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
        console.print(f"wrote {output}", markup=False)


@app.command()
def conformance(
    cases: Annotated[Path, typer.Argument(help="A cases.yaml file")],
    case_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds a case may run before it fails (script tasks run for real)")
    ] = 300.0,
) -> None:
    """Run every case of a conformance cases file; the last line reads `N passed, N failed`.

    Each case runs as `squall run --virtual-time` runs a flow: the production service on a
    scratch SQLite database, with the process runner, so cases may hold script tasks.
    """
    from control_plane.conformance import run_cases
    from control_plane.errors import SquallError

    passed = failed = 0
    try:
        for result in run_cases(cases, timeout=case_timeout):
            print(result.line(), flush=True)
            passed += result.passed
            failed += not result.passed
    except SquallError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    print(f"{passed} passed, {failed} failed")
    raise typer.Exit(1 if failed else 0)


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port)")] = 8080,
    db: DbOption = None,
    store: Annotated[str | None, typer.Option(help="sqlite (default) or dynamodb; $SQUALL_STORE")] = None,
    table: Annotated[
        str | None, typer.Option(help="DynamoDB table (--store dynamodb); $SQUALL_TABLE")
    ] = None,
    endpoint_url: Annotated[
        str | None, typer.Option("--endpoint-url", help="DynamoDB endpoint (DynamoDB Local)")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="SQUALL_API_TOKEN", help="Bearer token clients must send (default: generated)"),
    ] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve the API without any auth")] = False,
    tick_interval: Annotated[
        float, typer.Option(min=0.01, help="Seconds between control-plane ticks (timers, job polls)")
    ] = 1.0,
    secrets_file: SecretsOption = None,
) -> None:
    """Serve the HTTP API (the Lambda handler, unchanged) with an in-process tick loop; Ctrl-C stops it."""
    import os
    import secrets

    from control_plane.runtime import SettingsError, load_settings, local_settings

    try:  # the API is the Lambda handler's, on Powertools: in the aws extra, not the base install
        import aws_lambda_powertools  # noqa: F401
    except ImportError:
        raise _fail(
            "squall server needs the aws extra (the API runs on aws-lambda-powertools): "
            "pip install 'squall[aws]' (from a clone: .venv/bin/pip install -e '.[aws]')"
        ) from None
    from control_plane.server import Server

    if store not in (None, "sqlite", "dynamodb"):
        raise _fail("--store must be sqlite or dynamodb", 2)
    if no_auth and token:
        raise _fail("--no-auth and --token (or $SQUALL_API_TOKEN) contradict each other", 2)
    generated = not no_auth and not token
    if generated:
        token = secrets.token_urlsafe(32)
    overrides: dict[str, Any] = {
        "store": store,
        "table": table,
        "dynamodb_endpoint": endpoint_url,
        "auth": "none" if no_auth else "token",
        "api_token": None if no_auth else token,
        "secrets_file": str(secrets_file) if secrets_file else None,
    }
    try:
        settings = load_settings(**overrides)
        if settings.store == "sqlite":  # storage/ and jobs/ next to the db, as for `squall run`
            settings = local_settings(db, **overrides)
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    # No CloudWatch here: EMF metric lines would only clutter the terminal.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    try:
        srv = Server(settings, host=host, port=port, tick_interval=tick_interval).start()
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except SettingsError as exc:  # a bad secrets file, found when the runtime is built
        raise _fail(str(exc)) from None
    _started()
    where = settings.db if settings.store == "sqlite" else f"DynamoDB table {settings.table}"
    console.print(f"Squall API on [bold]{srv.url}[/bold] (store: {where}); Ctrl-C stops it", highlight=False)
    console.print(f"Web UI: [bold]{srv.url}/ui/[/bold]", highlight=False)
    if generated:
        console.print(f"API token (send Authorization: Bearer <token>): {token}", highlight=False)
    elif no_auth:
        console.print(
            "[yellow]auth disabled (--no-auth): anyone who can reach the port can run flows[/yellow]"
        )
    try:
        with _stoppable():
            srv.wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
    console.print("stopped")


@app.command()
def package(
    output: Annotated[Path, typer.Option("--output", "-o", help="Zip to write")] = Path("dist/lambda.zip"),
    python_version: Annotated[
        str, typer.Option("--python-version", help="Lambda runtime's Python: 3.11, 3.12 or 3.13")
    ] = "3.12",
    arch: Annotated[str, typer.Option(help="Lambda architecture: arm64 or x86_64")] = "arm64",
    include_boto3: Annotated[
        bool, typer.Option("--include-boto3", help="Ship the lock's boto3/botocore instead of the runtime's")
    ] = False,
    lock: Annotated[
        Path | None, typer.Option(help="Lock file (default: packaging/lambda-requirements.txt)")
    ] = None,
    update_lock: Annotated[
        bool,
        typer.Option(
            "--update-lock", help="Re-resolve the newest versions pyproject allows, rewrite the lock"
        ),
    ] = False,
    wheels: Annotated[
        Path | None,
        typer.Option(help="Wheel cache: download the pinned wheels here, then build from it alone"),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="With --wheels: build from the cache without reaching an index")
    ] = False,
    bytecode: Annotated[
        bool,
        typer.Option(
            "--bytecode/--no-bytecode",
            help="Add .pyc files (faster cold starts); needs a CPython of the target's version",
        ),
    ] = True,
    bytecode_python: Annotated[
        str | None,
        typer.Option(
            "--bytecode-python",
            help="The interpreter that writes the bytecode (default: this one if it is the target's"
            " version, else python3.X on PATH or installed by pyenv or uv)",
        ),
    ] = None,
    extra: Annotated[
        list[str] | None,
        typer.Option(
            "--extra",
            help="Add an optional runner extra's dependencies (repeatable): gcp (google-batch, cloud-run),"
            " azure (azure-batch), k8s (kubernetes)",
        ),
    ] = None,
) -> None:
    """Build the Lambda zip: the same source and lock give the same bytes. Prints its size."""
    from rich.table import Table

    from control_plane import packaging

    mib = 1024 * 1024
    try:
        target = packaging.Target(python_version, arch)
        packaging.optional_extras(extra or ())  # an unknown extra fails before --update-lock runs
        if update_lock:
            root = packaging.project_root()
            lock = lock or root / packaging.DEFAULT_LOCK
            console.print(f"resolving the lock for every Lambda target (about a minute): {lock}")
            packaging.update_lock(root, lock, wheels=wheels if offline else None)
        report = packaging.build(
            output,
            target=target,
            lock_path=lock,
            include_boto3=include_boto3,
            wheels=wheels,
            offline=offline,
            bytecode=bytecode,
            bytecode_python=bytecode_python,
            extras=extra or (),
        )
    except packaging.PackagingError as exc:
        raise _fail(str(exc)) from None
    label = report.target.label + "".join(f" --extra {e}" for e in report.extras)
    console.print(
        f"wrote {report.output} for {label}: [bold]{report.size / mib:.1f} MiB[/bold]"
        f" ({report.size} bytes, {report.files} files of which {report.compiled} .pyc,"
        f" {report.unpacked / mib:.1f} MiB unpacked)",
        highlight=False,
    )
    console.print(f"sha256 {report.sha256}", highlight=False)
    table = Table("largest packages", "zipped", "unpacked", "files", box=None)
    for item in report.packages[:10]:
        table.add_row(
            item.name, f"{item.compressed / mib:.2f} MiB", f"{item.unpacked / mib:.2f} MiB", str(item.files)
        )
    console.print(table)
    for warning in report.warnings():
        _error(warning, "yellow")


def _started() -> None:
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


_GC_THRESHOLDS = gc.get_threshold()
_whole_process = False


def main() -> None:
    global _whole_process
    _whole_process = True
    # Until _started(): a command that never calls it only collects less often, never not at all.
    gc.set_threshold(max(_GC_THRESHOLDS[0], 100_000), *_GC_THRESHOLDS[1:])
    # A signal ignored when squall starts stays ignored, as Python does for SIGINT: `nohup`
    # ignores SIGHUP so that closing the terminal does not stop the run.
    stops = [sig for sig in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(sig) is not signal.SIG_IGN]
    for sig in stops:
        signal.signal(sig, _on_stop)
    try:
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
    import os
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
