"""Script tasks (``io.kestra.plugin.scripts.{shell,python,node}.{Commands,Script}``) as runner jobs.

The engine hands over a ``SubmitJob`` whose ``properties`` are the task's rendered
properties; this module turns them into a runner-neutral :class:`runners.base.JobSpec`, the
way Kestra's script plugins build their command line:

* ``Commands``: ``interpreter`` (default ``/bin/sh -c``) runs one script made of ``set -e``
  (when ``failFast``), ``beforeCommands`` and ``commands``, one per line.
* ``Script``: the ``script`` text is written to a file in the working directory and run by the
  language's executable after ``beforeCommands``.

``inputFiles``: a value is a URI when, stripped of surrounding whitespace, it is one token
matching ``[A-Za-z][A-Za-z0-9+.-]*://\\S*`` (:func:`control_plane.service.storage.is_uri`);
any other value, a script that mentions a URL or several lines of text included, is the
file's content. A URI is read from the deployment storage (an earlier task's
``outputFiles``, an API upload: under ``SQUALL_STORAGE``, ``kestra:///`` URIs included, or
under a ``SQUALL_STORAGE_READ`` prefix), or the task fails with a message naming the file, the
URI and why: a scheme the storage does not read (``https://``, or ``s3://`` on a local
deployment), outside the root and the allowlist (``file:///etc/passwd``, ``kestra:///../..``,
another bucket), or a missing object. Never is the URI's text silently written as the
content; a file that must hold exactly one URL is written by the script itself
(``echo "$URL" > url.txt``). The runner gets an output prefix only when the task has
``outputFiles`` to put there (a runner that writes only ``file://``, the process runner, can
then still run a task that has none on a cloud storage). When the job ends,
:func:`job_outputs` gives Kestra's outputs: ``vars`` (from ``::{"outputs":...}::`` lines),
``exitCode`` and ``outputFiles``.

Python tasks can ``from kestra import Kestra`` without installing anything: Squall's own
``kestra`` module (:mod:`runners.kestra_lib`) is put on the process runner's ``PYTHONPATH``
and staged as ``kestra.py`` in a container job's working directory (:func:`_with_kestra_lib`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from msgspec.structs import replace

from control_plane.engine.actions import WORKSPACE_KEY
from control_plane.flows.aliases import DEFAULT_RUNNER, canonical_type, runner_name
from control_plane.service.namespace_files import NamespaceFilesError, namespace_files
from control_plane.service.one_job import HIDDEN, Part, combine
from control_plane.service.storage import StorageError, TaskStorage, is_uri
from control_plane.service.workspace import CAPTURE_ALL, own_output_files
from runners import kestra_lib
from runners.base import JobSpec, JobStatus

__all__ = ["DEFAULT_RUNNER", "ScriptError", "build_job_spec", "job_outputs", "runner_of"]


_SCRIPT_FILES = {
    "shell": ("script.sh", "sh"),
    "python": ("script.py", "python"),
    "node": ("script.js", "node"),
}


class ScriptError(ValueError):
    """A script task's properties cannot become a job (bad inputFiles, missing storage file...)."""


def runner_of(properties: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The runner's entry-point name and its options, from the task's ``taskRunner`` block."""
    block = properties.get("taskRunner")
    if not isinstance(block, Mapping):
        return DEFAULT_RUNNER, {}
    options = {k: v for k, v in block.items() if k != "type"}
    return runner_name(str(block.get("type", DEFAULT_RUNNER))), options


_DOCKER_DEFAULT_IMAGES = {"shell": "ubuntu", "python": "python", "node": "node"}
"""The image a script task runs in on the Docker runner without ``containerImage``: the
``DEFAULT_IMAGE`` of Kestra's script plugins (plugin-scripts: shell ``ubuntu``, python
``python``, node ``node``), so Kestra's own example (a ``shell.Commands`` with
``taskRunner: {type: ...docker.Docker}`` and no image) runs unchanged."""


def _language(task_type: str) -> tuple[str, str]:
    canonical = canonical_type(task_type) or task_type
    parts = canonical.split(".")
    if len(parts) != 4 or parts[:2] != ["squall", "script"] or parts[2] not in _SCRIPT_FILES:
        raise ScriptError(f"{task_type} is not a script task")
    return parts[2], parts[3]


def _executable(language: str, local: bool) -> str:
    """``python`` as Kestra's images have it; on a bare machine without it, ``python3``."""
    name = _SCRIPT_FILES[language][1]
    if local and name == "python" and shutil.which("python") is None and shutil.which("python3"):
        return "python3"
    return name


def _input_files(
    raw: Any, storage: TaskStorage, schemes: frozenset[str]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """(inline contents, storage URIs the runner stages itself) of a task's ``inputFiles``.

    A URI in a scheme the runner stages natively is passed as a reference: its bytes never
    go through the control plane (a 1 GB input costs nothing here). Any other URI is read and
    passed inline: the control plane copies across clouds only when the runner cannot read
    the source. Either way the URI must lie in the deployment's storage (or its read
    allowlist), checked here before anything runs.
    """
    files: dict[str, bytes] = {}
    refs: dict[str, str] = {}
    if raw is None:
        return files, refs
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ScriptError(f"inputFiles: not a map nor a JSON object: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ScriptError("inputFiles: must be a map of file name to content or storage URI")
    for name, content in raw.items():
        path = PurePosixPath(str(name))
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise ScriptError(f"inputFiles.{name}: must be a relative path inside the working directory")
        text = content if isinstance(content, str) else json.dumps(content)
        if is_uri(text):
            uri = text.strip()
            try:
                canonical = storage.canonical(uri)
                if urlsplit(canonical).scheme in schemes:
                    refs[str(path)] = canonical
                else:
                    files[str(path)] = storage.read(uri)  # errors name the URI the flow wrote
            except StorageError as exc:
                raise ScriptError(f"inputFiles.{name}: {exc}") from None
        else:
            files[str(path)] = text.encode()
    return files, refs


def _overwrite(
    files: dict[str, bytes], refs: dict[str, str], later_files: dict[str, bytes], later_refs: dict[str, str]
) -> None:
    """Files staged later replace earlier ones of the same path, whether inline or referenced."""
    for path in later_files:
        refs.pop(path, None)
    for path in later_refs:
        files.pop(path, None)
    files.update(later_files)
    refs.update(later_refs)


def _staged(
    found: Mapping[str, str], storage: TaskStorage, schemes: frozenset[str]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """``{path: storage URI}`` staged like inputFiles URIs: by reference when the runner reads the scheme."""
    files: dict[str, bytes] = {}
    refs: dict[str, str] = {}
    for path, uri in found.items():
        canonical = storage.canonical(uri)
        if urlsplit(canonical).scheme in schemes:
            refs[path] = canonical
        else:
            files[path] = storage.read(uri)
    return files, refs


def _staged_namespace_files(
    block: Any, namespace: str | None, storage: TaskStorage, schemes: frozenset[str]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """(inline contents, references) of the namespace files ``block`` selects, staged like inputFiles."""
    if block is None:
        return {}, {}
    if namespace is None:
        raise ScriptError("namespaceFiles: the flow's namespace is not known here")
    try:
        return _staged(namespace_files(block, namespace, storage), storage, schemes)
    except (NamespaceFilesError, StorageError) as exc:
        raise ScriptError(f"namespaceFiles: {exc}") from None


def build_job_spec(
    *,
    name: str,
    task_type: str,
    properties: Mapping[str, Any],
    timeout: timedelta | None,
    output_prefix: str,
    labels: Mapping[str, str],
    storage: TaskStorage,
    storage_schemes: frozenset[str] = frozenset({"file"}),
    namespace: str | None = None,
    workspace: Mapping[str, str] | None = None,
) -> tuple[str, JobSpec]:
    """(runner name, JobSpec) for one attempt of a script task.

    ``storage_schemes`` are the runner's (:attr:`runners.base.Runner.storage_schemes`): inputs
    and the output prefix in those schemes are the runner's to stage; for others the output
    prefix is left out (the runner keeps outputs in its own place and the supervisor copies
    them into the storage when the job ends). ``namespace``: the flow's, whose namespace files
    ``namespaceFiles`` stages (:mod:`control_plane.service.namespace_files`) before
    ``inputFiles``, which win on the same path as in Kestra. ``workspace``: for a child of a
    WorkingDirectory, the shared directory's files (:mod:`control_plane.service.workspace`),
    staged first; the job then captures its whole directory for the next child.
    """
    hint = properties.get(WORKSPACE_KEY)
    if isinstance(hint, Mapping) and hint.get("children"):
        return _one_job_spec(
            name=name,
            hint=hint,
            output_prefix=output_prefix,
            labels=labels,
            storage=storage,
            storage_schemes=storage_schemes,
            namespace=namespace,
        )
    language, kind = _language(task_type)
    runner, options = runner_of(properties)
    image = properties.get("containerImage") or (
        _DOCKER_DEFAULT_IMAGES[language] if runner == "docker" else None
    )
    lines: list[str] = ["set -e"] if properties.get("failFast", True) else []
    lines += [str(c) for c in properties.get("beforeCommands") or ()]
    try:
        files, refs = _staged(workspace or {}, storage, storage_schemes)
    except StorageError as exc:
        raise ScriptError(f"the WorkingDirectory's files: {exc}") from None
    hint = properties.get(WORKSPACE_KEY)
    if isinstance(hint, Mapping):  # the first job child of a WorkingDirectory: the WD's own files
        try:
            _overwrite(
                files,
                refs,
                *_staged_namespace_files(hint.get("namespaceFiles"), namespace, storage, storage_schemes),
            )
            _overwrite(files, refs, *_input_files(hint.get("inputFiles"), storage, storage_schemes))
        except ScriptError as exc:
            raise ScriptError(f"the WorkingDirectory's {exc}") from None
    block = properties.get("namespaceFiles")
    for later in (
        _staged_namespace_files(block, namespace, storage, storage_schemes),
        _input_files(properties.get("inputFiles"), storage, storage_schemes),
    ):
        _overwrite(files, refs, *later)
    if kind == "Commands":
        lines += [str(c) for c in properties.get("commands") or ()]
    else:
        filename = _SCRIPT_FILES[language][0]
        files[filename] = str(properties.get("script", "")).encode()
        lines.append(f"{_executable(language, image is None and runner == DEFAULT_RUNNER)} {filename}")
    outputs = tuple(str(g) for g in properties.get("outputFiles") or ())
    if workspace is not None:
        outputs = (CAPTURE_ALL,)  # the whole directory, for the next child; own globs filter later
        scheme = urlsplit(output_prefix).scheme
        if scheme not in storage_schemes and "file" not in storage_schemes:
            # Its directory would stay in the runner's own staging, where the next child's
            # job is not staged from: fail, naming why, rather than start it in an empty one.
            raise ScriptError(
                f"a WorkingDirectory's child needs the runner '{runner}' to write the deployment"
                f" storage ({scheme}://), to hand its directory to the next child; it writes"
                f" {', '.join(sorted(s + '://' for s in storage_schemes))} only"
            )
    interpreter = [str(part) for part in properties.get("interpreter") or ("/bin/sh", "-c")]
    env = {str(k): "" if v is None else str(v) for k, v in (properties.get("env") or {}).items()}
    if language == "python":
        _with_kestra_lib(runner, files, refs, env, lines)
    spec = JobSpec(
        name=name,
        command=(*interpreter, "\n".join(lines)),
        image=str(image) if image else None,
        env=env,
        input_files=files,
        input_uris=refs,
        output_files=outputs,
        output_prefix=output_prefix if urlsplit(output_prefix).scheme in storage_schemes else None,
        timeout=timeout,
        labels=dict(labels),
        options=options,
    )
    return runner, spec


def _one_job_spec(
    *,
    name: str,
    hint: Mapping[str, Any],
    output_prefix: str,
    labels: Mapping[str, str],
    storage: TaskStorage,
    storage_schemes: frozenset[str],
    namespace: str | None,
) -> tuple[str, JobSpec]:
    """(runner name, JobSpec) of a WorkingDirectory's children run as one job (ADR 0016).

    Each child's part is built as its own job would be (its script, files, env, interpreter),
    then :func:`control_plane.service.one_job.combine` runs them in turn in one directory,
    after the WorkingDirectory's own ``namespaceFiles`` and ``inputFiles``.
    """
    try:
        wd_files = _staged_namespace_files(hint.get("namespaceFiles"), namespace, storage, storage_schemes)
        _overwrite(*wd_files, *_input_files(hint.get("inputFiles"), storage, storage_schemes))
    except ScriptError as exc:
        raise ScriptError(f"the WorkingDirectory's {exc}") from None
    parts: list[Part] = []
    runner = DEFAULT_RUNNER
    for child in hint["children"]:
        own = {k: v for k, v in dict(child["properties"]).items() if k != WORKSPACE_KEY}
        try:
            runner, spec = build_job_spec(
                name=name,
                task_type=str(child["task_type"]),
                properties=own,
                timeout=None,
                output_prefix=output_prefix,
                labels=labels,
                storage=storage,
                storage_schemes=storage_schemes,
                namespace=namespace,
            )
        except ScriptError as exc:
            raise ScriptError(f"{child['task_id']}: {exc}") from None
        parts.append(
            Part(
                taskrun=str(child["taskrun"]),
                attempt=int(child["attempt"]),
                task_id=str(child["task_id"]),
                spec=spec,
                allow_failure=bool(child.get("allowFailure")),
                own_globs=spec.output_files,
            )
        )
    if urlsplit(output_prefix).scheme in storage_schemes:
        later = (_by_reference(part, i, output_prefix, storage) for i, part in enumerate(parts) if i)
        parts = [parts[0], *later]
    globs = tuple(str(g) for g in hint.get("outputFiles") or ())
    return runner, combine(name, parts, wd_files, globs)


def _by_reference(part: Part, index: int, output_prefix: str, storage: TaskStorage) -> Part:
    """A later child's inline files (its script, inline inputFiles) put in the storage, staged by reference.

    The job carries every child: inline, their files would add up past what a runner carries
    in a job's command (6 KiB on AWS Batch without a bucket) where each child's own job fitted.
    They go under the job's output prefix (``.squall-wd/in/<i>/``, where the job copies them
    in from at the child's turn); writing the same bytes again is harmless.
    """
    if not part.spec.input_files:
        return part
    refs = dict(part.spec.input_uris)
    for path, content in part.spec.input_files.items():
        uri = f"{output_prefix}{HIDDEN}/in/{index}/{quote(path)}"
        try:
            storage.write(uri, content)
        except StorageError as exc:
            raise ScriptError(f"{part.task_id}: could not stage {path} in the storage: {exc}") from None
        refs[path] = storage.canonical(uri)
    return replace(part, spec=replace(part.spec, input_files={}, input_uris=refs))


_IMPORTS_KESTRA = re.compile(rb"(?:^|[\s;'\"])(?:from|import)\s+kestra\b", re.MULTILINE)
"""``import kestra`` / ``from kestra import ...`` at a line's start or after ``;`` or a quote
(``python -c 'import kestra'``); a comment saying so also counts, which costs only the bytes."""


def _with_kestra_lib(
    runner: str, files: dict[str, bytes], refs: Mapping[str, str], env: dict[str, str], lines: list[str]
) -> None:
    """Make ``import kestra`` work in a python task, as in Kestra's images.

    The process runner runs the host's ``python3``: Squall's module folder goes first on the
    job's ``PYTHONPATH``, before the one it would have had (the task's, else the host's).
    Container runners run the user's image, which need not have it: ``kestra.py`` is staged in
    the working directory, where the script is, when the script, the commands or an inline
    input file import ``kestra`` (3.5 KB counts against the inputs a cloud runner can carry in
    the job's command), and unless the task brings its own ``kestra.py`` or ``kestra/``
    package (theirs wins).
    """
    if runner == DEFAULT_RUNNER:
        # The job inherits this process's environment, then the task's: keep whichever
        # PYTHONPATH it would have had, after the module's folder.
        own = env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))
        env["PYTHONPATH"] = str(kestra_lib.LIB_DIR) + (f":{own}" if own else "")
        return
    taken = {*files, *refs}
    if kestra_lib.MODULE_NAME in taken or any(name.startswith("kestra/") for name in taken):
        return
    texts = [*files.values(), *(line.encode() for line in lines)]
    if any(_IMPORTS_KESTRA.search(text) for text in texts):
        files[kestra_lib.MODULE_NAME] = kestra_lib.module_source()


def job_outputs(
    status: JobStatus, marker_outputs: Mapping[str, Any], own_globs: Sequence[str] | None = None
) -> dict[str, Any]:
    """Kestra's script outputs: ``vars``, ``exitCode`` and (when any) ``outputFiles``.

    ``own_globs``: for a job that captured its whole directory (a WorkingDirectory's child),
    the task's own ``outputFiles``, the only files its outputs list.
    """
    outputs: dict[str, Any] = {"vars": dict(marker_outputs), "exitCode": status.exit_code}
    files = (
        dict(status.output_files) if own_globs is None else own_output_files(status.output_files, own_globs)
    )
    if files:
        outputs["outputFiles"] = files
    return outputs
