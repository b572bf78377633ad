"""Squall's own ``kestra`` Python module, so ``from kestra import Kestra`` works in a script task.

Kestra's script tasks come with the ``kestra`` library (PyPI ``kestra``, github
kestra-io/libs, Apache-2.0) in Kestra's images; a user's flow imports it to send outputs and
metrics. Squall ships a small implementation of the same API (:mod:`runners.kestra_lib.kestra`)
that prints Squall's stdout protocol (:mod:`runners.markers`), with nothing to install:

- the process runner puts :data:`LIB_DIR` first on the job's ``PYTHONPATH``;
- container runners get :data:`MODULE_NAME` as an input file of the job, in its working
  directory, next to the script (Python puts the script's directory first on ``sys.path``),
  so nothing is needed in the user's image. A user's own ``kestra.py`` input wins.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["LIB_DIR", "MODULE_NAME", "module_source"]

LIB_DIR = Path(__file__).resolve().parent
"""The directory holding ``kestra.py``: what goes on ``PYTHONPATH`` for local jobs."""
MODULE_NAME = "kestra.py"


def module_source() -> bytes:
    """The module's bytes, staged as an input file of container jobs."""
    return (LIB_DIR / MODULE_NAME).read_bytes()
