"""The local subprocess runner (entry point ``process``): the embedded default.

Kestra's ``io.kestra.plugin.core.runner.Process`` runs a task's commands as a child of the
worker; so does this runner, with the same neutral contract as the cloud runners
(``runners/base.py``). Everything it knows about a job lives in one directory, so a new
``ProcessRunner`` on the same ``base_dir`` (after a restart, or from another process) can
find, poll, read and cancel it::

    <base_dir>/<spec.name>/
                    the directory itself is flock(2)ed while a submit (or cancel) works on
                    the job: the idempotency lock
        work/       fresh working directory: cwd, WORKING_DIR, input_files written here
        out/        OUTPUT_DIR
        pid         the handle id, a spec summary (env values are not stored: they may be
                    secrets), and the pid, process-group id and /proc start time of the job
                    and of its owner
        log.jsonl   stdout and stderr in arrival order, one JSON record a line {stream, text, at};
                    a line longer than MAX_LINE_BYTES is several records, all but the last
                    with "partial": true (``LogRecord.partial``)
        cancelled   present once cancel() was asked
        exit        terminal status and handle id, written once (temp file + rename) after
                    outputs are copied
        outputs/    default copy target of output files (when spec.output_prefix is None)

Theory of operation, in brief (each module's docstring has its part):

- submit: the directory's flock makes one process per name, whoever submits
  (:mod:`.launch`).
- supervise: one pump per job, on a pool thread, owns the child and its process group: logs,
  timeout, reaping, outputs, ``exit`` (:mod:`.supervisor`, :mod:`.pool`, :mod:`.capture`).
- poll: from memory for a job supervised here, else from ``exit``, else from whether the
  owner lives; a job whose owner is gone is LOST and its orphan stopped (:mod:`.status`).
- An interpreter that exits kills the jobs it supervises; only a hard crash leaves orphans,
  for the next poll to find.

Modules, lowest first: ``files`` (small file helpers), ``layout`` (the job directory, its
names, its lock), ``procs`` (process identity, liveness, signals), ``registry`` and ``pool``
(process-wide state: supervised jobs, parsed exits, change notices; pump threads),
``capture`` (log lines to records and back), ``status`` (the ``exit`` file and a job's
status), ``supervisor`` (the pump), ``options`` (``taskRunner``), ``launch`` (plan, prepare,
spawn), ``runner`` (:class:`ProcessRunner`).

Not supported: Windows (fcntl, process groups, /proc), ``image`` (ignored, as Kestra's
Process runner does), processes that leave the job's process group with ``setsid``.
"""

from runners.process.capture import LOG_CHUNK_BYTES, LOG_CHUNK_LINES, MAX_LINE_BYTES
from runners.process.layout import default_base_dir, path_from_file_uri
from runners.process.options import ProcessOptions
from runners.process.runner import ProcessRunner

__all__ = [
    "LOG_CHUNK_BYTES",
    "LOG_CHUNK_LINES",
    "MAX_LINE_BYTES",
    "ProcessOptions",
    "ProcessRunner",
    "default_base_dir",
    "path_from_file_uri",
]
