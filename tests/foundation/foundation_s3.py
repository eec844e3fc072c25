"""Helpers of the foundation tests that talk to S3: credentials, free ports, a flaky proxy,
a server that never answers.

A plain module (not conftest) so that tests import it by name; the name is unique in tests/.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import threading

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key-never-printed"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FlakyS3Proxy:
    """An HTTP proxy in front of moto that answers 503 SlowDown to the first `failures`
    requests (all of them when failures < 0), then forwards, cutting the body of the first
    `cut_bodies` object downloads halfway and flipping a byte in the next `corrupt_bodies`:
    a stand-in for an overloaded or restarting MinIO and for a network that damages data,
    to exercise the client's retries with the real minio client. `gets` counts object GETs."""

    SLOW_DOWN = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message></Error>"
    )

    def __init__(
        self, upstream: str, failures: int = 0, cut_bodies: int = 0, corrupt_bodies: int = 0
    ) -> None:
        self.upstream = upstream
        self.failures = failures
        self.cut_bodies = cut_bodies  # object GETs whose body stops halfway
        self.corrupt_bodies = corrupt_bodies  # object GETs whose first byte is flipped
        self.requests = 0
        self.gets = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                proxy.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.failures < 0 or proxy.requests <= proxy.failures:
                    self._reply(503, {"Content-Type": "application/xml"}, proxy.SLOW_DOWN)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                answer = conn.getresponse()
                data = answer.read()
                skip = {"transfer-encoding", "server", "date"}
                if self.command != "HEAD":  # HEAD keeps the object's size
                    skip.add("content-length")
                headers = [(k, v) for k, v in answer.getheaders() if k.lower() not in skip]
                if self.command != "HEAD":
                    headers.append(("Content-Length", str(len(data))))
                conn.close()
                object_get = self.command == "GET" and "?" not in self.path
                proxy.gets += object_get
                if object_get and proxy.cut_bodies > 0:
                    proxy.cut_bodies -= 1
                    data = data[: len(data) // 2]  # Content-Length still promises all of it
                elif object_get and proxy.corrupt_bodies > 0 and data:
                    proxy.corrupt_bodies -= 1
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self._reply(answer.status, headers, b"" if self.command == "HEAD" else data)

            def _reply(self, status: int, headers, data: bytes) -> None:
                if isinstance(headers, dict):
                    headers = [*headers.items(), ("Content-Length", str(len(data)))]
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers: a hung S3
    endpoint. Closing it closes every connection it accepted."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.endpoint = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.accepted.append(conn)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
