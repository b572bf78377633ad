"""secret('NAME') backends: Kestra's SECRET_ variables, a local file, Secrets Manager and SSM on moto."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.secrets import SecretChain, SecretError, check_name, open_chain
from control_plane.secrets.aws import ParameterStoreSecrets, SecretsManagerSecrets
from control_plane.secrets.env import EnvSecrets
from control_plane.secrets.file import FileSecrets


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_env_backend_reads_kestras_base64_convention() -> None:
    env = EnvSecrets({"SECRET_DB_PASSWORD": _b64("s3cr3t\nline two"), "SECRET_BAD": "not base64!"})
    assert env.get("DB_PASSWORD") == "s3cr3t\nline two"
    assert env.get("MISSING") is None
    with pytest.raises(SecretError, match="SECRET_BAD is not base64"):
        env.get("BAD")


def _secrets_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_file_backend_reads_a_private_yaml_map_and_picks_up_edits(tmp_path: Path) -> None:
    path = _secrets_file(tmp_path / "secrets.yaml", "DB: s3cr3t\nPORT: 5432\nKEY: |\n  a\n  b\n")
    backend = FileSecrets(path)
    assert backend.get("DB") == "s3cr3t"
    assert backend.get("PORT") == "5432"
    assert backend.get("KEY") == "a\nb\n"
    assert backend.get("NOPE") is None
    path.write_text("DB: rotated-value\n")
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))  # a distinct mtime, whatever the clock's grain
    assert backend.get("DB") == "rotated-value"
    assert backend.get("PORT") is None


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ("DB: x\n", 0o644, "can be read by others"),
        ("DB: [1, 2]\n", 0o600, "DB: a secret is text"),
        ("- a\n- b\n", 0o600, "expected a map"),
        ("DB: x\nDB: [\n", 0o600, "not valid YAML"),
        ("'bad name!': x\n", 0o600, "invalid secret name"),
    ],
)
def test_file_backend_refuses_bad_files_naming_them(
    tmp_path: Path, text: str, mode: int, message: str
) -> None:
    path = _secrets_file(tmp_path / "secrets.yaml", text, mode)
    with pytest.raises(SecretError, match=message) as caught:
        FileSecrets(path)
    assert str(path) in str(caught.value)


def test_a_missing_secrets_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match=r"nope\.yaml"):
        FileSecrets(tmp_path / "nope.yaml")


class _Fixed:
    def __init__(self, name: str, values: dict[str, str], fail: bool = False) -> None:
        self.name = name
        self.values = values
        self.fail = fail
        self.calls = 0

    def get(self, name: str) -> str | None:
        self.calls += 1
        if self.fail:
            raise SecretError(f"{self.name}: AccessDenied")
        return self.values.get(name)

    def where(self, name: str) -> str:
        return f"{self.name}:{name}"


def test_chain_asks_in_order_caches_and_remembers_what_it_revealed() -> None:
    now = [0.0]
    first, second = _Fixed("a", {"X": "from-a"}), _Fixed("b", {"X": "from-b", "Y": "from-b"})
    chain = SecretChain([first, second], ttl=60, clock=lambda: now[0])
    assert chain.get("X") == "from-a"
    assert chain.get("Y") == "from-b"
    assert chain.get("X") == "from-a"
    assert first.calls == 2  # X once (cached after), Y once
    now[0] = 61.0
    chain.get("X")
    assert first.calls == 3  # the cache expired
    assert chain.revealed() == {"from-a", "from-b"}
    with pytest.raises(SecretError, match=r"secret 'Z' not found \(looked in: a:Z; b:Z\)"):
        chain.get("Z")
    calls = first.calls
    with pytest.raises(SecretError, match="not found"):
        chain.get("Z")  # a miss is cached too: the backends are not asked again within the ttl
    assert first.calls == calls
    now[0] = 200.0
    with pytest.raises(SecretError, match="not found"):
        chain.get("Z")
    assert first.calls == calls + 1


def test_a_failing_backend_stops_the_lookup() -> None:
    chain = SecretChain([_Fixed("down", {}, fail=True), _Fixed("later", {"X": "wrong-source"})])
    with pytest.raises(SecretError, match="AccessDenied"):
        chain.get("X")


@pytest.mark.parametrize("name", ["", "a b", "../x", "$(x)", "x" * 300, 3])
def test_secret_names_are_checked(name: Any) -> None:
    with pytest.raises(SecretError, match="invalid secret name"):
        check_name(name)


def test_open_chain_from_settings(tmp_path: Path) -> None:
    path = _secrets_file(tmp_path / "s.yaml", "A: 1\n")
    assert [b.name for b in open_chain().backends] == ["env"]
    assert [b.name for b in open_chain(file=str(path)).backends] == ["env", "file"]
    assert [b.name for b in open_chain(["ssm", "env"]).backends] == ["ssm", "env"]
    with pytest.raises(SecretError, match="unknown secret backend vault"):
        open_chain(["vault"])
    with pytest.raises(SecretError, match="'file' is not among"):
        open_chain(["env"], file=str(path))
    with pytest.raises(SecretError, match="needs a file"):
        open_chain(["file"])


# ---------------------------------------------------------------- AWS, on moto in server mode


@pytest.fixture
def aws(moto_server: str) -> Iterator[dict[str, Any]]:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    clients = {
        "secretsmanager": session.client("secretsmanager", endpoint_url=moto_server),
        "ssm": session.client("ssm", endpoint_url=moto_server),
    }
    yield clients
    for client in clients.values():
        client.close()


def test_secrets_manager_and_parameter_store_on_moto(aws: dict[str, Any]) -> None:
    aws["secretsmanager"].create_secret(Name="squall/DB_PASSWORD", SecretString="sm-s3cr3t")
    aws["secretsmanager"].create_secret(Name="squall/BLOB", SecretBinary=b"binary-s3cr3t")
    aws["ssm"].put_parameter(Name="/squall/API_KEY", Value="ssm-s3cr3t", Type="SecureString", Overwrite=True)
    manager = SecretsManagerSecrets(client=aws["secretsmanager"])
    store = ParameterStoreSecrets(client=aws["ssm"])
    assert manager.get("DB_PASSWORD") == "sm-s3cr3t"
    assert manager.get("BLOB") == "binary-s3cr3t"
    assert manager.get("API_KEY") is None
    assert store.get("API_KEY") == "ssm-s3cr3t"
    assert store.get("DB_PASSWORD") is None
    chain = SecretChain([EnvSecrets({}), manager, store])
    assert chain.get("API_KEY") == "ssm-s3cr3t"
    with pytest.raises(SecretError, match="Secrets Manager squall/NOPE; SSM parameter /squall/NOPE"):
        chain.get("NOPE")


def test_an_unreachable_aws_backend_is_an_error_not_a_miss() -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "secretsmanager",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(SecretError, match="Secrets Manager secret squall/X"):
        SecretsManagerSecrets(client=client).get("X")
    client.close()
