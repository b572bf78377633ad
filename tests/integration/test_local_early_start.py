"""A local step's jobs start only once the write that records them is committed.

The service readies the next job's start before its write (``JobSupervisor.prepared``) and,
when the step only submits it, starts it before that write is synced (``Step.early``). What
must hold either way: the job runs only after its SUBMITTING record and the previous job's
DONE mark are committed (a crash of the process can no longer lose them), each job runs once,
and the execution's end is the same. Each job here is a real process that reads the SQLite
database itself, through a connection of its own, and appends what it saw to a ledger.
"""

from __future__ import annotations

import sys
from pathlib import Path

from control_plane.engine.states import State
from control_plane.runtime import local_settings, open_local
from control_plane.store.sqlite import SqliteStore

N = 4

PROBE = """
import os, sqlite3, sys
name = os.path.basename(os.path.dirname(os.getcwd()))  # <jobs>/<job name>/work
conn = sqlite3.connect(sys.argv[1])
phase = conn.execute("SELECT phase FROM jobs WHERE name = ?", (name,)).fetchone()
done = conn.execute("SELECT count(*) FROM jobs WHERE phase = 'DONE'").fetchone()[0]
with open(sys.argv[2], "a") as ledger:
    ledger.write(f"{name} {phase[0] if phase else None} {done}\\n")
"""


def test_each_job_finds_its_own_record_and_the_previous_end_committed(tmp_path: Path) -> None:
    db = tmp_path / "squall.db"
    probe, ledger = tmp_path / "probe.py", tmp_path / "ledger"
    probe.write_text(PROBE)
    command = f"{sys.executable} {probe} {db} {ledger}"
    flow = "id: chain\nnamespace: test.early\ntasks:\n" + "".join(
        f"  - id: t{i}\n    type: io.kestra.plugin.scripts.shell.Commands\n    commands: ['{command}']\n"
        for i in range(N)
    )
    store = SqliteStore(db)  # synchronous=FULL: the early start and its deferred sync
    settings = local_settings(db, runners={"process": {"base_dir": tmp_path / "jobs"}})
    with open_local(settings, store=store) as rt:
        record = rt.service.deploy(flow)
        execution = rt.service.start(record.namespace, record.id)
        final = rt.service.run(execution.id)
    assert final.state is State.SUCCESS
    lines = ledger.read_text().splitlines()
    assert len(lines) == N, lines  # each job ran once
    names = [line.split()[0] for line in lines]
    assert len(set(names)) == N
    for i, line in enumerate(lines):
        _, phase, done = line.split()
        assert phase in ("SUBMITTING", "SUBMITTED"), line  # recorded (committed) before it ran
        assert int(done) == i, line  # and the previous job's end with it
