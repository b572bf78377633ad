"""The HTTP endpoint a conformance case's Http triggers poll (``http_responses`` in a case).

A case lists what each path answers, in order (the last answer repeats):
``{"/price": [{status: 503}, {status: 200, body: '{"price": 100}', contentType: application/json}]}``.
The flows of such a case name the endpoint ``http://conformance.invalid`` (``.invalid`` never
resolves, RFC 2606); the runner serves the answers on a local port and puts its address in
their place before the flows are deployed, so a case file runs anywhere with no network.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["PLACEHOLDER", "serve"]

PLACEHOLDER = "http://conformance.invalid"


@contextmanager
def serve(responses: Mapping[str, Any]) -> Iterator[str]:
    """Serve ``responses`` on 127.0.0.1 until the block ends; yields the base URL."""
    queues = {
        str(path): list(answers if isinstance(answers, list) else [answers])
        for path, answers in responses.items()
    }
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            with lock:
                answers = queues.get(self.path.split("?", 1)[0])
                answer = (answers.pop(0) if len(answers) > 1 else answers[0]) if answers else None
            answer = answer or {"status": 404, "body": "no answer for this path in the case"}
            data = str(answer.get("body", "")).encode()
            self.send_response(int(answer.get("status", 200)))
            self.send_header("Content-Type", str(answer.get("contentType", "text/plain")))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the case's checks say what went wrong

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="conformance-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
