"""The ``squall`` command's typer app: every command and its options.

Heavy modules are imported inside each command so that ``squall --help`` stays instant. Bad
user input (a flow that fails validation, bad inputs, a missing file) prints a clear message
and exits 1; a Python traceback is always a bug. The helpers the commands share, and ``squall
run``'s body, are in :mod:`control_plane.cli_common`; the entry point is
:func:`control_plane.cli.main`.

No ``from __future__ import annotations`` here: typer reads every command's signature on each
invocation (``inspect.signature(eval_str=True)`` and ``get_type_hints``), which compiles each
string annotation twice, ~170 ``compile`` calls and ~10 ms of a ``squall run``; evaluated once
at import they cost a fraction of that. Names imported only for type checking are quoted.
"""

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from control_plane.cli_common import (
    check_known_inputs,
    console,
    drive_execution,
    err,
    exit_code,
    fail,
    open_runtime,
    parse_inputs,
    print_error,
    print_log,
    print_summary,
    print_tree,
    run_flow,
    startup_done,
    stoppable,
)
from control_plane.cli_output import Format, chosen, emit_json, emit_rows

if TYPE_CHECKING:
    from control_plane.engine.model import Execution

app = typer.Typer(
    name="squall",
    help="Serverless orchestrator for Kestra-style YAML flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: no boxes to break in a pipe, no type after a flag
)


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
    run_flow(
        file,
        input,
        virtual_time=virtual_time,
        quiet=quiet,
        keep_jobs=keep_jobs,
        db=db,
        secrets_file=secrets_file,
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
        raise fail(f"execution id {execution_id!r} is ambiguous: {shown}; give more of it")
    raise fail(
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
        raise fail(f"--state must be one of {', '.join(s.value for s in State)}") from None
    with open_runtime(db, existing=True) as runtime:
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

    with open_runtime(db, existing=True) as runtime:
        execution = _execution(runtime, execution_id)
    if output is Format.json:
        emit_json(execution_view(execution))
        return
    print_tree(execution)
    print_summary(execution)
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
    with open_runtime(db, existing=True) as runtime:
        execution = _execution(runtime, execution_id)
        wanted = None
        if task is not None:
            wanted = {tr.id for tr in execution.taskruns.values() if task in (tr.id, tr.task_id)}
            if not wanted:
                raise fail(f"execution {execution.id} has no task or task run {task!r}")
        cursor = None
        while True:
            page = runtime.store.read_logs(execution.id, limit=5000, cursor=cursor)
            for line in page.items:
                if wanted is None or line.taskrun_id in wanted:
                    print_log(line)
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
    with open_runtime(db, existing=True) as runtime:
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
        raise fail(f"--older-than {text!r}: give an age such as 30d, 12h, 90m or P30D", 2) from None
    if value < timedelta(0):
        raise fail(f"--older-than {text!r}: the age must be positive", 2)
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
    raise fail(f"execution {execution_id} has no task or task run {task!r}")


def _control(db: Path | None, execution_id: str, what: str, quiet: bool, **kwargs: Any) -> None:
    from control_plane.errors import EngineError, InputError, ServiceError

    with open_runtime(db, existing=True) as runtime:
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
            final = drive_execution(runtime, execution_id, actions[what], quiet=quiet)
        except InputError as exc:
            raise fail("; ".join(exc.messages)) from None
        except (ServiceError, EngineError) as exc:
            raise fail(str(exc)) from None
    raise typer.Exit(exit_code(final) if what != "kill" else (0 if final.state.terminal else 1))


def _resume(runtime: Any, execution_id: str, inputs: dict[str, Any] | None) -> "Execution":
    """A PAUSED execution resumes with ``inputs``; a RUNNING one whose process is gone is taken over."""
    from control_plane.engine.states import State
    from control_plane.service.ownership import describe

    service = runtime.service
    execution = service.get(execution_id)
    if execution.state.terminal or execution.state is State.PAUSED:
        if inputs:
            check_known_inputs(inputs, _resume_inputs(runtime, execution), "the paused task")
        return service.resume(execution_id, inputs)  # ends, or says why not
    if inputs:
        raise fail(f"execution {execution_id} is {execution.state}, not PAUSED: --input is for a paused one")
    if not service.take_over(execution_id):
        holder = service.driver_of(execution_id)
        owner = describe(holder) if holder else "another process"
        raise fail(f"execution {execution_id} is {execution.state} and driven by {owner}; it goes on there")
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
    _control(db, execution_id, "resume", quiet, inputs=parse_inputs(input or []))


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
    with open_runtime(db) as runtime:
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
    with open_runtime(db, existing=True) as runtime:
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
            raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
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
        print_error(str(exc))
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
        raise fail(
            "squall server needs the aws extra (the API runs on aws-lambda-powertools): "
            "pip install 'squall[aws]' (from a clone: .venv/bin/pip install -e '.[aws]')"
        ) from None
    from control_plane.server import Server

    if store not in (None, "sqlite", "dynamodb"):
        raise fail("--store must be sqlite or dynamodb", 2)
    if no_auth and token:
        raise fail("--no-auth and --token (or $SQUALL_API_TOKEN) contradict each other", 2)
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
        raise fail(str(exc)) from None
    # No CloudWatch here: EMF metric lines would only clutter the terminal.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    try:
        srv = Server(settings, host=host, port=port, tick_interval=tick_interval).start()
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except SettingsError as exc:  # a bad secrets file, found when the runtime is built
        raise fail(str(exc)) from None
    startup_done()
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
        with stoppable():
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
        raise fail(str(exc)) from None
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
        print_error(warning, "yellow")
