"""The web UI's files served at ``/ui`` by the API handler, over real HTTP (``squall server``).

What could go wrong and is pinned here: a file served with the wrong content type (browsers
refuse a module script that is not JavaScript), a stale cache (ETag/304), a path that climbs
out of the static folder, the UI asking for credentials the browser does not have yet (the
files are public, the API behind them is not), and a page that imports a module the package
does not ship (every relative import and asset reference must resolve to a served file).
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from control_plane.server import Server
from control_plane.ui import static_files
from tests.integration.service_helpers import server_settings
from tests.servers import squall_server

TOKEN = "ui-test-token"
STATIC = Path(static_files.__file__).parent / "static"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(server_settings(tmp_path, TOKEN), host="127.0.0.1", port=0, tick_interval=0.1) as srv:
        yield srv


def _raw_get(server: Server, path: str, method: str = "GET") -> tuple[int, bytes]:
    """A request whose path goes out byte for byte (httpx would normalise ``..`` away)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_ui_files_are_public_while_the_api_still_wants_the_token(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        index = client.get("/ui/")
        assert index.status_code == 200
        assert index.headers["content-type"] == "text/html; charset=utf-8"
        assert '<script type="module" src="js/main.js">' in index.text
        assert client.get("/api/v1/main/flows/search").status_code == 401
        redirect = client.get("/ui")
        assert redirect.status_code == 308 and redirect.headers["location"] == "ui/"
        followed = client.get("/ui", follow_redirects=True)
        assert followed.status_code == 200 and str(followed.url) == f"{server.url}/ui/"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("js/main.js", "text/javascript; charset=utf-8"),
        ("js/pages/execution.js", "text/javascript; charset=utf-8"),
    ],
)
def test_each_file_has_its_content_type_and_bytes(server: Server, name: str, content_type: str) -> None:
    response = httpx.get(f"{server.url}/ui/{name}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (STATIC / name).read_bytes()


def test_the_flow_schema_the_editor_completes_from_is_the_one_the_server_validates_with(
    server: Server,
) -> None:
    """Generated from the models and installed plugins, public like the files, revalidated by ETag."""
    from control_plane.flows.schema import flow_json_schema

    response = httpx.get(f"{server.url}/ui/schema/flow.json", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == flow_json_schema()
    again = httpx.get(
        f"{server.url}/ui/schema/flow.json", headers={"If-None-Match": response.headers["etag"]}, timeout=10
    )
    assert again.status_code == 304 and again.content == b""


def test_etag_revalidation_answers_304_without_a_body(server: Server) -> None:
    first = httpx.get(f"{server.url}/ui/js/api.js", timeout=10)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "no-cache"
    again = httpx.get(f"{server.url}/ui/js/api.js", headers={"If-None-Match": etag}, timeout=10)
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = httpx.get(f"{server.url}/ui/js/api.js", headers={"If-None-Match": '"stale"'}, timeout=10)
    assert other.status_code == 200 and other.content == first.content
    assert httpx.get(f"{server.url}/ui/js/dom.js", timeout=10).headers["etag"] != etag


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../pyproject.toml",
        "/ui/../../../../etc/passwd",
        "/ui/%2e%2e/%2e%2e/pyproject.toml",
        "/ui/js/../../static_files.py",
        "/ui/..%2f..%2fstatic_files.py",
        "/ui//etc/passwd",
        "/ui/static_files.py",
        "/ui/__init__.py",
        "/ui/js/",
        "/ui/js",
        "/ui/index.html%00.js",
        "/ui/.hidden",
    ],
)
def test_no_path_reaches_anything_but_the_shipped_files(server: Server, path: str) -> None:
    status, body = _raw_get(server, path)
    assert status == 404, (path, status, body[:200])
    assert b"import" not in body and b"root:" not in body


def test_only_get_and_head_and_head_has_no_body(server: Server) -> None:
    assert _raw_get(server, "/ui/index.html", "POST")[0] == 405
    status, body = _raw_get(server, "/ui/index.html", "HEAD")
    assert status == 200 and body == b""


def test_every_reference_in_the_ui_resolves_to_a_served_file_and_none_leaves_the_origin(
    server: Server,
) -> None:
    """Follows index.html's script and stylesheet, then every module's relative imports."""
    seen: set[str] = set()
    todo = ["index.html"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        response = httpx.get(f"{server.url}/ui/{name}", timeout=10)
        assert response.status_code == 200, f"{name} is referenced but not served"
        text = response.text
        assert not re.search(r"""(src|href|from|import)\s*=?\s*["'](https?:)?//""", text), name
        base = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
        refs = re.findall(r"""(?:src|href)="([^"#:]+\.(?:js|css))\"""", text)
        refs += re.findall(r"""(?:from|import)\s+"(\.{1,2}/[^"]+)\"""", text)
        for ref in refs:
            parts: list[str] = []
            for part in (base + ref).split("/"):
                if part == "..":
                    parts.pop()
                elif part not in ("", "."):
                    parts.append(part)
            todo.append("/".join(parts))
    shipped = {p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    assert seen == shipped, f"shipped but never loaded: {shipped - seen}; loaded: {seen - shipped}"


def test_the_lambda_event_path_serves_the_same_bytes(tmp_path: Path) -> None:
    """The api function's handler answers a payload-2.0 event for /ui without any authorizer."""
    from control_plane.api.app import Api
    from control_plane.runtime import open_runtime

    settings = server_settings(tmp_path, TOKEN).model_copy(update={"auth": "gateway"})
    rt = open_runtime(settings)
    try:
        event = {
            "version": "2.0",
            "rawPath": "/ui/js/main.js",
            "rawQueryString": "",
            "headers": {},
            "requestContext": {"http": {"method": "GET", "path": "/ui/js/main.js"}, "stage": "$default"},
            "isBase64Encoded": False,
        }
        response = Api(rt).handle(event, None)
        assert response["statusCode"] == 200
        assert response["body"].encode() == (STATIC / "js/main.js").read_bytes()
        staged = {
            **event,
            "rawPath": "/prod/ui/index.html",
            "requestContext": {**event["requestContext"], "stage": "prod"},
        }
        assert Api(rt).handle(staged, None)["headers"]["Content-Type"] == "text/html; charset=utf-8"
        event["rawPath"] = "/api/v1/main/flows/search"
        assert Api(rt).handle(event, None)["statusCode"] == 401
    finally:
        rt.close()


def test_squall_server_prints_where_the_ui_is_and_serves_it_there(tmp_path: Path) -> None:
    with squall_server(tmp_path, "--db", str(tmp_path / "cli.db"), "--no-auth") as server:
        printed = re.search(r"Web UI: (http://\S+)", server.stdout())
        assert printed is not None, server.stdout()
        assert printed.group(1) == f"{server.url}/ui/"
        response = httpx.get(printed.group(1), timeout=10)
        assert response.status_code == 200 and "<title>Squall</title>" in response.text


def test_nothing_in_the_ui_needs_what_the_content_security_policy_refuses() -> None:
    """No inline script or style attribute, no eval: the CSP allows this origin's files only.

    A static guard for the plain cases; a style attribute set at run time (the Gantt bars'
    positions were, until ``h()`` set them through ``el.style``) is refused by the browser with
    a console message, which the Chromium tests fail on.
    """
    csp = static_files.respond("/ui/index.html", "GET", {})["headers"]["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    for path in STATIC.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text()
        assert not re.search(r"""style=["']|setAttribute\(["']style|\beval\(|new Function\(""", text), path
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
