"""HTTP pushes into the ``events`` function: Pub/Sub with OIDC ID tokens, signed webhooks.

Everything is real: a freshly generated RSA key signs real ID tokens with PyJWT and
cryptography (an implementation independent of the verifier's pure-Python ``rsa``), a local
HTTP server publishes its public half as a JWKS (with ``Cache-Control``, counting fetches) at
the URL the deployment is configured with, webhook secrets are read from a secrets file
through the deployment's ``secret()`` chain, and the handler runs over its own runtime as in
Lambda (SQLite store, virtual clock, the simulated compute of the handler tests). One test runs
the handler in a separate Python process configured only by its environment, where cryptography
cannot be imported, as in the Lambda zip.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from control_plane.engine.states import State
from control_plane.handlers import events
from control_plane.handlers.container import install
from control_plane.ingress import PUBSUB_KEY
from control_plane.ingress.pubsub import MIN_REFRESH, KeySet, google_keys
from control_plane.ingress.webhook import TOLERANCE, sign
from control_plane.runtime import Runtime, load_settings, open_runtime
from control_plane.service.clock import VirtualClock
from control_plane.store.sqlite import SqliteStore
from runners.testing.simulated import SimulatedRunner
from tests.integration.api_events import LambdaContext, event
from tests.integration.lambdas import T0, TIMINGS

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "https://squall.example.com/events/pubsub"
PUSHER = "pubsub-push@squall-project.iam.gserviceaccount.com"
WEBHOOK_KEY = "k8s.jobs"

SHELL = """
id: pushed
namespace: squall.ingress
tasks:
  - id: work
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - echo hello
"""


class PushedRunner(SimulatedRunner):
    """The simulated compute, reporting through Pub/Sub and a signed webhook as well.

    A Google or Kubernetes runner declares its own keys the same way; the job's state change
    (the simulated event document) travels as the Pub/Sub message's data or the webhook body.
    """

    event_keys: ClassVar[frozenset[str]] = frozenset({"squall.simulated", PUBSUB_KEY, WEBHOOK_KEY})


class Issuer:
    """Google's side: an RSA key, its JWKS served over HTTP, and ID tokens it signs."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "key-1"
        self.max_age = 3600
        self.fetches = 0
        self.published: list[tuple[str, rsa.RSAPrivateKey]] = [(self.kid, self.key)]
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                keys = []
                for kid, key in issuer.published:
                    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
                    keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
                body = json.dumps({"keys": keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", f"public, max-age={issuer.max_age}, must-revalidate")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/v3/certs"

    def token(
        self,
        *,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        now: float | None = None,
        lifetime: int = 3600,
        **claims: Any,
    ) -> str:
        issued = int(time.time() if now is None else now)
        payload = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "azp": "1234567890",
            "sub": "1234567890",
            "email": PUSHER,
            "email_verified": True,
            "iat": issued,
            "exp": issued + lifetime,
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})

    def forged(self, header: dict[str, Any], sign: Any, **claims: Any) -> str:
        """A token with this header whose signature is ``sign(signing input)``, claims as token()'s."""
        genuine = jwt.decode(self.token(**claims), options={"verify_signature": False})
        segments = [
            json.dumps(part, separators=(",", ":")).encode()
            for part in ({"kid": self.kid, **header}, genuine)
        ]
        signing_input = b".".join(_b64(part) for part in segments)
        return (signing_input + b"." + _b64(sign(signing_input))).decode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    server = Issuer()
    yield server
    server.close()


def pubsub_push(data: dict[str, Any] | bytes | None, token: str | None, **attributes: str) -> dict[str, Any]:
    """The request a push subscription sends, as API Gateway hands it to the function."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    message: dict[str, Any] = {
        "attributes": attributes,
        "messageId": "9876543210",
        "publishTime": "2026-03-01T12:00:00Z",
    }
    if data is not None:
        message["data"] = base64.b64encode(raw).decode()
    envelope = {"message": message, "subscription": "projects/squall-project/subscriptions/squall-events"}
    return event("POST", "/events/pubsub", json_body=envelope, token=token)


def webhook_push(key: str, body: Any, secret: str | None, *, at: float | None = None) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    headers = (
        {}
        if secret is None
        else {"X-Squall-Signature": sign(secret, raw, int(time.time() if at is None else at))}
    )
    return event(
        "POST", f"/events/webhook/{key}", body=raw.decode(), content_type="application/json", headers=headers
    )


class Deployment:
    """One events 'container' over a SQLite store, configured as the Terraform module would."""

    def __init__(
        self, tmp_path: Path, issuer: Issuer, *, runner: SimulatedRunner | None = None, **settings: Any
    ) -> None:
        self.clock = VirtualClock(T0)
        self.compute = runner or PushedRunner()
        secrets = tmp_path / "secrets.yaml"
        secrets.write_text("WEBHOOK_CURRENT: s3cr3t-current\nWEBHOOK_NEXT: s3cr3t-next\n")
        secrets.chmod(0o600)
        options: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"),
            "pubsub_audience": AUDIENCE,
            "pubsub_service_account": PUSHER,
            "pubsub_certs_url": issuer.url,
            "webhook_secrets": "WEBHOOK_CURRENT",
            "secrets_file": str(secrets),
            **TIMINGS,
            **settings,
        }
        self.settings = load_settings({}, **options)
        self.rt: Runtime = open_runtime(
            self.settings,
            clock=self.clock,
            store=SqliteStore(tmp_path / "squall.db"),
            runners={"process": self.compute},
        )

    def start(self) -> tuple[str, str]:
        """An execution whose one job was submitted: (execution id, job name)."""
        record = self.rt.service.deploy(SHELL, "pushed.yaml")
        execution = self.rt.service.start(record.namespace, record.id)
        self.rt.service.flush()
        (name,) = [
            n
            for n in self.compute.names()
            if self.compute.spec(n).labels.get("squall.io/execution") == execution.id
        ]
        return execution.id, name

    def invoke(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One invocation of the events handler, as Lambda makes it; (status, JSON body)."""
        install(self.rt)
        try:
            answer = events.handler(payload, LambdaContext(function_name="squall-events"))
        finally:
            install(None)
        return answer["statusCode"], json.loads(answer["body"])

    def state(self, execution_id: str) -> State:
        return self.rt.store.get_execution(execution_id).state

    def close(self) -> None:
        self.rt.close()


@pytest.fixture
def deployment(tmp_path: Path, issuer: Issuer) -> Iterator[Deployment]:
    issuer.fetches = 0
    d = Deployment(tmp_path, issuer)
    yield d
    d.close()


# ---------------------------------------------------------------------------- Pub/Sub


def test_a_verified_pubsub_push_completes_the_task_and_the_keys_are_fetched_once(
    deployment: Deployment, issuer: Issuer
) -> None:
    first, first_job = deployment.start()
    second, second_job = deployment.start()
    for name in (first_job, second_job):
        deployment.compute.finish(name, lines=["pushed"])

    for execution_id, name in ((first, first_job), (second, second_job)):
        status, body = deployment.invoke(
            pubsub_push(deployment.compute.event(name), issuer.token(), type="JOB_STATE")
        )
        assert (status, body) == (200, {"applied": 1, "received": 1})
        assert deployment.state(execution_id) is State.SUCCESS
    assert issuer.fetches == 1  # cached for the certs' max-age, not fetched per request


@pytest.mark.parametrize(
    ("token", "status", "says"),
    [
        (lambda i: None, 401, "missing Authorization"),
        (lambda i: "not-a-jwt", 401, "not a Bearer"),
        (
            lambda i: i.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            401,
            "signature",
        ),
        (lambda i: i.token(kid="someone-elses-key"), 401, "not signed by a Google key"),
        (lambda i: i.token(now=time.time() - 7200), 401, "expired"),
        (lambda i: i.token(now=time.time() + 3600), 401, "future"),
        (lambda i: i.token(exp=None), 401, "'exp'"),
        (lambda i: i.token(aud="https://elsewhere.example.com/push"), 403, "audience"),
        (lambda i: i.token(iss="https://evil.example.com"), 403, "not issued by Google"),
        (lambda i: i.token(email="intruder@other-project.iam.gserviceaccount.com"), 403, "service account"),
        (lambda i: i.token(email_verified=False), 403, "service account"),
    ],
    ids=[
        "missing-header",
        "not-bearer",
        "bad-signature",
        "unknown-kid",
        "expired",
        "issued-in-the-future",
        "no-exp",
        "wrong-audience",
        "wrong-issuer",
        "wrong-email",
        "email-unverified",
    ],
)
def test_a_pubsub_push_without_a_valid_token_is_refused_and_applies_nothing(
    deployment: Deployment, issuer: Issuer, token: Any, status: int, says: str
) -> None:
    execution_id, name = deployment.start()
    deployment.compute.finish(name)
    version = deployment.rt.store.get_execution(execution_id).version
    payload = pubsub_push(deployment.compute.event(name), token(issuer))
    if token(issuer) == "not-a-jwt":
        payload["headers"]["authorization"] = "Basic dXNlcjpwYXNz"
    answer_status, body = deployment.invoke(payload)

    assert answer_status == status and says in body["message"], body
    assert deployment.rt.store.get_execution(execution_id).version == version
    assert deployment.state(execution_id) is State.RUNNING


def _pkcs1(issuer: Issuer, hash_: hashes.HashAlgorithm) -> Any:
    return lambda data: issuer.key.sign(data, padding.PKCS1v15(), hash_)


def _public_pem(issuer: Issuer) -> bytes:
    return issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("token", "says"),
    [
        # The genuine key, another algorithm named in the header: the header does not choose.
        (lambda i: jwt.encode(_claims(i), i.key, algorithm="RS512", headers={"kid": i.kid}), "RS256"),
        (lambda i: jwt.encode(_claims(i), i.key, algorithm="PS256", headers={"kid": i.kid}), "RS256"),
        # The classic confusion: HMAC keyed with the public key everyone can fetch.
        (
            lambda i: i.forged(
                {"alg": "HS256", "typ": "JWT"}, lambda data: hmac.digest(_public_pem(i), data, hashlib.sha256)
            ),
            "RS256",
        ),
        (lambda i: i.forged({"alg": "none", "typ": "JWT"}, lambda data: b""), "RS256"),
        # RS256 in the header, a PKCS#1 v1.5 signature by the genuine key over another hash inside.
        (lambda i: i.forged({"alg": "RS256", "typ": "JWT"}, _pkcs1(i, hashes.SHA1())), "signature"),
        (lambda i: i.forged({"alg": "RS256", "typ": "JWT"}, _pkcs1(i, hashes.SHA512())), "signature"),
        (lambda i: i.forged({"alg": "RS256", "typ": "JWT"}, _pkcs1(i, hashes.SHA256())), None),
    ],
    ids=[
        "rs512",
        "ps256",
        "hs256-with-the-public-key",
        "alg-none",
        "sha1-in-pkcs1",
        "sha512-in-pkcs1",
        "control",
    ],
)
def test_only_rs256_with_sha256_verifies_whatever_the_token_says(
    deployment: Deployment, issuer: Issuer, token: Any, says: str | None
) -> None:
    execution_id, name = deployment.start()
    deployment.compute.finish(name)
    status, body = deployment.invoke(pubsub_push(deployment.compute.event(name), token(issuer)))
    if says is None:  # the forging helper itself makes tokens that verify when they are genuine
        assert status == 200 and deployment.state(execution_id) is State.SUCCESS
        return
    assert status == 401 and says in body["message"], body
    assert deployment.state(execution_id) is State.RUNNING


def _claims(issuer: Issuer) -> dict[str, Any]:
    return dict(jwt.decode(issuer.token(), options={"verify_signature": False}))


def test_only_rsa_signing_keys_for_rs256_are_taken_from_the_jwks(issuer: Issuer) -> None:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(issuer.key.public_key()))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    document = {
        "keys": [
            {**jwk, "kid": "plain"},  # neither alg nor use: an RS256 signing key
            {**jwk, "kid": "rs256", "alg": "RS256", "use": "sig"},
            {**jwk, "kid": "rs512", "alg": "RS512"},
            {**jwk, "kid": "enc", "use": "enc"},
            {**jwk, "kid": "ec", "kty": "EC"},
            {**jwk, "kid": "padded", "n": jwk["n"] + "=="},
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(small.public_key())), "kid": "small"},
            {**jwk},  # no kid
            "not a key",
        ]
    }
    keys = google_keys(document)
    assert sorted(keys) == ["plain", "rs256"]
    assert keys["plain"].algorithm_name == "RS256" and keys["plain"].key_id == "plain"
    assert keys["plain"].key.n == issuer.key.public_key().public_numbers().n
    for unusable in ({"keys": []}, {"keys": document["keys"][2:]}, {"nokeys": 1}, ["keys"]):
        with pytest.raises(ValueError):
            google_keys(unusable)


def test_the_issuer_may_be_written_without_its_scheme(deployment: Deployment, issuer: Issuer) -> None:
    execution_id, name = deployment.start()
    deployment.compute.finish(name)
    status, _ = deployment.invoke(
        pubsub_push(deployment.compute.event(name), issuer.token(iss="accounts.google.com"))
    )
    assert status == 200 and deployment.state(execution_id) is State.SUCCESS


def test_a_pubsub_push_no_runner_understands_is_acknowledged_and_dropped(
    tmp_path: Path, issuer: Issuer
) -> None:
    # SimulatedRunner declares only its EventBridge source: nobody takes gcp.pubsub here, and a
    # retry could never change that, so Pub/Sub must stop redelivering (2xx), and it is logged.
    deployment = Deployment(tmp_path, issuer, runner=SimulatedRunner())
    try:
        execution_id, name = deployment.start()
        deployment.compute.finish(name)
        status, body = deployment.invoke(pubsub_push(deployment.compute.event(name), issuer.token()))
        assert (status, body) == (200, {"applied": 0, "received": 1})
        assert deployment.state(execution_id) is State.RUNNING
    finally:
        deployment.close()


@pytest.mark.parametrize(
    "payload",
    [
        lambda: event("POST", "/events/pubsub", body="{not json", content_type="application/json"),
        lambda: event("POST", "/events/pubsub", json_body={"subscription": "projects/p/subscriptions/s"}),
        lambda: event("POST", "/events/pubsub", json_body={"message": {"data": "%%% not base64"}}),
        lambda: event("POST", "/events/pubsub", json_body={"message": {"attributes": {"n": 3}}}),
    ],
    ids=["not-json", "no-message", "data-not-base64", "attribute-not-a-string"],
)
def test_a_malformed_pubsub_body_with_a_valid_token_is_400(
    deployment: Deployment, issuer: Issuer, payload: Any
) -> None:
    request = payload()
    request["headers"]["authorization"] = f"Bearer {issuer.token()}"
    status, body = deployment.invoke(request)
    assert status == 400, body


def test_a_pubsub_message_delivered_twice_is_applied_once(deployment: Deployment, issuer: Issuer) -> None:
    execution_id, name = deployment.start()
    deployment.compute.finish(name, lines=["once"])
    push = pubsub_push(deployment.compute.event(name), issuer.token())
    assert deployment.invoke(push) == (200, {"applied": 1, "received": 1})
    version = deployment.rt.store.get_execution(execution_id).version

    assert deployment.invoke(push) == (200, {"applied": 0, "received": 1})  # Pub/Sub redelivered it
    assert deployment.rt.store.get_execution(execution_id).version == version
    logs = [
        line.message for line in deployment.rt.store.read_logs(execution_id).items if line.task_id == "work"
    ]
    assert logs == ["once"]


def test_a_push_the_store_cannot_take_is_503_so_pubsub_retries(tmp_path: Path, issuer: Issuer) -> None:
    import boto3
    from botocore.config import Config

    from control_plane.store.dynamodb import DynamoDBStore

    deployment = Deployment(tmp_path, issuer)
    try:
        execution_id, name = deployment.start()
        deployment.compute.finish(name)
        push = pubsub_push(deployment.compute.event(name), issuer.token())
        dead = boto3.client(  # nothing listens there: every call fails to connect
            "dynamodb",
            endpoint_url="http://127.0.0.1:9",
            region_name="eu-west-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=1),
        )
        down = open_runtime(
            deployment.settings,
            clock=deployment.clock,
            store=DynamoDBStore("squall", client=dead),
            runners={"process": deployment.compute},
        )
        install(down)
        try:
            answer = events.handler(push, LambdaContext())
        finally:
            install(None)
            down.close()
        assert answer["statusCode"] == 503 and "retry" in json.loads(answer["body"])["message"]
        assert deployment.invoke(push)[0] == 200  # the redelivery, once the store is back
        assert deployment.state(execution_id) is State.SUCCESS
    finally:
        deployment.close()


def test_the_key_cache_follows_max_age_and_refetches_for_a_new_key_at_most_every_min_refresh(
    issuer: Issuer,
) -> None:
    now = [0.0]
    issuer.fetches, issuer.max_age = 0, 600
    keys = KeySet(issuer.url, clock=lambda: now[0])
    assert keys.key(issuer.kid) is not None and issuer.fetches == 1
    now[0] = 599
    assert keys.key(issuer.kid) is not None and issuer.fetches == 1
    now[0] = 601  # max-age passed
    assert keys.key(issuer.kid) is not None and issuer.fetches == 2

    # Google rotates: a token names a key the cache lacks.
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.published.append(("key-2", rotated))
    try:
        assert keys.key("key-2") is None  # fetched 0 s ago: a forged kid cannot force a fetch
        assert issuer.fetches == 2
        now[0] += MIN_REFRESH
        assert keys.key("key-2") is not None and issuer.fetches == 3
        assert keys.key("forged") is None and issuer.fetches == 3
    finally:
        issuer.published.pop()
        issuer.max_age = 3600


def test_unreachable_keys_are_503_so_the_push_is_redelivered(tmp_path: Path, issuer: Issuer) -> None:
    deployment = Deployment(tmp_path, issuer, pubsub_certs_url="http://127.0.0.1:9/certs")
    try:
        execution_id, name = deployment.start()
        deployment.compute.finish(name)
        status, body = deployment.invoke(pubsub_push(deployment.compute.event(name), issuer.token()))
        assert status == 503 and "signing keys" in body["message"]
        assert deployment.state(execution_id) is State.RUNNING
    finally:
        deployment.close()


# ---------------------------------------------------------------------------- webhooks


def test_a_signed_webhook_completes_the_task(deployment: Deployment) -> None:
    execution_id, name = deployment.start()
    deployment.compute.finish(name)
    status, body = deployment.invoke(
        webhook_push(WEBHOOK_KEY, deployment.compute.event(name), "s3cr3t-current")
    )
    assert (status, body) == (200, {"applied": 1, "received": 1})
    assert deployment.state(execution_id) is State.SUCCESS


def test_a_webhook_array_is_one_event_per_element(deployment: Deployment) -> None:
    runs = [deployment.start() for _ in range(2)]
    for _, name in runs:
        deployment.compute.finish(name)
    batch = [deployment.compute.event(name) for _, name in runs]
    assert deployment.invoke(webhook_push(WEBHOOK_KEY, batch, "s3cr3t-current")) == (
        200,
        {"applied": 2, "received": 2},
    )


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        (lambda p: p["headers"].pop("x-squall-signature"), "missing X-Squall-Signature"),
        (lambda p: p["headers"].update({"x-squall-signature": "sha256=abc"}), "malformed"),
        (lambda p: p.update(body=p["body"].replace("SUCCEEDED", "FAILED")), "does not match"),
    ],
    ids=["missing", "malformed", "body-changed"],
)
def test_a_webhook_whose_signature_fails_is_401(deployment: Deployment, tamper: Any, says: str) -> None:
    execution_id, name = deployment.start()
    deployment.compute.finish(name)
    payload = webhook_push(WEBHOOK_KEY, deployment.compute.event(name), "s3cr3t-current")
    tamper(payload)
    status, body = deployment.invoke(payload)
    assert status == 401 and says in body["message"], body
    assert "s3cr3t" not in json.dumps(body)
    assert deployment.state(execution_id) is State.RUNNING


def test_a_webhook_signed_with_a_wrong_secret_is_401(deployment: Deployment) -> None:
    execution_id, name = deployment.start()
    deployment.compute.finish(name)
    status, body = deployment.invoke(
        webhook_push(WEBHOOK_KEY, deployment.compute.event(name), "s3cr3t-curren")
    )
    assert status == 401 and "does not match" in body["message"]
    assert deployment.state(execution_id) is State.RUNNING


@pytest.mark.parametrize("offset", [-(TOLERANCE + 5), TOLERANCE + 5], ids=["replayed", "from-the-future"])
def test_a_webhook_outside_the_replay_window_is_401(deployment: Deployment, offset: int) -> None:
    execution_id, name = deployment.start()
    deployment.compute.finish(name)
    payload = webhook_push(
        WEBHOOK_KEY, deployment.compute.event(name), "s3cr3t-current", at=time.time() + offset
    )
    status, body = deployment.invoke(payload)
    assert status == 401 and "replay" in body["message"]
    assert deployment.state(execution_id) is State.RUNNING


def test_during_a_rotation_both_secrets_are_accepted(tmp_path: Path, issuer: Issuer) -> None:
    deployment = Deployment(tmp_path, issuer, webhook_secrets="WEBHOOK_NEXT,WEBHOOK_CURRENT")
    try:
        for secret in ("s3cr3t-current", "s3cr3t-next"):
            execution_id, name = deployment.start()
            deployment.compute.finish(name)
            assert (
                deployment.invoke(webhook_push(WEBHOOK_KEY, deployment.compute.event(name), secret))[0] == 200
            )
            assert deployment.state(execution_id) is State.SUCCESS
        # A sender holding both signs with both: one v1 entry each.
        execution_id, name = deployment.start()
        deployment.compute.finish(name)
        payload = webhook_push(WEBHOOK_KEY, deployment.compute.event(name), None)
        stamp = int(time.time())
        raw = payload["body"].encode()
        old, new = sign("s3cr3t-old", raw, stamp), sign("s3cr3t-next", raw, stamp)
        payload["headers"]["x-squall-signature"] = f"{old},{new.split(',')[1]}"
        assert deployment.invoke(payload) == (200, {"applied": 1, "received": 1})
    finally:
        deployment.close()


def test_a_webhook_key_no_runner_declares_is_404_and_unsigned_callers_learn_nothing(
    deployment: Deployment,
) -> None:
    execution_id, name = deployment.start()
    deployment.compute.finish(name)
    document = deployment.compute.event(name)
    status, body = deployment.invoke(webhook_push("azure.eventgrid", document, "s3cr3t-current"))
    assert status == 404 and "azure.eventgrid" in body["message"]
    assert deployment.invoke(webhook_push("azure.eventgrid", document, "wrong"))[0] == 401
    assert deployment.state(execution_id) is State.RUNNING


def test_a_signed_webhook_that_is_not_a_json_object_is_400(deployment: Deployment) -> None:
    assert deployment.invoke(webhook_push(WEBHOOK_KEY, "just a string", "s3cr3t-current"))[0] == 400
    assert deployment.invoke(webhook_push(WEBHOOK_KEY, [], "s3cr3t-current"))[0] == 400


def test_other_paths_and_methods_are_refused(deployment: Deployment) -> None:
    assert deployment.invoke(event("POST", "/events/other", json_body={}))[0] == 404
    assert deployment.invoke(event("GET", "/events/pubsub"))[0] == 405


def test_an_unconfigured_ingress_refuses_with_404(tmp_path: Path, issuer: Issuer) -> None:
    deployment = Deployment(
        tmp_path, issuer, pubsub_audience=None, pubsub_service_account=None, webhook_secrets=""
    )
    try:
        assert deployment.invoke(pubsub_push({"x": 1}, issuer.token()))[0] == 404
        assert deployment.invoke(webhook_push(WEBHOOK_KEY, {"x": 1}, "s3cr3t-current"))[0] == 404
    finally:
        deployment.close()


def test_eventbridge_deliveries_are_unchanged(deployment: Deployment) -> None:
    execution_id, name = deployment.start()
    deployment.compute.finish(name)
    install(deployment.rt)
    try:
        assert events.handler(deployment.compute.event(name), None) == {"applied": 1}
    finally:
        install(None)
    assert deployment.state(execution_id) is State.SUCCESS


# ---------------------------------------------------------------------------- a separate process

_CONTAINER = """
import json, sys
sys.modules["cryptography"] = None  # as in the Lambda zip: the verifier must not need it
from control_plane.handlers import events
for line in sys.stdin:
    answer = events.handler(json.loads(line), None)
    print(json.dumps({"status": answer["statusCode"], "body": json.loads(answer["body"]),
                      "jwt_loaded": "jwt" in sys.modules and "rsa" in sys.modules}), flush=True)
"""


def test_the_handler_in_its_own_process_configured_by_its_environment(tmp_path: Path, issuer: Issuer) -> None:
    """A Lambda container: the runtime built from SQUALL_* variables, secrets from SECRET_* ones.

    Its runners are the installed ones: ``aws-batch`` declares ``aws.batch`` and none declares
    ``gcp.pubsub``, so a verified push is acknowledged and dropped; the sender checks hold alike.
    """
    batch_event = {"source": "aws.batch", "detail-type": "Batch Job State Change", "detail": {"jobName": "x"}}
    requests = [
        webhook_push("aws.batch", batch_event, "rotated-in"),
        webhook_push("aws.batch", batch_event, "forged"),
        webhook_push("gcp.unknown", batch_event, "rotated-in"),
        pubsub_push({"job": "x"}, issuer.token()),
        pubsub_push({"job": "x"}, issuer.token(aud="https://elsewhere.example.com")),
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "SQUALL_STORE": "sqlite",
        "SQUALL_DB": str(tmp_path / "squall.db"),
        "SQUALL_DATA_DIR": str(tmp_path / "data"),
        "SQUALL_PUBSUB_AUDIENCE": AUDIENCE,
        "SQUALL_PUBSUB_SERVICE_ACCOUNT": PUSHER,
        "SQUALL_PUBSUB_CERTS_URL": issuer.url,
        "SQUALL_WEBHOOK_SECRETS": "WEBHOOK",
        "SECRET_WEBHOOK": base64.b64encode(b"rotated-in").decode(),
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
    }
    result = subprocess.run(
        [sys.executable, "-c", _CONTAINER],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["status"], a["body"].get("applied")) for a in answers] == [
        (200, 0),  # verified; an event about a job this deployment does not know: dropped
        (401, None),
        (404, None),
        (200, 0),  # verified; no installed runner takes gcp.pubsub: acknowledged, dropped
        (403, None),
    ]
    # PyJWT and rsa loaded with the first Pub/Sub push, not for the webhooks before it.
    assert [a["jwt_loaded"] for a in answers] == [False, False, False, True, True]
