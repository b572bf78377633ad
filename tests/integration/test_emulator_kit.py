"""The kit every cloud fake is built on: the local executor, its storage mounts, the fault proxy.

The fakes trust these three to be genuine (a kill really kills, a line is never lost or
reordered, a lost response really leaves the work done upstream), so they are tested here on
their own, against real processes, moto in server mode and real boto3 clients.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runners.testing import count_local_processes, wait_until
from tests.emulators.executor import MINIMAL_PATH, LocalExecutor, LogLine, Mount, RunningJob, Stream
from tests.emulators.fault_proxy import FaultProxy
from tests.emulators.mounts import S3Prefix

boto3 = pytest.importorskip("boto3")

DEADLINE = 30.0
LOOP = "while :; do sleep 1; done"


class Recorder:
    """The callbacks of one job, in the order they came: ``("line", LogLine)`` or ``("exit", code)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, float]] = []
        self.job: RunningJob | None = None
        self._lock = threading.Lock()

    def on_line(self, line: LogLine) -> None:
        with self._lock:
            self.events.append(("line", line, time.time()))

    def on_exit(self, code: int) -> None:
        with self._lock:
            self.events.append(("exit", code, time.time()))

    @property
    def lines(self) -> list[LogLine]:
        with self._lock:
            return [item for kind, item, _ in self.events if kind == "line"]

    def texts(self, stream: Stream) -> list[str]:
        return [line.text for line in self.lines if line.stream is stream]

    @property
    def exits(self) -> list[int]:
        with self._lock:
            return [item for kind, item, _ in self.events if kind == "exit"]


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[LocalExecutor]:
    local = LocalExecutor(tmp_path / "executor")
    try:
        yield local
    finally:
        local.stop()


def run(executor: LocalExecutor, script: str, env: dict[str, str] | None = None, **options: Any) -> Recorder:
    """Start ``sh -c script`` and return its recorder (not waiting)."""
    recorder = Recorder()
    recorder.job = executor.start(
        f"job-{uuid.uuid4().hex[:8]}",
        ["sh", "-c", script],
        env or {},
        on_line=recorder.on_line,
        on_exit=recorder.on_exit,
        **options,
    )
    return recorder


def finished(executor: LocalExecutor, recorder: Recorder) -> int:
    wait_until(lambda: bool(recorder.exits), DEADLINE, "the job never reported its exit")
    return recorder.exits[0]


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def bucket(moto_server: str) -> str:
    name = f"kit-{uuid.uuid4().hex[:12]}"
    client = s3_client(moto_server)
    client.create_bucket(Bucket=name)
    client.close()
    return name


# -- the executor


def test_lines_keep_their_order_and_stream_and_the_exit_comes_after_the_last_one(
    executor: LocalExecutor,
) -> None:
    before = time.time()
    script = 'i=0; while [ "$i" -lt 200 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done; printf tail'
    recorder = run(executor, script)
    assert finished(executor, recorder) == 0
    assert recorder.texts(Stream.STDOUT) == [f"out {i}" for i in range(200)] + ["tail"]
    assert recorder.texts(Stream.STDERR) == [f"err {i}" for i in range(200)]
    stamps = [line.at for line in recorder.lines]
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= time.time()
    kinds = [kind for kind, _, _ in recorder.events]
    assert kinds == ["line"] * 401 + ["exit"]  # exactly one exit, after every line


def test_a_300_kb_line_passes_whole_and_bad_utf8_is_replaced(executor: LocalExecutor) -> None:
    script = "head -c 300000 /dev/zero | tr '\\0' x; echo; printf 'caf\\303\\251 \\377\\n'"
    recorder = run(executor, script)
    assert finished(executor, recorder) == 0
    assert recorder.texts(Stream.STDOUT) == ["x" * 300_000, "café \ufffd"]


def test_exit_codes_are_the_shells(executor: LocalExecutor) -> None:
    assert finished(executor, run(executor, "exit 3")) == 3
    assert finished(executor, run(executor, "kill -TERM $$")) == 143
    missing = Recorder()
    executor.start("missing", ["no-such-tool-squall"], {}, on_line=missing.on_line, on_exit=missing.on_exit)
    assert finished(executor, missing) == 127
    assert "no-such-tool-squall" in missing.texts(Stream.STDERR)[0]


def test_kill_stops_the_whole_process_group_grandchildren_included(executor: LocalExecutor) -> None:
    token = uuid.uuid4().hex
    # The grandchild outlives its parent (an orphan in the job's group), the child is waited for.
    script = f'sh -c "({LOOP}) &" grand-{token}; sh -c "{LOOP}" child-{token} & echo ready; wait'
    recorder = run(executor, script)
    wait_until(lambda: recorder.texts(Stream.STDOUT) == ["ready"], DEADLINE, "the job never started")
    wait_until(lambda: count_local_processes(token) >= 2, DEADLINE, "the child and grandchild never ran")
    assert recorder.job is not None
    executor.kill(recorder.job.job_id)
    assert finished(executor, recorder) == 137
    assert count_local_processes(token) == 0


def test_the_jobs_other_processes_die_with_its_main_one(executor: LocalExecutor) -> None:
    token = uuid.uuid4().hex
    # A background process still holds stdout: only killing it lets the pipe reach end-of-file.
    recorder = run(executor, f'sh -c "{LOOP}" bg-{token} & echo main done')
    assert finished(executor, recorder) == 0
    assert recorder.texts(Stream.STDOUT) == ["main done"]
    assert count_local_processes(token) == 0


def test_a_job_sees_only_the_env_it_is_given(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQUALL_KIT_HOST_SECRET", "leaked")
    recorder = Recorder()
    executor.start("env", ["env"], {"A": "1"}, on_line=recorder.on_line, on_exit=recorder.on_exit)
    assert finished(executor, recorder) == 0
    assert sorted(recorder.texts(Stream.STDOUT)) == ["A=1", f"PATH={MINIMAL_PATH}"]
    given = run(executor, 'echo "$PATH"', {"PATH": "/bin:/usr/bin"})
    assert finished(executor, given) == 0
    assert given.texts(Stream.STDOUT) == ["/bin:/usr/bin"]


def test_a_mounted_bucket_is_downloaded_before_and_synced_back_after(
    executor: LocalExecutor, moto_server: str, bucket: str
) -> None:
    direct = s3_client(moto_server)
    for key, body in (("in/a.txt", b"alpha"), ("in/sub/b.txt", b"beta"), ("in/gone.txt", b"old")):
        direct.put_object(Bucket=bucket, Key=key, Body=body)
    with FaultProxy(moto_server) as proxy:  # counts what the mount sends
        client = s3_client(proxy.endpoint)
        script = (
            'cat "$DATA/a.txt"; echo; cat /mnt/data/sub/b.txt; echo; echo /mnt/database; '
            'echo made > "$DATA/out.txt"; rm /mnt/data/gone.txt'
        )
        recorder = run(
            executor,
            script,
            {"DATA": "/mnt/data"},
            mounts=[S3Prefix(client, bucket, "in/").mount("/mnt/data")],
        )
        assert finished(executor, recorder) == 0
        assert proxy.count("PUT") == 1 and proxy.count("DELETE") == 1  # unchanged files cost nothing
        client.close()
    assert recorder.texts(Stream.STDOUT) == ["alpha", "beta", "/mnt/database"]  # a whole path only
    keys = {item["Key"] for item in direct.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {"in/a.txt", "in/sub/b.txt", "in/out.txt"}
    assert direct.get_object(Bucket=bucket, Key="in/out.txt")["Body"].read() == b"made\n"
    direct.close()


def test_a_mount_that_cannot_be_filled_fails_the_job_before_its_command(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    def broken(_directory: Path) -> None:
        raise OSError("bucket gone")

    marker = tmp_path / "ran"
    recorder = run(executor, f"touch {marker}", mounts=[Mount("/mnt/in", broken)])
    assert finished(executor, recorder) == 125
    assert "bucket gone" in recorder.texts(Stream.STDERR)[0]
    assert not marker.exists()


def test_a_kill_while_mounts_download_means_the_command_never_starts(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_download(_directory: Path) -> None:
        entered.set()
        release.wait(DEADLINE)

    marker = tmp_path / "ran"
    recorder = Recorder()
    job = executor.start(
        "staging",
        ["touch", str(marker)],
        {},
        on_line=recorder.on_line,
        on_exit=recorder.on_exit,
        mounts=[Mount("/mnt/in", slow_download)],
    )
    assert entered.wait(DEADLINE)
    job.kill()
    release.set()
    assert job.wait(DEADLINE) == 137
    assert not marker.exists() and job.pid is None


def test_log_lag_delivers_lines_after_the_exit(executor: LocalExecutor) -> None:
    lag = 2.0  # wide enough that a loaded machine still sees the exit first
    recorder = run(executor, "echo early; echo late >&2", log_lag=lag)
    assert finished(executor, recorder) == 0
    wait_until(lambda: len(recorder.lines) == 2, DEADLINE, "the lagging lines never came")
    events = [(kind, getattr(item, "text", item)) for kind, item, _ in recorder.events]
    # stdout and stderr have a reader each, so only the exit-first order is guaranteed
    assert events[0] == ("exit", 0)
    assert sorted(events[1:]) == [("line", "early"), ("line", "late")]
    for kind, item, delivered in recorder.events:
        if kind == "line":
            assert delivered >= item.at + lag


def test_a_callbacks_exception_is_raised_by_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local = LocalExecutor(tmp_path)

    def broken(_line: LogLine) -> None:
        raise RuntimeError("fake bug")

    codes: list[int] = []
    job = local.start("bug", ["echo", "x"], {}, on_line=broken, on_exit=codes.append)
    assert job.wait(DEADLINE) == 0 and codes == [0]  # the job still ends
    with pytest.raises(ExceptionGroup) as raised:
        local.stop()
    assert [str(exc) for exc in raised.value.exceptions] == ["fake bug"]
    assert "fake bug" in capsys.readouterr().err


# -- the fault proxy


def test_fail_before_answers_503_n_times_then_the_retry_goes_through(moto_server: str, bucket: str) -> None:
    with FaultProxy(moto_server) as proxy:
        client = s3_client(proxy.endpoint)
        path = rf"^/{bucket}/key"
        rule = proxy.fail_before("PUT", path, 503, times=2)
        client.put_object(Bucket=bucket, Key="key", Body=b"third time")
        assert (rule.seen, rule.applied) == (3, 2)
        assert proxy.count("PUT", path) == 3 and proxy.requests == 3
        assert client.get_object(Bucket=bucket, Key="key")["Body"].read() == b"third time"
        assert proxy.requests == 4 and rule.seen == 3  # a GET is not the rule's
        client.close()


def test_drop_after_leaves_the_work_done_upstream_and_the_client_without_an_answer(
    moto_server: str, bucket: str
) -> None:
    from botocore.config import Config
    from botocore.exceptions import ConnectionClosedError

    with FaultProxy(moto_server) as proxy:
        client = boto3.client(
            "s3",
            endpoint_url=proxy.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}),
        )
        rule = proxy.drop_after("PUT", rf"^/{bucket}/lost")
        with pytest.raises(ConnectionClosedError):
            client.put_object(Bucket=bucket, Key="lost", Body=b"done anyway")
        assert rule.applied == 1 and proxy.requests == 1
        client.close()
    direct = s3_client(moto_server)
    assert direct.get_object(Bucket=bucket, Key="lost")["Body"].read() == b"done anyway"
    direct.close()


def test_reset_before_resets_the_connection_and_forwards_nothing(moto_server: str, bucket: str) -> None:
    with FaultProxy(moto_server) as proxy:
        rule = proxy.reset_before("PUT", r"/never")
        host, port = proxy.endpoint.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=DEADLINE)
        with pytest.raises(ConnectionResetError):
            connection.request("PUT", f"/{bucket}/never", body=b"x")
            connection.getresponse().read()
        connection.close()
        assert rule.applied == 1
    direct = s3_client(moto_server)
    assert direct.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    direct.close()


def test_slow_delays_only_the_matching_requests_it_has_left(moto_server: str, bucket: str) -> None:
    with FaultProxy(moto_server) as proxy:
        client = s3_client(proxy.endpoint)
        rule = proxy.slow("GET", rf"^/{bucket}\?list-type=2", 0.5, times=1)
        started = time.monotonic()
        assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
        assert time.monotonic() - started >= 0.5
        client.list_objects_v2(Bucket=bucket)
        assert (rule.seen, rule.applied) == (2, 1)
        client.close()


def test_unmatched_requests_pass_through_on_one_kept_alive_connection(moto_server: str, bucket: str) -> None:
    with FaultProxy(moto_server) as proxy:
        proxy.fail_before("DELETE", r".*", 500, times=None)  # never matched below
        client = s3_client(proxy.endpoint)
        for i in range(5):
            client.put_object(Bucket=bucket, Key=f"k{i}", Body=f"v{i}".encode())
        bodies = [client.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read() for i in range(5)]
        assert bodies == [f"v{i}".encode() for i in range(5)]
        assert proxy.requests == 10 and proxy.connections == 1
        assert all(call.fault is None for call in proxy.calls)
        client.close()


class _Echo(BaseHTTPRequestHandler):
    """An upstream that answers with the request it saw, in a chunked response."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while size := int(self.rfile.readline().strip(), 16):
                body += self.rfile.read(size + 2)[:-2]
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        seen = [f"{name}: {value}".encode() for name, value in self.headers.items()]
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Upstream", "echo")
        self.end_headers()
        for part in (f"{self.path}\n".encode(), b"\n".join(seen), b"\nbody=" + body):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def echo_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_headers_host_and_bodies_pass_unchanged_and_chunked_responses_are_relayed(echo_upstream: str) -> None:
    with FaultProxy(echo_upstream) as proxy:
        host, port = proxy.endpoint.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=DEADLINE)
        connection.putrequest("POST", "/sign?x=1", skip_host=True, skip_accept_encoding=True)
        for name, value in (("Host", "signed.example:1234"), ("X-Dup", "a"), ("X-Dup", "b")):
            connection.putheader(name, value)
        connection.putheader("Content-Length", "5")
        connection.endheaders(b"hello")
        response = connection.getresponse()
        text = response.read().decode()
        assert (response.status, response.getheader("X-Upstream")) == (200, "echo")
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert text.splitlines() == [
            "/sign?x=1",
            "Host: signed.example:1234",
            "X-Dup: a",
            "X-Dup: b",
            "Content-Length: 5",
            "body=hello",
        ]
        # A chunked request body stays chunked, and a rule can match inside it.
        rule = proxy.fail_before("POST", r"^/chunked", 429, body=b"slow down", body_contains="needle")
        for payload, expected in ((b"hay", 200), (b"a needle", 429)):
            connection.request("POST", "/chunked", body=iter([payload]), encode_chunked=True)
            response = connection.getresponse()
            answer = response.read()
            assert response.status == expected
            if expected == 200:
                assert answer.endswith(b"Transfer-Encoding: chunked\nbody=hay")
            else:
                assert answer == b"slow down"
        connection.close()
        assert (rule.seen, rule.applied, proxy.connections) == (1, 1, 1)


def test_a_stopped_proxy_refuses_connections(moto_server: str) -> None:
    proxy = FaultProxy(moto_server).start()
    port = int(proxy.endpoint.rsplit(":", 1)[1])
    proxy.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()


# -- BatchExecutor's options (the rest of it is covered by test_aws_batch_runner.py)


def test_batch_executor_without_the_cli_and_with_late_logs(moto_server: str, tmp_path: Path) -> None:
    from tests.emulators.moto_batch import LOG_GROUP, BatchExecutor

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=moto_server,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    batch, logs = client("batch"), client("logs")
    executor = BatchExecutor(moto_server, tmp_path, aws_cli=False, log_lag=2.0).start()
    try:
        suffix = uuid.uuid4().hex[:8]
        role = client("iam").create_role(RoleName=f"kit-{suffix}", AssumeRolePolicyDocument="{}")["Role"][
            "Arn"
        ]
        ce = batch.create_compute_environment(
            computeEnvironmentName=f"kit-{suffix}", type="UNMANAGED", state="ENABLED", serviceRole=role
        )["computeEnvironmentArn"]
        queue = batch.create_job_queue(
            jobQueueName=f"kit-{suffix}",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
        )["jobQueueArn"]
        definition = batch.register_job_definition(
            jobDefinitionName=f"kit-{suffix}",
            type="container",
            containerProperties={"image": "busybox", "vcpus": 1, "memory": 128, "command": ["true"]},
        )["jobDefinitionArn"]
        script = 'if command -v aws >/dev/null; then echo "aws: yes"; else echo "aws: no"; fi'
        job_id = batch.submit_job(
            jobName=f"kit-{suffix}",
            jobQueue=queue,
            jobDefinition=definition,
            containerOverrides={"command": ["sh", "-c", script]},
        )["jobId"]

        def describe() -> dict[str, Any]:
            return dict(batch.describe_jobs(jobs=[job_id])["jobs"][0])

        wait_until(lambda: describe()["status"] == "SUCCEEDED", DEADLINE, "the Batch job never succeeded")
        stream = describe()["container"]["logStreamName"]

        def messages() -> list[str]:
            try:
                events = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream)["events"]
            except logs.exceptions.ResourceNotFoundException:
                return []
            return [event["message"] for event in events]

        assert messages() == []  # ended before its logs were "ingested"
        wait_until(lambda: messages() == ["aws: no"], DEADLINE, "the late log line never came")
        assert executor.started_commands == 1
    finally:
        executor.stop()
        batch.close()
        logs.close()
