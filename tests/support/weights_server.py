"""An HTTP server on 127.0.0.1, in a thread, that serves files from a dict and records each request.

The pretrained-model tests point registry entries and ``EDSR_JAX_WEIGHTS_MIRROR`` at it, so that
nothing leaves the machine::

    with WeightsServer() as server:
        server.files["/official/x.pt"] = data
        url = server.url("/official/x.pt")
        ...
        assert server.requests == ["/official/x.pt"]
"""

from __future__ import annotations

import http.server
import threading
import time


class WeightsServer:
    """Serves ``files`` (path -> bytes); 404 for other paths.

    Attributes:
      files: what is served, by URL path.
      requests: the path of every GET, in order.
      cut_once: paths whose next response announces the full length but sends only this many
        bytes before closing the connection (an interrupted transfer); used once.
      delay_s: seconds each response waits before its body (to make downloads overlap).
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.cut_once: dict[str, int] = {}
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> WeightsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with server._lock:
                    server.requests.append(self.path)
                    body = server.files.get(self.path)
                    cut = server.cut_once.pop(self.path, None)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                time.sleep(server.delay_s)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.close_connection = True

            def log_message(self, *args):  # (quiet: the CLI tests read stderr)
                pass

        return Handler


def forbid_internet(monkeypatch) -> None:
    """Makes every name lookup but 127.0.0.1's fail, so that a test cannot reach the internet."""
    import socket

    lookup = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise OSError(f"the tests do not use the internet (asked for {host})")
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
