"""Validated flows kept on disk by their text, as ``.pyc`` files keep compiled modules.

Why: validating a flow is most of a ``squall run``'s start-up (200 chained tasks: the YAML,
pydantic building and running every task type's validator, and every template parsed for the
load-time checks, ~150 ms of ~450), and a flow is run far more often than it is edited. The
result of :func:`control_plane.flows.loader.parse_flow` depends only on the text, ``lint``,
and Squall's code, so it is stored under those.

Layout: ``<directory>/<fingerprint>/<sha256 of lint + text>``. The fingerprint covers the code
the result depends on: the Python, pydantic and Jinja versions, PyYAML's file, and the path, size and
modification time of every ``.py`` file of the ``control_plane`` and ``runners`` packages (a
few hundred ``stat`` calls, ~1 ms), so an edited or upgraded Squall never reads another's
entries. A flow with a ``taskRunner`` block is never stored: its validity also depends on the
runners installed (entry points, a plugin's SDK present or not), which cost more to list than
the validation they would save. A file
holds a header, the BLAKE2b digest of its payload, and the payload: the pickled ``(lint, text,
flow)``. Only flows that validated are stored: an error is always found again, with its origin.

Safety: an entry is written under a temporary name and renamed into place, so concurrent
processes see a whole file or none; one that does not verify (torn, truncated, edited, another
text under the same name, unpicklable) is ignored and replaced by the next validation. The
cache holds nothing durable: deleting it only costs validations. Entries are pickles: the
directory must be the user's own (it sits beside the user's database, equally trusted).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from control_plane.cache_files import read_entry, write_entry

if TYPE_CHECKING:
    from control_plane.flows.models import Flow

__all__ = ["FlowCache", "code_fingerprint"]

_HEADER = b"squall-validated-flow 1\n"
_PACKAGE = Path(__file__).resolve().parents[1]  # control_plane/
_RUNNERS = _PACKAGE.parent / "runners"


def code_fingerprint() -> str:
    """What a validation's result depends on besides its input: see the module docstring."""
    import jinja2
    import pydantic

    digest = hashlib.sha256()
    digest.update(f"{sys.version}\0{pydantic.VERSION}\0{jinja2.__version__}\0{_unimported('yaml')}".encode())
    for package in (_PACKAGE, _RUNNERS):
        for folder, subfolders, files in os.walk(package):
            subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    stat = os.stat(path)
                    digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _unimported(name: str) -> str:
    """Which copy of module ``name`` would be imported, without importing it: its file's path,
    size and modification time (an upgrade rewrites the file that holds ``__version__``).
    PyYAML costs ~10 ms to import, and a run whose flow is cached reads no YAML."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return f"{name} absent"
    stat = os.stat(spec.origin)
    return f"{spec.origin}\0{stat.st_size}\0{stat.st_mtime_ns}"


def _names_a_runner(flow: Flow) -> bool:
    """Whether any task of ``flow`` has a ``taskRunner`` block (see the module docstring)."""
    from pydantic import BaseModel

    stack: list[object] = [flow]
    while stack:
        node = stack.pop()
        if isinstance(node, BaseModel):
            if getattr(node, "taskRunner", None) is not None:
                return True
            stack.extend(node.__dict__.values())
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return False


class FlowCache:
    """Validated flows in ``directory``; see the module docstring.

    >>> cache = FlowCache(data_dir / "cache" / "flows")
    >>> cache.get(text, False)          # None: validate, then
    >>> cache.put(text, False, flow)
    """

    def __init__(self, directory: Path) -> None:
        self.root = directory
        self._directory: Path | None = None  # fingerprinted on first use
        self.hits = 0

    @property
    def directory(self) -> Path:
        if self._directory is None:
            self._directory = self.root / code_fingerprint()
        return self._directory

    def path(self, text: str, lint: bool) -> Path:
        key = hashlib.sha256(b"lint\0" if lint else b"run\0")
        key.update(text.encode("utf-8", "surrogatepass"))
        return self.directory / key.hexdigest()

    def get(self, text: str, lint: bool) -> Flow | None:
        from control_plane.flows.models import Flow

        payload = read_entry(self.path(text, lint), _HEADER)
        if payload is None:
            return None
        try:
            stored_lint, stored_text, flow = pickle.loads(payload)
        except Exception:  # any unpickling failure means a bad entry, never a crash
            return None
        if stored_lint is not lint or stored_text != text or type(flow) is not Flow:
            return None
        self.hits += 1
        return flow

    def put(self, text: str, lint: bool, flow: Flow) -> None:
        """Store ``flow``; a cache that cannot be written (read-only, full) is skipped."""
        if _names_a_runner(flow):
            return
        try:
            payload = pickle.dumps((lint, text, flow), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a value pickle cannot take: validated again next time
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_entry(self.path(text, lint), _HEADER, payload)
        except OSError:
            return
