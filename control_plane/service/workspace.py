"""A WorkingDirectory's shared directory, carried from one child job to the next through the storage.

This is the fallback of ADR 0012: a WorkingDirectory whose children can all be rendered before
one job runs them all does so instead (ADR 0016, :mod:`control_plane.service.one_job`).

Kestra runs a WorkingDirectory's children one after the other in one directory: a file the
first writes, the second reads. Squall runs each child as its own job, on any runner, so the
directory travels through the deployment storage instead, with the staging every runner
already does for ``inputFiles`` and ``outputFiles``:

* a job child captures its whole working directory when it ends (the output glob ``**/*``:
  every file at any depth, for every runner) into its attempt's output prefix, as any
  output file;
* the next job child stages every file of that prefix before its own ``namespaceFiles`` and
  ``inputFiles`` (which overwrite, as Kestra's staging into an existing directory does). The
  engine names that previous child (:data:`control_plane.engine.actions.WORKSPACE_KEY`);
* the child's own ``outputs.outputFiles`` still list only what its own ``outputFiles`` globs
  match (:func:`own_output_files`).

A retried child starts again from the previous child's directory, never from its own failed
attempt's. The price of a job per child: each starts its own container, and the directory's
files are copied to and from the storage between children (by reference where the runner
reads the storage, :func:`control_plane.service.scripts.build_job_spec`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from control_plane.engine.actions import WORKSPACE_KEY
from control_plane.service.storage import TaskStorage

__all__ = ["CAPTURE_ALL", "own_output_files", "workspace_files"]

CAPTURE_ALL = "**/*"
"""The output glob that captures a child's whole working directory."""


def workspace_files(
    properties: Mapping[str, Any], storage: TaskStorage, namespace: str, flow_id: str, execution_id: str
) -> dict[str, str] | None:
    """``{relative path: URI}`` of the shared directory a child starts in; None outside a WorkingDirectory."""
    hint = properties.get(WORKSPACE_KEY)
    if not isinstance(hint, Mapping):
        return None
    previous = hint.get("previous")
    if not isinstance(previous, Mapping):
        return {}
    prefix = storage.prefix(
        namespace, flow_id, execution_id, str(previous["taskrun"]), int(previous["attempt"])
    )
    return {name: uri for name, uri in storage.list_prefix(prefix).items() if not name.endswith("/")}


def own_output_files(files: Mapping[str, str], globs: Iterable[str] | None) -> dict[str, str]:
    """The captured files a child's own ``outputFiles`` globs match: its ``outputs.outputFiles``."""
    patterns = [str(g) for g in globs or ()]
    if not patterns:
        return {}
    from runners.wrapper import (
        glob_to_ere,
    )  # here: the wrapper's dataclasses stay out of the handlers' cold start

    ere = re.compile("^(" + "|".join(glob_to_ere(g) for g in patterns) + ")$")
    return {name: uri for name, uri in files.items() if ere.match(name)}
