"""The ``squall`` command.

Heavy modules are imported inside each command so that ``squall --help`` stays instant. Bad
user input (a flow that fails validation, bad inputs, a missing file) prints a clear message
and exits 1; a Python traceback is always a bug.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.tree import Tree

    from control_plane.engine.model import Execution

app = typer.Typer(
    name="squall",
    help="Serverless orchestrator for Kestra-style YAML flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

_STYLE = {
    "SUCCESS": "green",
    "WARNING": "yellow",
    "FAILED": "red",
    "KILLED": "red",
    "CANCELLED": "red",
    "RUNNING": "cyan",
    "PAUSED": "magenta",
    "RETRYING": "yellow",
    "SKIPPED": "dim",
}
_MAX_CHILDREN_SHOWN = 25


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            err.print(f"[red]--input expects KEY=VALUE, got {pair!r}[/red]")
            raise typer.Exit(2)
        inputs[key] = value
    return inputs


def _tree(execution: Execution, title: str) -> Tree:
    from rich.tree import Tree

    root = Tree(title)
    children: dict[str | None, list[Any]] = {}
    for tr in execution.ordered_taskruns():
        children.setdefault(tr.parent_id, []).append(tr)

    def add(node: Tree, parent_id: str | None) -> None:
        kids = children.get(parent_id, [])
        for tr in kids[:_MAX_CHILDREN_SHOWN]:
            style = _STYLE.get(str(tr.state), "white")
            ended = tr.ended or execution.ended
            duration = f" {(ended - tr.created).total_seconds():.2f}s" if ended else ""
            value = f" [dim]({tr.value})[/dim]" if tr.value is not None and tr.parent_id else ""
            attempts = f" [dim]x{len(tr.attempts)}[/dim]" if len(tr.attempts) > 1 else ""
            label = f"[{style}]{tr.state}[/{style}] {tr.task_id}{value}{attempts}[dim]{duration}[/dim]"
            add(node.add(label), tr.id)
        if len(kids) > _MAX_CHILDREN_SHOWN:
            node.add(f"[dim]... {len(kids) - _MAX_CHILDREN_SHOWN} more[/dim]")

    add(root, None)
    return root


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Flow YAML file")],
    input: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="Input KEY=VALUE (repeatable)")
    ] = None,
    virtual_time: Annotated[
        bool, typer.Option(help="Skip waits (Sleep, retry intervals) instead of really waiting")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print the summary")] = False,
) -> None:
    """Run a flow in this process and show its progress; exit 0 on SUCCESS or WARNING."""
    from rich.live import Live

    from control_plane.errors import FlowValidationError, InputError
    from control_plane.flows.loader import load_flow_file
    from control_plane.service.memory import InMemoryExecutor, SystemClock, VirtualClock

    try:
        flow = load_flow_file(file)
    except FlowValidationError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    title = f"[bold]{flow.namespace}.{flow.id}[/bold]"
    started = time.monotonic()
    last = [0.0]
    live = Live(console=console, transient=True, auto_refresh=False) if not quiet else None

    def on_change(execution: Execution) -> None:
        now = time.monotonic()
        if live is not None and now - last[0] > 0.1:
            last[0] = now
            live.update(_tree(execution, title), refresh=True)

    executor = InMemoryExecutor(clock=VirtualClock() if virtual_time else SystemClock(), on_change=on_change)
    try:
        if live is not None:
            with live:
                result = executor.run(flow, _parse_inputs(input or []))
        else:
            result = executor.run(flow, _parse_inputs(input or []))
    except InputError as exc:
        for message in exc.messages:
            err.print(f"[red]{message}[/red]", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]")
        raise typer.Exit(130) from None
    execution = result.execution
    if not quiet:
        for line in result.logs:
            who = f"{line.task_id}: " if line.task_id else ""
            console.print(f"[dim]{line.level:5}[/dim] {who}{line.message}", highlight=False, markup=False)
        console.print(_tree(execution, title))
    style = _STYLE.get(str(execution.state), "white")
    console.print(
        f"Execution {execution.id} [{style}]{execution.state}[/{style}] in {time.monotonic() - started:.2f}s,"
        f" {len(execution.taskruns)} task runs"
    )
    if execution.outputs:
        console.print_json(json.dumps(dict(execution.outputs), default=str))
    raise typer.Exit(0 if str(execution.state) in ("SUCCESS", "WARNING") else 1)


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Flow YAML files")]) -> None:
    """Validate flows; print every violation with file:line:column; exit 1 if any is invalid."""
    from control_plane.errors import FlowValidationError
    from control_plane.flows.loader import load_flow_file

    bad = 0
    for file in files:
        try:
            load_flow_file(file)
        except FlowValidationError as exc:
            bad += 1
            err.print(str(exc), highlight=False, markup=False)
        else:
            console.print(f"[green]OK[/green] {file}")
    raise typer.Exit(1 if bad else 0)


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
        output.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {output}")


@app.command()
def conformance(cases: Annotated[Path, typer.Argument(help="A cases.yaml file")]) -> None:
    """Run every case of a conformance cases file; the last line reads `N passed, N failed`."""
    from control_plane.conformance import run_cases
    from control_plane.errors import SquallError

    passed = failed = 0
    try:
        for result in run_cases(cases):
            print(result.line(), flush=True)
            passed += result.passed
            failed += not result.passed
    except SquallError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    print(f"{passed} passed, {failed} failed")
    raise typer.Exit(1 if failed else 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
