"""The web UI: static files under ``static/``, served at ``/ui`` by the API itself (ADR 0013).

:func:`respond` answers a ``GET``/``HEAD`` under ``/ui`` from the files shipped in this package,
so ``squall server`` and the ``api`` Lambda serve the same bytes through the same code path.
The files are public (they hold no data); the pages call the API with the user's credentials.
"""

from control_plane.ui.static_files import UI_PREFIX, is_ui_path, respond

__all__ = ["UI_PREFIX", "is_ui_path", "respond"]
