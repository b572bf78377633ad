"""API Gateway HTTP API (payload 2.0) events, shaped like the ones AWS sends and powertools tests use.

Only what a test names changes; the rest is what a real request through a ``$default`` stage
carries (account, api id, domain, source ip, time), so the handler never sees an event that
API Gateway could not produce.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["JWT_AUTHORIZER", "LambdaContext", "event", "multipart_body"]

JWT_AUTHORIZER: dict[str, Any] = {
    "jwt": {
        "claims": {"sub": "user-1", "iss": "https://issuer.example.com", "scope": "squall/api"},
        "scopes": ["squall/api"],
    }
}


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that the handler and powertools read."""

    function_name: str = "squall-api"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:squall-api"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def event(
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: str | bytes | None = None,
    json_body: Any = None,
    content_type: str | None = None,
    token: str | None = None,
    base64_encoded: bool | None = None,
    authorizer: Mapping[str, Any] | None = None,
    request_id: str = "JKJaXmPLvHcESHA=",
) -> dict[str, Any]:
    """One request as API Gateway hands it to Lambda: lowercase headers, repeats comma-joined."""
    pairs = list(query.items()) if isinstance(query, Mapping) else list(query or [])
    raw_query = urlencode(pairs)
    all_headers = {
        "accept": "*/*",
        "host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "user-agent": "pytest",
        "x-amzn-trace-id": "Root=1-5e6722a7-cc56xmpl46db7ae02d4da47e",
        "x-forwarded-for": "205.255.255.176",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if json_body is not None:
        body = json.dumps(json_body)
        content_type = content_type or "application/json"
    if content_type is not None:
        all_headers["content-type"] = content_type
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    result: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "205.255.255.176",
                "userAgent": "pytest",
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Mar/2026:12:00:00 +0000",
            "timeEpoch": 1772366400000,
        },
        "isBase64Encoded": False,
    }
    if authorizer is not None:
        result["requestContext"]["authorizer"] = dict(authorizer)
    if pairs:
        joined: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        result["queryStringParameters"] = joined
    if body is not None:
        encode = isinstance(body, bytes) if base64_encoded is None else base64_encoded
        if encode:
            raw = body if isinstance(body, bytes) else body.encode()
            result["body"] = base64.b64encode(raw).decode()
            result["isBase64Encoded"] = True
        else:
            result["body"] = body if isinstance(body, str) else body.decode()
    return result


def multipart_body(
    fields: Mapping[str, str],
    files: Mapping[str, tuple[str, bytes]],
    boundary: str = "squallBoundary7MA4YWxk",
) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type, as a browser or curl -F sends it."""
    out = b""
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for name, (filename, content) in files.items():
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"
