"""The local subprocess runner (entry point ``process``): the embedded default.

Kestra's ``io.kestra.plugin.core.runner.Process`` runs a task's commands as a child of the
worker; so does this runner, with the same neutral contract as the cloud runners
(``runners/base.py``), except that the child's parent is a small per-job supervisor, the
*shim*, rather than the squall process: a job outlives the process that submitted it.
Everything known about a job lives in one directory, so a new ``ProcessRunner`` on the same
``base_dir`` (after a restart or a crash, or from another process) can find, poll, read and
cancel it::

    <base_dir>/<spec.name>/
                    the directory itself is flock(2)ed while a submit, a cancel or a
                    finalization works on the job: the idempotency lock
        work/       fresh working directory: cwd, WORKING_DIR, input_files written here
        out/        OUTPUT_DIR
        pid         written by the job's process before its exec: the handle id, a spec summary
                    (env values are not stored: they may be secrets; they reach the shim
                    through a pipe), the pid, process-group id and /proc start time of the job
                    and of its owner (the shim, ``"shim": true``), the submitting process's pid
        log.jsonl   stdout and stderr in arrival order, one JSON record a line {stream, text, at},
                    written by the shim; a line longer than MAX_LINE_BYTES is several records,
                    all but the last with "partial": true (``LogRecord.partial``)
        cancelled   present once cancel() was asked
        result      the shim's record of the end (raw return code, timed out, cancelled,
                    start and end times), written once (temp file + rename)
        exit        terminal status and handle id, written once (temp file + rename) after
                    outputs are copied, by whichever squall process finalizes the job
        outputs/    default copy target of output files (when spec.output_prefix is None)
    <base_dir>/.disposed-<name>-<random>/
                    a disposed job directory, renamed aside and deleted in the background

Theory of operation, in brief (each module's docstring has its part):

- submit: the directory's flock makes one job per name, whoever submits; the submitter
  starts the job's shim and hands it the configuration (:mod:`.launch`). Shims are forked
  by one fork server per squall process (:mod:`.forkserver`), not started as an interpreter
  each.
- supervise: the shim, a stdlib-only process in a session of its own, owns the job and its
  process group: logs, timeout, reaping, ``result`` (:mod:`.shim`). It survives a
  ``kill -9`` of the squall process that started it.
- finalize: once ``result`` exists, copy the outputs and write ``exit`` under the flock; in
  the submitting process, the thread that waits on the runner (or polls the job) does it as
  soon as the shim exits, with no thread in between (:mod:`.supervisor`, :mod:`.registry`),
  and any process that polls the job does it if the submitter died first (:mod:`.status`).
- poll: from memory for a job watched here, else from ``exit``, else from ``result``, else
  RUNNING while the shim lives; a job whose shim died without a result is LOST and what is
  left of its group stopped (:mod:`.status`).
- Nothing kills a job when the interpreter that submitted it exits: the control plane
  decides (``squall run`` cancels its jobs on Ctrl-C through ``cancel``).

Modules, lowest first: ``shim`` (the per-job supervisor and the fork server, stdlib-only;
also the log line splitter both sides use), ``forkserver`` (starting shims through the fork
server), ``files`` (small file helpers), ``layout`` (the job directory, its names, its
lock), ``procs`` (process identity, liveness, signals), ``registry`` and ``pool``
(process-wide state: watched jobs, parsed exits, change notices; watcher threads),
``disposal`` (disposed directories renamed aside, deleted by a helper process),
``capture`` (log lines to records and back), ``status`` (the ``exit`` file, finalization and
a job's status), ``supervisor`` (the watcher), ``options`` (``taskRunner``), ``launch``
(plan, prepare, start the shim), ``runner`` (:class:`ProcessRunner`).

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
