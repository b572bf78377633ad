"""How a Batch job gets its files without anything in the user's image: the AWS side of the wrapper.

The job's command is always :mod:`runners.wrapper`'s script. What moves files around it:

- **single container** (no remote input, no output destination): inline inputs travel inside
  the script; nothing else is needed, and the job costs one container.
- **sidecar** (default otherwise): an ECS multi-container job (``ecsProperties``), all
  containers sharing the volume ``squall-staging`` at ``/squall``::

      squall-stage-in-<i>   AWS CLI image, essential=false   aws s3 cp ... /squall/in/...
              | COMPLETE
      main                  the user's image,                 the wrapper: copies /squall/in
              | COMPLETE     essential only without            into its working dir, runs the
              v              stage-out                         command, copies outputs to /squall/out
      squall-stage-out      AWS CLI image, essential=true     aws s3 cp --recursive /squall/out s3://prefix/

  The stagers run the official AWS CLI image (``stagingImage``), whose entry point is ``aws``
  (Batch's container properties have no ``entryPoint``), so each stager is one ``aws``
  command: inputs that share a prefix (the outputs of an earlier task) are one ``cp
  --recursive`` with ``--include`` filters, any other input its own container; Batch allows
  ten containers per task. ``COMPLETE`` (not ``SUCCESS``, which would leave main waiting on a
  failed fetch): main always runs, and its wrapper fails with
  :attr:`~runners.wrapper.WrapperExit.STAGING` naming any input that is not in the volume.
  ``dependsOn`` with ``COMPLETE`` may only name non-essential containers, so main is
  non-essential when there is a stage-out, and stage-out, the one essential container, ends
  the task. Which exit code Batch then gives the job is not documented for this shape, so the
  runner does not use it: the taxonomy reads each container's exit code (main's is the
  task's; a stage-out failure is CONFIG).
- **cli** (``staging: cli``, opt-in, and for a fixed ``jobDefinitionArn``): one container,
  the wrapper fetches and uploads with ``aws s3 cp``: the image must have the AWS CLI.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runners.aws_batch.options import DEFAULT_STAGING_IMAGE
from runners.wrapper import INLINE_LIMIT, STDERR_PREFIX, AwsCli, VolumeStaging, wrapper_command

__all__ = [
    "DEFAULT_STAGING_IMAGE",
    "INLINE_LIMIT",
    "MAIN",
    "MAX_CONTAINERS",
    "MOUNT",
    "STAGE_OUT",
    "STDERR_PREFIX",
    "VOLUME",
    "Layout",
    "layout",
]

MAIN = "main"
STAGE_IN = "squall-stage-in-"
STAGE_OUT = "squall-stage-out"
VOLUME = "squall-staging"
MOUNT = "/squall"
MAX_CONTAINERS = 10
"""Batch runs at most ten containers in one ECS task."""
_GLOB_CHARS = frozenset("*?[]")


@dataclass(frozen=True)
class Layout:
    """The containers of one job: ``main`` runs ``command``; stagers run ``aws`` with their args."""

    command: list[str]
    stage_in: tuple[tuple[str, ...], ...] = ()
    stage_out: tuple[str, ...] | None = None
    notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def multi(self) -> bool:
        return bool(self.stage_in) or self.stage_out is not None

    @property
    def shape(self) -> tuple[int, bool]:
        """What the job definition depends on: how many stage-in containers, whether a stage-out."""
        return len(self.stage_in), self.stage_out is not None


def _fetch_groups(remote: Mapping[str, str]) -> list[tuple[str, ...]]:
    """``aws`` args per stage-in container: one ``cp --recursive`` per shared prefix, else one ``cp``."""
    groups: dict[str, list[str]] = {}
    singles: list[tuple[str, ...]] = []
    for rel, uri in sorted(remote.items()):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if (key == rel or key.endswith("/" + rel)) and not (_GLOB_CHARS & set(rel)):
            base = f"s3://{bucket}/{key[: len(key) - len(rel)]}"
            groups.setdefault(base, []).append(rel)
        else:
            singles.append(("s3", "cp", "--only-show-errors", uri, f"{MOUNT}/in/{rel}"))
    commands: list[tuple[str, ...]] = []
    for base, rels in groups.items():
        if len(rels) == 1:
            commands.append(("s3", "cp", "--only-show-errors", base + rels[0], f"{MOUNT}/in/{rels[0]}"))
            continue
        filters = [arg for rel in rels for arg in ("--include", rel)]
        commands.append(
            (
                "s3",
                "cp",
                "--recursive",
                "--only-show-errors",
                base,
                f"{MOUNT}/in/",
                "--exclude",
                "*",
                *filters,
            )
        )
    return commands + singles


def layout(
    argv: Sequence[str],
    *,
    token: str,
    inline_files: Mapping[str, bytes],
    remote: Mapping[str, str],
    output_globs: Sequence[str],
    output_prefix: str | None,
    cli: bool,
) -> Layout:
    """The containers for one job (see the module docstring). ``remote`` maps paths to ``s3://`` URIs."""
    if cli:
        backend = AwsCli(output_prefix)
        command = wrapper_command(
            argv,
            sentinel=token,
            inline_files=inline_files,
            inputs=remote,
            fetch=backend,
            output_globs=output_globs,
            upload=backend if output_prefix is not None else None,
        )
        return Layout(command)
    volume = VolumeStaging(f"{MOUNT}/in", f"{MOUNT}/out")
    command = wrapper_command(
        argv,
        sentinel=token,
        inline_files=inline_files,
        inputs=remote,
        fetch=volume,
        output_globs=output_globs,
        upload=volume if output_prefix is not None else None,
    )
    stage_in = tuple(_fetch_groups(remote))
    stage_out = None
    if output_prefix is not None:
        stage_out = ("s3", "cp", "--recursive", "--only-show-errors", f"{MOUNT}/out/", output_prefix)
    if len(stage_in) + 1 + (stage_out is not None) > MAX_CONTAINERS:
        raise ValueError(
            f"{len(stage_in)} input locations need as many staging containers: at most "
            f"{MAX_CONTAINERS - 2} fit in one Batch job (inputs under one prefix share one)"
        )
    return Layout(command, stage_in, stage_out)


def describe(args: Sequence[str]) -> str:
    """An ``aws`` command line as a user would type it (for messages)."""
    return "aws " + shlex.join(args)
