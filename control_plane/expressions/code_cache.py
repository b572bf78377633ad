"""A directory of compiled templates shared by the processes of one machine, as ``.pyc`` files are.

Why: compiling a template (Jinja parses it, generates Python source, and Python compiles that)
costs about 1 ms, and a ``squall run`` process starts with none compiled: 200 chained Return
tasks spent a fifth of their cold run compiling. Jinja's own answer is its bytecode cache
(``Template.from_code`` over a marshalled code object); this is that, keyed the same way.

Layout: ``<directory>/<fingerprint>/<sha256 of the source>``, where the fingerprint covers what
the code depends on besides the source (Jinja's and Python's versions, Squall's code generator,
the names of the filters and tests; :func:`environment.fingerprint`). A file holds a header, the
BLAKE2b digest of its payload, and the payload: the marshalled ``(source, code)`` pair.

Sets: the templates of one flow are loaded together, so they are also kept together, in
``<fingerprint>/sets/<sha256 of the sources>``: the marshalled ``(sources, codes)`` of those
compiled so far. One file instead of one per template (200 chained tasks: 200 opens, reads and
digests, ~4 ms of a ~280 ms run, against ~1 ms); the per-template files stay, for another flow
sharing a template and for a set that does not verify.

Safety: a file is written under a temporary name and renamed into place, so a reader sees a
whole file or none, whatever other processes do at the same time; one that does not verify
(torn after a power loss, truncated, edited, another source under the same name) is ignored,
and the template is compiled and written again. The cache holds nothing durable: deleting the
directory only costs the compilations.

The shell calls :meth:`TemplateCodeCache.load` with the templates of a flow it is about to plan
and :meth:`TemplateCodeCache.save` when it closes; the engine renders from memory and does no I/O.
"""

from __future__ import annotations

import hashlib
import marshal
import threading
from collections.abc import Iterable
from pathlib import Path
from types import CodeType

from control_plane.cache_files import read_entry, write_entry

__all__ = ["TemplateCodeCache"]

_HEADER = b"squall-template-code 1\n"
_SET_HEADER = b"squall-template-set 1\n"


class TemplateCodeCache:
    """Compiled templates in ``directory``; see the module docstring.

    >>> cache = TemplateCodeCache(data_dir / "cache" / "templates")
    >>> cache.load(["{{ inputs.x }}"])  # before planning: what earlier processes compiled
    >>> cache.save()                      # on close: what this one compiled
    """

    def __init__(self, directory: Path) -> None:
        self.root = directory
        self._directory: Path | None = None  # fingerprinted lazily: it imports Jinja
        self.loaded = 0
        self.saved = 0
        self._codes: dict[str, CodeType] = {}  # loaded for sets still to write
        self._sets: dict[Path, tuple[tuple[str, ...], int]] = {}  # set file -> (sources, whole in it)
        self._lock = threading.Lock()  # the server loads flows on several threads

    @property
    def directory(self) -> Path:
        if self._directory is None:
            from control_plane.expressions import environment

            self._directory = self.root / environment.fingerprint()
        return self._directory

    def load(self, sources: Iterable[str]) -> int:
        """Install every template of ``sources`` found whole in the cache; how many were."""
        unique = tuple(sorted(set(sources)))  # the key of its set: the same whatever the order given
        if not unique:
            return 0  # no template: Jinja stays unimported
        from control_plane.expressions import environment

        wanted = [source for source in unique if not environment.is_compiled(source)]
        if not wanted:
            return 0
        path = self.set_path(unique)
        stored = self._read_set(path, unique)
        loaded: dict[str, CodeType] = {}
        for source in wanted:
            code = stored.get(source) or self._read(source)
            if code is not None:
                environment.install(source, code)
                loaded[source] = code
        found = len(loaded)
        if len(stored) < len(unique):  # written (again) by save() once more of them are compiled
            with self._lock:
                self._codes.update(stored)
                self._codes.update(loaded)
                self._sets[path] = (unique, len(stored))
        self.loaded += found
        return found

    def save(self) -> int:
        """Write what this process compiled since the last save, and the sets it completed; how
        many templates were written.

        A cache that cannot be written (read-only or full disk) is skipped: it only saves time.
        """
        import sys

        if "control_plane.expressions.environment" not in sys.modules:
            return 0  # nothing was compiled: do not import Jinja to find that out
        from control_plane.expressions import environment

        fresh = environment.take_fresh()
        with self._lock:  # the sets' codes are held only until this save: a server stays bounded
            known = {**self._codes, **fresh}
            sets = [
                (path, {s: known[s] for s in sources if s in known})
                for path, (sources, had) in self._sets.items()
                if sum(s in known for s in sources) > had
            ]
            self._sets.clear()
            self._codes.clear()
        if not fresh and not sets:
            return 0
        written = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            return 0
        for source, code in fresh.items():
            try:
                self._write(source, code)
            except (OSError, ValueError):
                continue
            written += 1
        for path, codes in sets:
            try:
                path.parent.mkdir(exist_ok=True)
                write_entry(path, _SET_HEADER, marshal.dumps((tuple(codes), tuple(codes.values()))))
            except (OSError, ValueError):
                continue
        self.saved += written
        return written

    def set_path(self, sources: tuple[str, ...]) -> Path:
        digest = hashlib.sha256()
        for source in sources:
            digest.update(source.encode("utf-8", "surrogatepass") + b"\0")
        return self.directory / "sets" / digest.hexdigest()

    def _read_set(self, path: Path, sources: tuple[str, ...]) -> dict[str, CodeType]:
        """The compiled templates kept at ``path`` for ``sources``; empty if absent or damaged."""
        payload = read_entry(path, _SET_HEADER)
        if payload is None:
            return {}
        try:
            stored, codes = marshal.loads(payload)
        except (EOFError, ValueError, TypeError):
            return {}
        if (
            not isinstance(stored, tuple)
            or not isinstance(codes, tuple)
            or len(stored) != len(codes)
            or not set(stored) <= set(sources)
            or not all(isinstance(code, CodeType) for code in codes)
        ):
            return {}
        return dict(zip(stored, codes, strict=True))

    def path(self, source: str) -> Path:
        return self.directory / hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()

    def _read(self, source: str) -> CodeType | None:
        payload = read_entry(self.path(source), _HEADER)
        if payload is None:
            return None
        try:
            stored, code = marshal.loads(payload)
        except (EOFError, ValueError, TypeError):
            return None
        if stored != source or not isinstance(code, CodeType):
            return None
        return code

    def _write(self, source: str, code: CodeType) -> None:
        write_entry(self.path(source), _HEADER, marshal.dumps((source, code)))
