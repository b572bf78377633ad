"""``io.kestra.plugin.core.http``: Request and Download, with httpx, bounded in time and size.

Properties and outputs are Kestra's (http/AbstractHttp.java, Request.java, Download.java,
HttpInterface.java). A response of 400 or more fails the task, as Micronaut's blocking client
does, unless ``allowFailed``; a transport error (refused, timeout) fails the attempt and the
task's ``retry`` decides what follows. ``readTimeout`` (Kestra's default 10 s) bounds the
whole exchange, ``connectTimeout`` the connection, ``readIdleTimeout`` each read; all of them
and the task's own ``timeout`` are cut to what is left of the handler's budget (a Lambda must
answer). ``maxContentLength`` (Kestra's default 10 MiB) bounds a Request's body; a Download
is bounded by it when set, else by :data:`MAX_DOWNLOAD_BYTES`, since the file is held in
memory before it is written to the deployment storage.

Not honoured, so refused when the flow is validated: ``encryptBody``, ``options.logLevel``,
``options.proxyType: SOCKS``. ``connectionPoolIdleTimeout`` is accepted: each request uses a
client of its own, closed after it, so no connection idles in a pool.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import httpx

from control_plane.flows.durations import parse_timedelta
from control_plane.levels import Level
from control_plane.tasks import TaskFailure

if TYPE_CHECKING:
    from control_plane.tasks import EffectContext, Handler

__all__ = ["DEFAULT_MAX_CONTENT", "DEFAULT_READ_TIMEOUT", "HANDLERS", "MAX_DOWNLOAD_BYTES"]

DEFAULT_READ_TIMEOUT = 10.0  # Micronaut's HttpClientConfiguration.DEFAULT_READ_TIMEOUT_SECONDS
DEFAULT_MAX_CONTENT = 10 * 1024 * 1024  # Micronaut's DEFAULT_MAX_CONTENT_LENGTH
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
_CHUNK = 64 * 1024


def _seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_timedelta(str(value)).total_seconds()
    except ValueError as exc:
        raise TaskFailure(f"property 'options.{name}': {exc}") from None


class _Exchange:
    """One request as Kestra builds it (AbstractHttp.request), and the limits it runs under."""

    def __init__(self, props: Mapping[str, Any], ctx: EffectContext, *, default_limit: int) -> None:
        self.ctx = ctx
        uri = props.get("uri")
        parts = urlsplit(str(uri or ""))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TaskFailure(f"property 'uri': {uri!r} is not an http:// or https:// URL")
        self.uri = str(uri)
        self.method = str(props.get("method") or "GET").upper()
        options: Mapping[str, Any] = props.get("options") or {}
        self.options = options
        limit = options.get("maxContentLength")
        self.limit = int(limit) if limit is not None else default_limit
        read = _seconds(options.get("readTimeout"), "readTimeout")
        self.read_timeout = DEFAULT_READ_TIMEOUT if read is None else read
        self.connect_timeout = _seconds(options.get("connectTimeout"), "connectTimeout")
        self.idle_timeout = _seconds(options.get("readIdleTimeout"), "readIdleTimeout")
        self.follow = options.get("followRedirects", True) is not False
        self.charset = str(options.get("defaultCharset") or "utf-8")
        ssl: Mapping[str, Any] = props.get("sslOptions") or {}
        self.verify = not ssl.get("insecureTrustAllCertificates")
        self.headers: dict[str, str] = {str(k): str(v) for k, v in (props.get("headers") or {}).items()}
        self.content: bytes | None = None
        self.data: dict[str, str] | None = None
        self.files: dict[str, tuple[str, bytes]] | None = None
        content_type = props.get("contentType")
        form = props.get("formData")
        if form is not None:
            self._form(form, content_type)
        elif props.get("body") is not None:
            self.content = str(props["body"]).encode(self.charset)
        if content_type is not None and not (form is not None and content_type == "multipart/form-data"):
            self.headers["Content-Type"] = str(content_type)
        user, password = options.get("basicAuthUser"), options.get("basicAuthPassword")
        self.auth = (str(user), str(password)) if user is not None and password is not None else None
        proxy = None
        if options.get("proxyType") == "HTTP" and options.get("proxyAddress"):
            credentials = ""
            if options.get("proxyUsername") is not None:
                credentials = f"{options['proxyUsername']}:{options.get('proxyPassword') or ''}@"
            proxy = f"http://{credentials}{options['proxyAddress']}:{options.get('proxyPort') or 80}"
        self.proxy = proxy

    def _form(self, form: Mapping[str, Any], content_type: Any) -> None:
        if content_type == "multipart/form-data":
            files: dict[str, tuple[str, bytes]] = {}
            data: dict[str, str] = {}
            for key, value in form.items():
                if isinstance(value, str) and value.startswith("kestra://"):
                    files[str(key)] = (value.rsplit("/", 1)[-1], self.ctx.storage.read(value))
                elif isinstance(value, Mapping) and "name" in value and "content" in value:
                    files[str(key)] = (str(value["name"]), self.ctx.storage.read(str(value["content"])))
                elif isinstance(value, str):
                    data[str(key)] = value
                else:
                    import json

                    data[str(key)] = json.dumps(value)
            self.files, self.data = files, data
        else:
            self.data = {str(k): v if isinstance(v, str) else str(v) for k, v in form.items()}

    def client(self) -> httpx.Client:
        budget = self.ctx.remaining()
        total = min(self.read_timeout, budget)
        self.deadline = time.monotonic() + total
        timeout = httpx.Timeout(
            total,
            connect=min(self.connect_timeout or total, total),
            read=min(self.idle_timeout or total, total),
        )
        return httpx.Client(
            timeout=timeout,
            follow_redirects=self.follow,
            verify=self.verify,
            proxy=self.proxy,
            auth=self.auth,
        )

    def stream(self, client: httpx.Client) -> Any:
        """The response, its body not read yet (``read`` bounds it)."""
        return client.stream(
            self.method,
            self.uri,
            headers=self.headers,
            content=self.content,
            data=self.data,
            files=self.files,
        )

    def read(self, response: httpx.Response, what: str) -> bytes:
        """The body, failing past ``limit`` bytes or past the deadline (a slow drip too)."""
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise TaskFailure(
                f"The content length [{declared}] exceeds the maximum allowed content length [{self.limit}]"
                f" ({what} {self.uri})"
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes(_CHUNK):
            size += len(chunk)
            if size > self.limit:
                raise TaskFailure(
                    f"The content length exceeds the maximum allowed content length [{self.limit}]"
                    f" ({what} {self.uri})"
                )
            if time.monotonic() > self.deadline:
                raise TaskFailure(f"Read Timeout: {what} {self.uri} took longer than {self.read_timeout:g}s")
            chunks.append(chunk)
        return b"".join(chunks)


def _headers(response: httpx.Response) -> dict[str, list[str]]:
    """Kestra's ``headers`` output: each name as received, with every value it had."""
    headers: dict[str, list[str]] = {}
    for raw_name, raw_value in response.headers.raw:
        headers.setdefault(raw_name.decode("latin-1"), []).append(raw_value.decode("latin-1"))
    return headers


def _transport(exc: httpx.HTTPError, uri: str) -> TaskFailure:
    if isinstance(exc, httpx.TimeoutException):
        return TaskFailure(f"Read Timeout: no response from {uri} in time ({type(exc).__name__})")
    return TaskFailure(f"Request to {uri} failed: {exc or type(exc).__name__}")


def _failed_status(response: httpx.Response) -> TaskFailure:
    return TaskFailure(
        f"{response.reason_phrase or 'HTTP error'} ({response.status_code}) from {response.url}"
    )


def request(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    exchange = _Exchange(props, ctx, default_limit=DEFAULT_MAX_CONTENT)
    try:
        with (
            exchange.client() as client,
            exchange.stream(client) as response,
        ):
            body = exchange.read(response, "response of")
    except httpx.HTTPError as exc:
        raise _transport(exc, exchange.uri) from None
    if response.status_code >= 400 and not props.get("allowFailed"):
        raise _failed_status(response)
    ctx.log(Level.DEBUG, f"Request '{exchange.uri}' with the response code '{response.status_code}'")
    text = body.decode(response.encoding or exchange.charset, errors="replace")
    return {
        "uri": str(response.request.url),
        "code": response.status_code,
        "headers": _headers(response),
        "body": text if body else None,  # Micronaut's body() is empty, Kestra's output null
    }


_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def _filename(response: httpx.Response, uri: str) -> str:
    """Kestra's Download: the Content-Disposition filename (its last segment), else the URI's."""
    disposition = response.headers.get("content-disposition")
    name: str | None = None
    if disposition:
        for part in disposition.split(";"):
            stripped = part.strip()
            if stripped.startswith("filename"):
                name = stripped[stripped.rfind("=") + 1 :]
            if stripped.startswith("filename*"):
                name = unquote(stripped[stripped.rfind("'") + 1 :])
        if name and name[0] == '"':
            name = name[1:-1]
    if not name:
        name = urlsplit(uri).path.rsplit("/", 1)[-1]
    name = _FILENAME.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")
    return name or "download"


def download(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    limit = MAX_DOWNLOAD_BYTES
    exchange = _Exchange(props, ctx, default_limit=limit)
    allow_failed = bool(props.get("allowFailed"))
    try:
        with (
            exchange.client() as client,
            exchange.stream(client) as response,
        ):
            if response.status_code >= 400 and not allow_failed:
                raise _failed_status(response)
            body = exchange.read(response, "download of") if response.status_code < 400 else b""
    except httpx.HTTPError as exc:
        raise _transport(exc, exchange.uri) from None
    declared = response.headers.get("content-length")
    if (
        declared is not None
        and declared.isdigit()
        and response.status_code < 400
        and int(declared) != len(body)
    ):
        raise TaskFailure(f"Invalid size, got {len(body)}, expected {declared}")
    if not body:
        if props.get("failOnEmptyResponse", True) and not allow_failed:
            raise TaskFailure("No response from server")
        ctx.log(Level.WARN, f"File '{exchange.uri}' is empty")
    uri = ctx.output_uri(_filename(response, exchange.uri))
    ctx.storage.write(uri, body)
    ctx.log(Level.DEBUG, f"File '{exchange.uri}' downloaded to '{uri}'")
    return {"uri": uri, "code": response.status_code, "length": len(body), "headers": _headers(response)}


HANDLERS: dict[str, Handler] = {
    "squall.http.Request": request,
    "squall.http.Download": download,
}
