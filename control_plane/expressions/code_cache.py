"""A directory of compiled templates shared by the processes of one machine, as ``.pyc`` files are.

Why: compiling a template (Jinja parses it, generates Python source, and Python compiles that)
costs about 1 ms, and a ``squall run`` process starts with none compiled: 200 chained Return
tasks spent a fifth of their cold run compiling. Jinja's own answer is its bytecode cache
(``Template.from_code`` over a marshalled code object); this is that, keyed the same way.

Layout: ``<directory>/<fingerprint>/<sha256 of the source>``, where the fingerprint covers what
the code depends on besides the source (Jinja's and Python's versions, Squall's code generator,
the names of the filters and tests; :func:`environment.fingerprint`). A file holds a header, the
BLAKE2b digest of its payload, and the payload: the marshalled ``(source, code)`` pair.

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
from collections.abc import Iterable
from pathlib import Path
from types import CodeType

from control_plane.cache_files import read_entry, write_entry

__all__ = ["TemplateCodeCache"]

_HEADER = b"squall-template-code 1\n"


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

    @property
    def directory(self) -> Path:
        if self._directory is None:
            from control_plane.expressions import environment

            self._directory = self.root / environment.fingerprint()
        return self._directory

    def load(self, sources: Iterable[str]) -> int:
        """Install every template of ``sources`` found whole in the cache; how many were."""
        sources = list(sources)
        if not sources:
            return 0  # no template: Jinja stays unimported
        from control_plane.expressions import environment

        found = 0
        for source in sources:
            if environment.is_compiled(source):
                continue
            code = self._read(source)
            if code is not None:
                environment.install(source, code)
                found += 1
        self.loaded += found
        return found

    def save(self) -> int:
        """Write what this process compiled since the last save; how many files were written.

        A cache that cannot be written (read-only or full disk) is skipped: it only saves time.
        """
        import sys

        if "control_plane.expressions.environment" not in sys.modules:
            return 0  # nothing was compiled: do not import Jinja to find that out
        from control_plane.expressions import environment

        written = 0
        fresh = environment.take_fresh()
        if not fresh:
            return 0
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
        self.saved += written
        return written

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
