"""``taskRunner`` options of the Docker runner (``io.kestra.plugin.scripts.runner.docker.Docker``).

Property names and defaults are Kestra's where Kestra has one (``host``, ``config``,
``credentials``, ``user``, ``entryPoint``, ``extraHosts``, ``networkMode``, ``volumes``,
``pullPolicy``, ``deviceRequests``, ``cpu``, ``memory``, ``shmSize``, ``fileHandlingStrategy``,
``delete``), so a Kestra flow's block validates as it is (script/src/main/java/io/kestra/plugin/
scripts/runner/docker/Docker.java, Cpu.java, Memory.java, Credentials.java). Every property Squall
accepts is honoured; the others are refused here, naming the property, never silently ignored:

- ``config`` (a Docker ``config.json``): refused, use ``credentials``;
- ``credentials.registryToken``: refused (no docker-py equivalent for a bearer token);
- ``entryPoint`` other than Kestra's default ``[""]`` (or ``[]``): the job's command is
  Squall's wrapper script (inputs, outputs, the log's end), which an entry point would bypass;
- ``deviceRequests``, ``memory.kernelMemory`` (deprecated by Docker): refused.

``fileHandlingStrategy`` ``VOLUME`` and ``MOUNT`` are both accepted: Squall always bind-mounts
the job's directory, which is what both give the task (its files in ``WORKING_DIR``).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runners.base import RunnerOptions

__all__ = ["Cpu", "Credentials", "DockerOptions", "Memory", "PullPolicy", "parse_bytes"]

_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(value: str | int) -> int:
    """Bytes of a readable size as Kestra reads it (``512Mb``, ``1g``, ``1024``; units of 1024)."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return value
    match = _BYTES.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a size (e.g. 512Mb, 1g, 1048576)")
    unit = (match.group(2) or "").lower().rstrip("b").rstrip("i")
    return int(float(match.group(1)) * _UNITS[unit])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PullPolicy(StrEnum):
    """Kestra's ``PullPolicy``: ``ALWAYS`` (Kestra's default), ``IF_NOT_PRESENT``, ``NEVER``."""

    ALWAYS = "ALWAYS"
    IF_NOT_PRESENT = "IF_NOT_PRESENT"
    NEVER = "NEVER"


class Cpu(_Strict):
    cpus: float | None = Field(
        default=None, gt=0, description="CPUs the container may use (Docker's --cpus)."
    )


class Memory(_Strict):
    """Kestra's ``Memory``: readable sizes (``512Mb``); ``memorySwappiness`` 0 to 100."""

    memory: str | int | None = None
    memory_swap: str | int | None = Field(default=None, alias="memorySwap")
    memory_swappiness: int | None = Field(default=None, alias="memorySwappiness", ge=0, le=100)
    memory_reservation: str | int | None = Field(default=None, alias="memoryReservation")
    kernel_memory: str | int | None = Field(default=None, alias="kernelMemory")
    oom_kill_disable: bool | None = Field(default=None, alias="oomKillDisable")

    @field_validator("memory", "memory_reservation")
    @classmethod
    def _size(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_bytes(value)
        return value

    @field_validator("memory_swap")
    @classmethod
    def _swap(cls, value: str | int | None) -> str | int | None:
        if value is not None and str(value).strip() != "-1":
            parse_bytes(value)
        return value

    @field_validator("kernel_memory")
    @classmethod
    def _kernel(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("kernelMemory is not supported by Squall's Docker runner (deprecated by Docker)")
        return value


class Credentials(_Strict):
    """Kestra's ``Credentials`` of a private registry: ``username``/``password``, ``auth``
    (base64 ``user:password``) or ``identityToken``; ``registry`` defaults to the image's."""

    registry: str | None = None
    username: str | None = None
    password: str | None = None
    registry_token: str | None = Field(default=None, alias="registryToken")
    identity_token: str | None = Field(default=None, alias="identityToken")
    auth: str | None = None

    @field_validator("registry_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(
                "registryToken is not supported by Squall's Docker runner; use identityToken or auth"
            )
        return value


class FileHandlingStrategy(StrEnum):
    VOLUME = "VOLUME"
    MOUNT = "MOUNT"


class DockerOptions(RunnerOptions):
    """Kestra's Docker task runner properties (see the module docstring for what is refused)."""

    host: str | None = Field(
        default=None,
        description="Docker API URI (unix:///..., tcp://host:2375); default DOCKER_HOST, then the socket.",
    )
    config: str | dict[str, Any] | None = None
    credentials: Credentials | None = None
    user: str | None = None
    entry_point: list[str] | None = Field(default=None, alias="entryPoint")
    extra_hosts: list[str] | None = Field(default=None, alias="extraHosts")
    network_mode: str | None = Field(default=None, alias="networkMode")
    volumes: list[str] | None = Field(
        default=None,
        description="host:container[:mode] binds, as Kestra's (which needs volume-enabled).",
    )
    pull_policy: PullPolicy = Field(default=PullPolicy.ALWAYS, alias="pullPolicy")
    device_requests: list[Any] | None = Field(default=None, alias="deviceRequests")
    cpu: Cpu | None = None
    memory: Memory | None = None
    shm_size: str | int | None = Field(default=None, alias="shmSize")
    file_handling_strategy: FileHandlingStrategy = Field(
        default=FileHandlingStrategy.VOLUME, alias="fileHandlingStrategy"
    )
    delete: bool = True

    @field_validator("config")
    @classmethod
    def _config(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("config is not supported by Squall's Docker runner; use credentials")
        return value

    @field_validator("entry_point")
    @classmethod
    def _entry_point(cls, value: list[str] | None) -> list[str] | None:
        if value not in (None, [], [""]):
            raise ValueError(
                'only Kestra\'s default [""] is supported: '
                "the command is Squall's wrapper, which an entry point would bypass"
            )
        return value

    @field_validator("device_requests")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        if value:
            raise ValueError("deviceRequests is not supported by Squall's Docker runner")
        return value

    @field_validator("shm_size")
    @classmethod
    def _shm(cls, value: str | int | None) -> str | int | None:
        if value is not None and parse_bytes(value) <= 0:
            raise ValueError("shmSize must be greater than 0")
        return value

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, value: list[str] | None) -> list[str] | None:
        for bind in value or ():
            parts = bind.split(":")
            if len(parts) not in (2, 3) or not parts[1].startswith("/") or not parts[0]:
                raise ValueError(f"{bind!r} is not host:/container[:mode]")
            if parts[1].rstrip("/") == "/squall" or parts[1].startswith("/squall/"):
                raise ValueError(f"{bind!r}: /squall is the job's own directory")
        return value

    @field_validator("extra_hosts")
    @classmethod
    def _hosts(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or ():
            if ":" not in entry:
                raise ValueError(f"{entry!r} is not host:ip")
        return value
