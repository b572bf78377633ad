"""runners/docker/options.py: Kestra's Docker task runner properties, and docs/runners/docker.md's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.flows.aliases import runner_name
from runners.base import RunnerOptionsError, validate_options
from runners.docker import DockerOptions, DockerRunner, container_name
from runners.docker import options as options_module
from runners.docker.options import parse_bytes
from runners.docker.runner import _host_config, _split_image
from tests.unit.runner_docs import check_options_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "runners" / "docker.md"


def test_the_doc_lists_every_option_in_order_with_its_default() -> None:
    check_options_table(DOC, DockerOptions, options_module, kestra_until="), so a Kestra flow")


@pytest.mark.parametrize(
    "kestra_type",
    [
        "io.kestra.plugin.scripts.runner.docker.Docker",
        "io.kestra.plugin.scripts.runner.docker.DockerTaskRunner",
        "squall.runner.Docker",
    ],
)
def test_kestra_names_reach_the_docker_runner(kestra_type: str) -> None:
    assert runner_name(kestra_type) == "docker"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512Mb", 512 * 2**20), ("1g", 2**30), ("1GiB", 2**30), ("1024", 1024), ("1.5k", 1536), (7, 7)],
)
def test_sizes_read_as_kestra_reads_them(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1m", "12 parsecs", ""])
def test_bad_sizes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_bytes(bad)


def test_a_kestra_block_validates_and_maps_to_docker_host_config(tmp_path: Path) -> None:
    options = validate_options(
        DockerRunner,
        {
            "pullPolicy": "IF_NOT_PRESENT",
            "cpu": {"cpus": 2},
            "memory": {"memory": "1g", "memorySwap": "-1", "memorySwappiness": 10, "oomKillDisable": False},
            "volumes": ["/data:/data:ro"],
            "networkMode": "host",
            "fileHandlingStrategy": "MOUNT",
        },
    )
    assert isinstance(options, DockerOptions)
    config = _host_config(options, tmp_path)
    assert config["binds"] == [f"{tmp_path}:/squall:rw", "/data:/data:ro"]
    assert config["nano_cpus"] == 2_000_000_000
    assert (config["mem_limit"], config["memswap_limit"], config["mem_swappiness"]) == (2**30, -1, 10)
    assert config["network_mode"] == "host" and config["oom_kill_disable"] is False


@pytest.mark.parametrize(
    ("block", "named"),
    [
        ({"config": {"auths": {}}}, "taskRunner.config"),
        ({"entryPoint": ["python"]}, "taskRunner.entryPoint"),
        ({"memory": {"memorySwappiness": 101}}, "taskRunner.memory.memorySwappiness"),
        ({"shmSize": "0"}, "taskRunner.shmSize"),
        ({"extraHosts": ["no-ip"]}, "taskRunner.extraHosts"),
        ({"volumes": ["relative"]}, "taskRunner.volumes"),
        ({"wait": True}, "taskRunner.wait"),
    ],
)
def test_what_squall_cannot_honour_is_refused_naming_it(block: dict[str, object], named: str) -> None:
    with pytest.raises(RunnerOptionsError) as caught:
        validate_options(DockerRunner, block)
    assert named in str(caught.value)


def test_container_names_are_valid_and_deterministic() -> None:
    assert container_name("etl-extract-3k2j4h5a") == "etl-extract-3k2j4h5a"
    odd = container_name("flow/task:1 é")
    assert odd == container_name("flow/task:1 é") and odd != container_name("flow/task:2 é")
    assert all(c.isalnum() or c in "_.-" for c in odd)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("alpine", ("alpine", "latest")),
        ("python:3.12-slim", ("python", "3.12-slim")),
        ("localhost:5000/team/app", ("localhost:5000/team/app", "latest")),
        ("localhost:5000/team/app:2", ("localhost:5000/team/app", "2")),
        ("alpine@sha256:abc", ("alpine", "sha256:abc")),
    ],
)
def test_images_split_for_the_pull(image: str, expected: tuple[str, str]) -> None:
    assert _split_image(image) == expected
