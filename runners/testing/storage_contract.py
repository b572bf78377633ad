"""The contract every storage backend passes: subclass :class:`StorageContract`, give fixtures.

One suite for ``file``, ``s3``, ``gs`` and ``az`` (and a plugin's own backend), each run
against a real implementation (a directory, moto, fake-gcs-server, Azurite)::

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def backend(self, server): return MyStorage(endpoint=server.url)

        @pytest.fixture
        def root(self, server): return f"my://{server.fresh_bucket()}/squall"

        @pytest.fixture
        def foreign(self, server): return f"my://{server.fresh_bucket()}/shared"

        @pytest.fixture
        def faulty_backend(self, server):
            def make(failures: int) -> tuple[Storage, CallCounter]:
                counter = CallCounter()
                transport = fails_with_503(failures, counter)        # the SDK's own seam
                return MyStorage(endpoint=server.url, transport=transport, sleep=lambda s: None), counter
            return make

Fixtures:

- ``backend``: the backend under test.
- ``root``: an empty root URL on it, new for each test; ``foreign``: another area on the
  same backend, outside ``root`` (another bucket or directory), for the allowlist checks.
- ``faulty_backend``: ``make(failures) -> (backend, CallCounter)``: the same backend whose
  first ``failures`` HTTP requests are answered 503, the counter counting every request.
  Its retry policy must not really sleep. Backends without a transport (``file``) skip it.
- ``many``: how many objects the listing test writes (default 25); a backend whose listing
  is paged makes it more than one page (S3: 1,100 with its 1,000-key pages), or lowers the
  page size of ``backend``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest

from runners.storage import DeploymentStorage, Reason, Storage, StorageError, is_uri
from runners.testing.contract import CallCounter

__all__ = ["RecordingStorage", "StorageContract"]


class RecordingStorage:
    """A backend that records each call and forwards it: proves a refusal did no I/O."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.calls: list[tuple[str, Any]] = []

    def read(self, uri: str) -> bytes:
        self.calls.append(("read", uri))
        return self.inner.read(uri)

    def write(self, uri: str, data: bytes) -> None:
        self.calls.append(("write", uri))
        self.inner.write(uri, data)

    def list_prefix(self, prefix: str) -> Mapping[str, str]:
        self.calls.append(("list_prefix", prefix))
        return self.inner.list_prefix(prefix)

    def exists(self, uri: str) -> bool:
        self.calls.append(("exists", uri))
        return self.inner.exists(uri)

    def delete(self, uris: Iterable[str]) -> None:
        uris = list(uris)
        self.calls.append(("delete", uris))
        self.inner.delete(uris)

    def delete_prefix(self, prefix: str) -> int:
        self.calls.append(("delete_prefix", prefix))
        return self.inner.delete_prefix(prefix)


class StorageContract:
    """What every storage backend does, through the deployment storage that guards it."""

    @pytest.fixture
    def backend(self) -> Storage:
        raise NotImplementedError("the contract subclass must provide a `backend` fixture")

    @pytest.fixture
    def root(self) -> str:
        raise NotImplementedError("the contract subclass must provide a `root` fixture")

    @pytest.fixture
    def foreign(self) -> str:
        raise NotImplementedError("the contract subclass must provide a `foreign` fixture")

    @pytest.fixture
    def faulty_backend(self) -> Callable[[int], tuple[Storage, CallCounter]]:
        pytest.skip("this backend has no transport to inject faults into")

    @pytest.fixture
    def many(self) -> int:
        return 25

    @pytest.fixture
    def recorder(self, backend: Storage) -> RecordingStorage:
        return RecordingStorage(backend)

    @pytest.fixture
    def storage(self, root: str, recorder: RecordingStorage) -> DeploymentStorage:
        return DeploymentStorage(root, {urlsplit(root).scheme: recorder})

    # ------------------------------------------------------------------ round trips

    def test_a_1_mib_random_file_round_trips_byte_for_byte(self, storage: DeploymentStorage) -> None:
        data = random.Random(19).randbytes(1 << 20)
        uri = storage.uri("ns/flow/exec/taskrun/1/blob.bin")
        storage.write(uri, data)
        back = storage.read(uri)
        assert hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest()
        assert storage.exists(uri)

    def test_a_write_replaces_the_object(self, storage: DeploymentStorage) -> None:
        uri = storage.uri("a.txt")
        storage.write(uri, b"first")
        storage.write(uri, b"second")
        assert storage.read(uri) == b"second"

    def test_unicode_and_spaces_in_keys_survive_as_one_uri_token(self, storage: DeploymentStorage) -> None:
        relative = "dir with space/naïve + 文件 ü.txt"
        uri = storage.uri(relative)
        assert is_uri(uri), uri  # a later task's inputFiles sees a URI, not text
        storage.write(uri, "zoë".encode())
        assert storage.read(uri) == "zoë".encode()
        assert storage.list_prefix(storage.uri("dir with space/")) == {"naïve + 文件 ü.txt": uri}

    def test_kestra_uris_name_objects_under_the_root(self, storage: DeploymentStorage) -> None:
        uri = storage.uri("ns/f/e/out.csv")
        storage.write(uri, b"a,b\n")
        assert storage.read("kestra:///ns/f/e/out.csv") == b"a,b\n"
        assert storage.canonical("kestra:///ns/f/e/out.csv") == uri

    # ------------------------------------------------------------------ listing

    def test_list_gives_every_object_under_a_prefix_with_nested_paths_across_pages(
        self, storage: DeploymentStorage, many: int
    ) -> None:
        names = [f"d{i % 3}/sub{i % 2}/f{i:05d}.txt" for i in range(many)]
        prefix = storage.uri("run/1/")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: storage.write(storage.uri(f"run/1/{n}"), n.encode()), names))
        storage.write(storage.uri("run/10/other.txt"), b"not under run/1/")
        storage.write(storage.uri("run/1.txt"), b"a sibling, not a child")
        listed = storage.list_prefix(prefix)
        assert sorted(listed) == sorted(names)
        assert all(uri == storage.uri(f"run/1/{n}") for n, uri in listed.items())
        assert storage.read(listed[names[-1]]) == names[-1].encode()

    def test_listing_an_empty_prefix_is_empty(self, storage: DeploymentStorage) -> None:
        assert storage.list_prefix(storage.uri("nothing/here/")) == {}

    # ------------------------------------------------------------------ exists / delete

    def test_exists_and_delete(self, storage: DeploymentStorage) -> None:
        keep, drop = storage.uri("x/keep.txt"), storage.uri("x/drop.txt")
        storage.write(keep, b"1")
        storage.write(drop, b"2")
        storage.delete([drop, storage.uri("x/never-written.txt")])  # a missing one is fine
        assert storage.exists(keep) and not storage.exists(drop)
        storage.write(storage.uri("x/deeper/y.txt"), b"3")
        assert storage.delete_prefix(storage.uri("x/")) == 2
        assert storage.list_prefix(storage.uri("x/")) == {}
        assert not storage.exists(keep)

    def test_a_missing_object_is_a_storage_error_naming_the_uri(self, storage: DeploymentStorage) -> None:
        uri = storage.uri("gone/missing.csv")
        with pytest.raises(StorageError) as caught:
            storage.read(uri)
        assert caught.value.reason is Reason.MISSING
        assert caught.value.uri == uri and uri in str(caught.value)
        with pytest.raises(StorageError, match=r"kestra:///gone/missing\.csv"):
            storage.read("kestra:///gone/missing.csv")  # named as the flow wrote it

    # ------------------------------------------------------------------ the guard

    def test_uris_outside_the_root_and_allowlist_are_refused_before_any_io(
        self, storage: DeploymentStorage, recorder: RecordingStorage, foreign: str, root: str
    ) -> None:
        outside = [
            foreign.rstrip("/") + "/secret.txt",
            "file:///etc/shadow",
            "kestra:///../../etc/shadow",
            "https://example.com/data.csv",
            root.rstrip("/") + "-sibling/x.txt",  # a prefix of the root's name is not the root
        ]
        for uri in outside:
            for call in (storage.read, storage.exists, lambda u: storage.write(u, b"x")):
                with pytest.raises(StorageError) as caught:
                    call(uri)
                assert caught.value.reason in (Reason.REFUSED, Reason.BAD_URI), (uri, caught.value)
                assert uri in str(caught.value)
        assert recorder.calls == []

    def test_the_read_allowlist_admits_reads_but_never_writes(
        self, backend: Storage, root: str, foreign: str
    ) -> None:
        shared = foreign.rstrip("/") + "/shared/"
        backend.write(shared + "data.csv", b"shared")
        backend.write(foreign.rstrip("/") + "/private.csv", b"private")
        storage = DeploymentStorage(root, {urlsplit(root).scheme: backend}, read=[shared])
        assert storage.read(shared + "data.csv") == b"shared"
        assert storage.list_prefix(shared) == {"data.csv": shared + "data.csv"}
        with pytest.raises(StorageError) as caught:
            storage.write(shared + "new.csv", b"x")
        assert caught.value.reason is Reason.REFUSED
        with pytest.raises(StorageError):
            storage.read(foreign.rstrip("/") + "/private.csv")
        with pytest.raises(StorageError):
            storage.delete([shared + "data.csv"])
        assert backend.exists(shared + "data.csv")

    # ------------------------------------------------------------------ transient errors

    def test_transient_503_answers_are_retried(
        self, faulty_backend: Callable[[int], tuple[Storage, CallCounter]], root: str
    ) -> None:
        backend, counter = faulty_backend(2)
        storage = DeploymentStorage(root, {urlsplit(root).scheme: backend})
        uri = storage.uri("flaky/a.txt")
        storage.write(uri, b"made it")  # the first two requests get a 503
        assert counter.calls >= 3
        assert storage.read(uri) == b"made it"

    def test_a_backend_that_keeps_failing_is_a_transient_storage_error(
        self, faulty_backend: Callable[[int], tuple[Storage, CallCounter]], root: str
    ) -> None:
        backend, counter = faulty_backend(1000)
        storage = DeploymentStorage(root, {urlsplit(root).scheme: backend})
        uri = storage.uri("down/a.txt")
        with pytest.raises(StorageError) as caught:
            storage.read(uri)
        assert caught.value.transient and caught.value.reason is Reason.UNAVAILABLE
        assert uri in str(caught.value)
        assert 1 < counter.calls < 1000  # retried, then gave up
