"""A loopback HTTP proxy in front of the local workspace that SIGKILLs a deploy at an exact request.

The deploy talks to the proxy (``DATABRICKS_HOST``/``STACKCI_HOST`` = :attr:`KillProxy.url`);
the proxy forwards every request to the workspace and names it by what it does
(``create job``, ``update job``, ``delete job``, ``upload file``, ``delete file``,
``write state``, ``take lock``, ``set permissions``, ``set grants``, ...). When the request chosen with :meth:`arm` arrives
(the n-th of its kind), the proxy kills the deploy process:

- ``before``: the request is never forwarded (the deploy dies just before the change);
- ``after``: the request is forwarded and the workspace applies it, then the deploy is
  killed before it sees the answer (the change happened, the deploy never learned of it:
  the window between "created" and "recorded in the state").

Kill points are counted in requests, not in time, so where a kill lands does not depend on
how loaded the machine is. Once the process is killed nothing more is forwarded.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
               "host", "content-length"}


def classify(method: str, path: str, body: bytes, query: str = "") -> str:
    """What a workspace request does, in the words of a deploy."""
    if method == "GET":
        asked = urllib.parse.parse_qs(query).get("path", [""])[0]
        return "read lock" if path.endswith("/workspace/export") and asked.endswith("/deploy.lock") else "read"
    doc: dict = {}
    if body:
        try:
            loaded = json.loads(body)
            doc = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            doc = {}
    target = str(doc.get("path") or "")
    if path.endswith("/jobs/create"):
        return "create job"
    if path.endswith("/jobs/reset") or path.endswith("/jobs/update"):
        return "update job"
    if path.endswith("/jobs/delete"):
        return "delete job"
    if path.endswith("/workspace/import"):
        if target.endswith("/deployment.json"):
            return "write state"
        if target.endswith("/deploy.lock"):
            return "take lock"
        return "upload file"
    if path.endswith("/workspace/delete"):
        return "release lock" if target.endswith("/deploy.lock") else "delete file"
    if path.endswith("/workspace/mkdirs"):
        return "mkdirs"
    if "/mlflow/experiments/" in path:
        return "experiment " + path.rsplit("/", 1)[-1]
    if path.startswith("/api/2.0/permissions/") and method in ("PUT", "PATCH"):
        return "set permissions"
    if path.startswith("/api/2.1/unity-catalog/permissions/") and method == "PATCH":
        return "set grants"
    return f"{method} {path}"


@dataclass(frozen=True)
class KillPoint:
    label: str        # e.g. "create job"
    nth: int          # the n-th request with this label in the deploy (1-based)
    phase: str        # "before" | "after" | "refuse" (answer 400 instead, kill nobody)
    #                   | "sigterm" (send SIGTERM, then forward this request and all later ones)

    def __str__(self) -> str:
        return f"{self.phase} {self.label} #{self.nth}"


class KillProxy:
    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._point: KillPoint | None = None
        self._pid: int | None = None
        self._pid_set = threading.Event()
        self.counts: dict[str, int] = {}
        self.log: list[str] = []
        self.killed: str | None = None      # the request the deploy was killed at
        self.dead = False
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # no Nagle: a small answer must not wait for the client's delayed ACK (40 ms a request)
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def do_GET(self):
                proxy._handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="kill-proxy", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ control
    def arm(self, point: KillPoint | None) -> None:
        """Kill the next process at ``point`` (None: forward everything)."""
        with self._lock:
            self._point = point
            self._pid = None
            self._pid_set.clear()
            self.counts = {}
            self.log = []
            self.killed = None
            self.dead = False

    def watch(self, pid: int) -> None:
        """The process to kill (set right after it is started)."""
        self._pid = pid
        self._pid_set.set()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ forwarding
    def _kill(self, what: str) -> None:
        self._pid_set.wait(30)
        with self._lock:
            self.dead = True
            self.killed = what
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urllib.parse.urlsplit(handler.path)
        label = classify(handler.command, parts.path, body, parts.query)
        with self._lock:
            if self.dead:
                handler.close_connection = True
                return
            self.counts[label] = n = self.counts.get(label, 0) + 1
            self.log.append(label)
            point = self._point
            hit = point is not None and point.label == label and point.nth == n
        if hit and point.phase == "refuse":     # answered by the proxy with an error; nobody is killed
            answer = json.dumps({"error_code": "INVALID_PARAMETER_VALUE",
                                 "message": f"{label} refused by the test proxy"}).encode()
            handler.send_response(400)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
            return
        if hit and point.phase == "sigterm":   # a cancelled CI job: the process gets SIGTERM mid-request
            self._pid_set.wait(30)
            with self._lock:
                self.killed = f"{label} #{n} (SIGTERM, then forwarded)"
            if self._pid is not None:
                try:
                    os.kill(self._pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            hit = False
        if hit and point.phase == "before":
            self._kill(f"{label} #{n} (not sent)")
            handler.close_connection = True
            return
        status, headers, answer = self._forward(handler, body)
        if hit:
            self._kill(f"{label} #{n} (applied, answer lost)")
            handler.close_connection = True
            return
        handler.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_HEADERS:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(answer)))
        # headers and body in one write
        handler._headers_buffer.append(b"\r\n" + (answer if handler.command != "HEAD" else b""))
        handler.flush_headers()

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes):
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_HEADERS}
            headers["Content-Length"] = str(len(body))
            conn.request(handler.command, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()
