"""The Lambda entry points: ``api``, ``events``, ``tick``, ``schedule``, ``sweeper``.

Each is a thin shell over its container's runtime (:mod:`control_plane.handlers.container`):
the wiring lives in :mod:`control_plane.runtime`, the HTTP API in :mod:`control_plane.api`.
Every module here is imported at a Lambda cold start, so this package keeps imports lean
(``benchmarks/coldstart.py`` measures them):

* pydantic's plugin discovery scans every installed distribution's entry points on first
  import; a Lambda package has no pydantic plugins, so the Terraform module sets
  ``PYDANTIC_DISABLE_PLUGINS=__all__`` in every function's environment (configuration, not
  something importing this package does);
* every handler but ``api`` logs with the standard library: with the function's log
  format set to JSON (the Terraform module does), Lambda writes each record as a JSON object,
  ``extra`` keys included, so the powertools Logger's import is only paid by ``api``, whose
  request context it adds.
"""

from __future__ import annotations

import logging
import os

__all__ = ["handler_logger"]


def handler_logger(name: str) -> logging.Logger:
    """The ``squall.<name>`` logger at Lambda's application log level (INFO when unset).

    Lambda's levels are TRACE, DEBUG, INFO, WARN, ERROR and FATAL; TRACE is DEBUG here, and a
    value logging does not know falls back to INFO rather than failing the cold start.
    """
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO").upper().replace("TRACE", "DEBUG")
    logger = logging.getLogger(f"squall.{name}")
    logger.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    return logger
