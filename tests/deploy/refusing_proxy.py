"""A loopback proxy in front of the local workspace that answers chosen requests with an error of its own
(``refuse(method, path, body) -> (status, error_code, message) | None``) and forwards everything else.
It takes requests addressed to it and, as a forward proxy (HTTP_PROXY), requests for the workspace's
absolute URLs alike; ``seen`` lists every request as ``METHOD /path``."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SKIPPED = {"content-length", "transfer-encoding", "connection", "keep-alive"}


class RefusingProxy:
    def __init__(self, upstream: str, refuse) -> None:
        parts = urllib.parse.urlsplit(upstream)
        target = (parts.hostname, parts.port)
        self.refused: list[str] = []
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002
                pass

            def do_GET(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    doc = json.loads(raw) if raw else {}
                except ValueError:
                    doc = {}
                path = urllib.parse.urlsplit(self.path).path
                proxy.seen.append(f"{self.command} {path}")
                # a forward proxy's request line has the absolute URL: the workspace gets path and query
                upstream_path = urllib.parse.urlsplit(self.path)._replace(scheme="", netloc="").geturl()
                answer = refuse(self.command, path, doc if isinstance(doc, dict) else {})
                if answer is not None:
                    status, code, message = answer
                    proxy.refused.append(f"{self.command} {path}")
                    headers, data = [("Content-Type", "application/json")], json.dumps(
                        {"error_code": code, "message": message}).encode()
                else:
                    conn = http.client.HTTPConnection(*target, timeout=60)
                    try:
                        conn.request(self.command, upstream_path, body=raw,
                                     headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                        response = conn.getresponse()
                        status, data = response.status, response.read()
                        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in SKIPPED]
                    finally:
                        conn.close()
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="refusing-proxy").start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
