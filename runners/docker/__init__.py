"""Docker runner (``squall.runner.Docker``; Kestra's ``io.kestra.plugin.scripts.runner.docker.Docker``).

Modules: ``runner`` (the protocol over docker-py's ``APIClient``), ``options`` (the
``taskRunner`` model, Kestra's property names).
"""

from runners.docker.options import DockerOptions
from runners.docker.runner import DockerRunner, container_name

__all__ = ["DockerOptions", "DockerRunner", "container_name"]
