"""A local HTTP server answering with a function of the request, for tests of fetch paths."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Mapping

# (status, body, headers) for a request handler's path and headers.
Answer = tuple[int, bytes, Mapping[str, str]]


class LocalServer:
    """Serves GETs on 127.0.0.1 with ``answer(handler)`` in a thread; use it as a context."""

    def __init__(self, answer: Callable[[http.server.BaseHTTPRequestHandler], Answer]):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                status, body, headers = answer(self)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
