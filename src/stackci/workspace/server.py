"""The local workspace: a Databricks-compatible REST server on loopback.

Use it in-process::

    with LocalWorkspace() as ws:
        w = WorkspaceClient(host=ws.url, token=ws.token)

or as ``stackci workspace serve`` (see :mod:`stackci.workspace.cli`).

Every ``/api/`` call needs ``Authorization: Bearer <token>`` with the token the
server was started with or one it issued (OAuth M2M, token federation); else
401 ``UNAUTHENTICATED``. Discovery (``/.well-known/databricks-config``,
``/oidc/.well-known/oauth-authorization-server``) and ``/oidc/v1/token`` are
unauthenticated as on a real workspace. ``/stackci-admin/faults`` (GET, PUT,
DELETE) changes fault injection and only accepts the server's own token. ``/``,
``/jobs/<id>`` and ``/jobs/<id>/runs/<id>`` are read-only HTML pages behind the job and run
links (see :mod:`stackci.workspace.pages`).
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import os
import re
import secrets
import selectors
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

try:
    import fcntl
except ImportError:  # Windows: no advisory lock, one server per data dir is then up to the user
    fcntl = None  # type: ignore[assignment]

from stackci.errors import ConfigError
from stackci.workspace.api import ApiError, RawResponse, Request, invalid
from stackci.workspace.auth import Authenticator, AuthSettings, OAuthError, parse_basic
from stackci.workspace.faults import FaultInjector, FaultPlan
from stackci.workspace.files import WorkspaceApi, WorkspaceTree
from stackci.workspace.jobs import JobsService
from stackci.workspace.models import Experiments, RegisteredModels
from stackci.workspace.orchestrator import Orchestrator
from stackci.workspace.pages import Pages
from stackci.workspace.permissions import Grants, Permissions
from stackci.workspace.registry import WorkspaceModels
from stackci.workspace.store import NewerSchema, Store

log = logging.getLogger(__name__)

DEFAULT_USER = "local-user@stackci.local"
MAX_BODY = 256 * 1024 * 1024


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Route:
    __slots__ = ("method", "pattern", "handler", "auth")

    def __init__(self, method: str, pattern: str, handler: Callable, auth: str = "bearer") -> None:
        self.method = method
        self.pattern = re.compile(pattern)
        self.handler = handler
        self.auth = auth


class LocalWorkspace:
    """The local workspace server, started on a free loopback port in a thread.

    :param data_dir: where the SQLite database and per-run files live; a temporary
        directory (removed on stop) when None. State survives a restart with the same dir.
    :param token: the bearer token clients use; generated (and kept in the data dir) when None.
    :param host: the address to bind; anything but loopback needs ``force=True``.
    :param port: 0 = a free port.
    :param client_id: / :param client_secret: the service principal for OAuth M2M
        (``client_id`` is also the principal of federated tokens).
    :param oidc_issuers: issuers whose identity tokens the token exchange accepts.
    :param oidc_audiences: audiences accepted in those tokens (default: the token endpoint URL).
    :param faults: a :class:`FaultPlan` (or its dict form) to start with.
    :param task_runner: replaces ``stackci.workspace.tasks.run_task`` (tests).
    :param python: the interpreter tasks run with (default: this one).
    """

    def __init__(self, data_dir: str | Path | None = None, token: str | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, force: bool = False,
                 client_id: str | None = None, client_secret: str | None = None,
                 oidc_issuers: list[str] | tuple[str, ...] = (), oidc_audiences: list[str] | tuple[str, ...] = (),
                 faults: FaultPlan | dict | None = None, task_runner: Callable | None = None,
                 python: str | None = None, user_name: str = DEFAULT_USER,
                 task_env: dict[str, str] | None = None) -> None:
        if not is_loopback(host) and not force:
            raise ConfigError(f"refusing to bind {host}: the local workspace only listens on loopback addresses",
                              hint="use 127.0.0.1, or --allow-remote-bind if you really mean it")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"invalid port {port!r}", hint="use 0 (any free port) to 65535")
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise ConfigError("the workspace token must be a non-empty string without whitespace",
                              hint="pass --token with a value like dapi0123..., or leave it out to generate one")
        if (client_id is None) != (client_secret is None):
            raise ConfigError("OAuth M2M needs both a client id and a client secret",
                              hint="pass both --client-id and --client-secret, or neither")
        self._temp = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._token = token
        self.host = host
        self.port = port
        self._client_id = client_id
        self._client_secret = client_secret
        self._issuers = list(oidc_issuers)
        self._audiences = list(oidc_audiences)
        if isinstance(faults, dict):
            faults = FaultPlan.from_dict(faults)
        self._faults_plan = faults
        self._task_runner = task_runner
        self._python = python
        self._task_env = task_env
        self.user_name = user_name
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.token = token or ""
        self.workspace_id = ""

    # ---- life cycle ---------------------------------------------------------

    def start(self) -> LocalWorkspace:
        if self._httpd is not None:
            return self
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="stackci-workspace-"))
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_data_dir()
            self.store = Store(self.data_dir / "workspace.sqlite3")
        except ConfigError:
            self._abandon_start()
            raise
        except NewerSchema as exc:
            self._abandon_start()
            raise ConfigError(f"cannot use the data directory {self.data_dir}: {exc}",
                              hint="use a newer stackci, or pass another --data-dir") from None
        except sqlite3.Error as exc:
            self._abandon_start()
            raise ConfigError(f"cannot use the data directory {self.data_dir}: its database is unusable ({exc})",
                              hint="move workspace.sqlite3 away, or pass another --data-dir") from None
        except OSError as exc:
            self._abandon_start()
            raise ConfigError(f"cannot use the data directory {self.data_dir}: {exc.strerror or exc}",
                              hint="pass a writable --data-dir (or none for a temporary one)") from None
        self.workspace_id = self.store.get_meta("workspace_id") or ""
        if not self.workspace_id:
            self.workspace_id = str(1_000_000_000_000_000 + secrets.randbelow(8_999_999_999_999_999))
            self.store.set_meta("workspace_id", self.workspace_id)
        if not self._token:
            self._token = self.store.get_meta("token") or ("dapi" + secrets.token_hex(16))
            self.store.set_meta("token", self._token)
        self.token = self._token
        try:
            server_class = _Server6 if ":" in self.host else _Server
            httpd = server_class((self.host, self.port), _Handler)
        except OSError as exc:
            self.store.close()
            self._abandon_start()
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                              hint="pick another --port, or 0 for any free one") from None
        httpd.workspace = self
        self._httpd = httpd
        bound_host, bound_port = httpd.server_address[:2]
        self.port = bound_port
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self.url = f"http://{shown}:{bound_port}"
        self.auth = Authenticator(self.store, AuthSettings(
            token=self._token, user_name=self.user_name, client_id=self._client_id,
            client_secret=self._client_secret, accepted_issuers=self._issuers,
            accepted_audiences=self._audiences))
        self.faults = FaultInjector(self._faults_plan)
        self.tree = WorkspaceTree(self.store)
        self.jobs = JobsService(self.store, host=self.url, workspace_id=self.workspace_id, user_name=self.user_name)
        recovered = self.jobs.recover()
        if recovered:
            log.warning("ended %d run(s) left active by a previous server as INTERNAL_ERROR", recovered)
        self.orchestrator = Orchestrator(self.jobs, self.tree, self.data_dir / "runs",
                                         task_runner=self._task_runner, python=self._python,
                                         task_env=self._task_env)
        self.jobs.orchestrator = self.orchestrator
        self.experiments = Experiments(self.store, self.user_name)
        self.models = RegisteredModels(self.store, self.user_name)
        self.workspace_models = WorkspaceModels(self.store, self.user_name)
        self.permissions = Permissions(self.store, self.user_name, legacy_model_ids=self.workspace_models.creator)
        self.workspace_models.permissions = self.permissions
        self.grants = Grants(self.store, self.models.exists)
        self.models.grants = self.grants
        self.jobs.permissions = self.permissions
        self.routes = self._routes()
        self._thread = threading.Thread(target=httpd.serve_until_woken, name="stackci-workspace", daemon=True)
        self._thread.start()
        log.info("local workspace listening on %s (data in %s)", self.url, self.data_dir)
        if not is_loopback(self.host):
            log.warning("the local workspace listens on %s, not loopback: anyone who can reach it and knows "
                        "the token can run code on this machine", self.host)
        return self

    def stop(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        self._httpd = None
        httpd.wake()
        if self._thread is not None:
            self._thread.join(5)
        httpd.hang_up()
        self.orchestrator.shutdown()
        httpd.server_close()
        self.store.close()
        self._unlock_data_dir()
        if self._temp and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def _abandon_start(self) -> None:
        self._unlock_data_dir()
        if self._temp and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def _lock_data_dir(self) -> None:
        """One server per data directory: two would hand out the same ids and race on runs."""
        path = self.data_dir / "workspace.lock"
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until stop()
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                owner = handle.read().strip() or "unknown"
                handle.close()
                raise ConfigError(f"the data directory {self.data_dir} is in use by another local workspace "
                                  f"(pid {owner})", hint="stop that server first or pass another --data-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle

    def _unlock_data_dir(self) -> None:
        handle, self._lock_handle = getattr(self, "_lock_handle", None), None
        if handle is not None:
            handle.close()  # closing releases the flock

    def __enter__(self) -> LocalWorkspace:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_faults(self, plan: FaultPlan | dict | None) -> None:
        """Change fault injection (None = no faults)."""
        if isinstance(plan, dict):
            plan = FaultPlan.from_dict(plan)
        self.faults.set_plan(plan or FaultPlan())

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/oidc/v1/token"

    # ---- routes -------------------------------------------------------------

    def _routes(self) -> list[_Route]:
        r: list[_Route] = [
            _Route("GET", r"/\.well-known/databricks-config", self._host_metadata, auth="none"),
            _Route("GET", r"/oidc/\.well-known/oauth-authorization-server", self._oidc_metadata, auth="none"),
            _Route("GET", r"/oidc/\.well-known/openid-configuration", self._oidc_metadata, auth="none"),
            _Route("GET", r"/oidc/jwks\.json", self._jwks, auth="none"),
            _Route("GET", r"/api/2\.0/preview/scim/v2/Me", self._me),
            _Route("GET", r"/stackci-admin/faults", self._faults_get, auth="admin"),
            _Route("PUT", r"/stackci-admin/faults", self._faults_put, auth="admin"),
            _Route("POST", r"/stackci-admin/faults", self._faults_put, auth="admin"),
            _Route("DELETE", r"/stackci-admin/faults", self._faults_delete, auth="admin"),
        ]
        j = self.jobs
        for method, name, handler in (
            ("POST", "create", j.create), ("POST", "reset", j.reset), ("POST", "update", j.update),
            ("GET", "get", j.get), ("GET", "list", j.list), ("POST", "delete", j.delete),
            ("POST", "run-now", j.run_now), ("POST", "runs/submit", j.submit), ("GET", "runs/get", j.get_run),
            ("GET", "runs/get-output", j.get_output), ("POST", "runs/cancel", j.cancel),
            ("POST", "runs/cancel-all", j.cancel_all), ("GET", "runs/list", j.list_runs),
            ("POST", "runs/delete", j.delete_run),
        ):
            r.append(_Route(method, rf"/api/2\.[12]/jobs/{re.escape(name)}", handler))
        wsapi = WorkspaceApi(self.tree)
        r += [
            _Route("POST", r"/api/2\.0/workspace/mkdirs", wsapi.mkdirs),
            _Route("POST", r"/api/2\.0/workspace/import", wsapi.import_),
            _Route("GET", r"/api/2\.0/workspace/export", wsapi.export),
            _Route("GET", r"/api/2\.0/workspace/get-status", wsapi.get_status),
            _Route("GET", r"/api/2\.0/workspace/list", wsapi.list),
            _Route("POST", r"/api/2\.0/workspace/delete", wsapi.delete),
            _Route("POST", r"/api/2\.0/workspace-files/import-file/(?P<path>.+)", wsapi.import_file),
        ]
        e = self.experiments
        for method, name, handler in (
            ("POST", "create", e.create), ("GET", "get", e.get), ("GET", "get-by-name", e.get_by_name),
            ("POST", "update", e.update), ("POST", "delete", e.delete), ("POST", "restore", e.restore),
            ("POST", "set-experiment-tag", e.set_tag),
            ("POST", "search", e.search), ("GET", "search", e.search), ("GET", "list", e.search),
        ):
            r.append(_Route(method, rf"/api/2\.0/mlflow/experiments/{re.escape(name)}", handler))
        m = self.models
        base = r"/api/2\.1/unity-catalog/models"
        fn = r"(?P<full_name>[^/]+)"
        r += [
            _Route("POST", base, m.create), _Route("GET", base, m.list),
            _Route("GET", rf"{base}/{fn}", m.get), _Route("PATCH", rf"{base}/{fn}", m.update),
            _Route("DELETE", rf"{base}/{fn}", m.delete),
            _Route("GET", rf"{base}/{fn}/versions", m.list_versions),
            _Route("POST", rf"{base}/{fn}/versions", m.create_version),
            _Route("GET", rf"{base}/{fn}/versions/(?P<version>[^/]+)", m.get_version),
            _Route("PATCH", rf"{base}/{fn}/versions/(?P<version>[^/]+)", m.update_version),
            _Route("DELETE", rf"{base}/{fn}/versions/(?P<version>[^/]+)", m.delete_version),
            _Route("PUT", rf"{base}/{fn}/aliases/(?P<alias>[^/]+)", m.set_alias),
            _Route("GET", rf"{base}/{fn}/aliases/(?P<alias>[^/]+)", m.get_by_alias),
            _Route("DELETE", rf"{base}/{fn}/aliases/(?P<alias>[^/]+)", m.delete_alias),
        ]
        reg = self.workspace_models
        rm = r"/api/2\.0/mlflow/registered-models"
        r += [
            _Route("POST", rf"{rm}/create", reg.create), _Route("GET", rf"{rm}/get", reg.get),
            _Route("GET", r"/api/2\.0/mlflow/databricks/registered-models/get", reg.get_databricks),
            _Route("PATCH", rf"{rm}/update", reg.update), _Route("POST", rf"{rm}/rename", reg.rename),
            _Route("DELETE", rf"{rm}/delete", reg.delete), _Route("POST", rf"{rm}/set-tag", reg.set_tag),
            _Route("DELETE", rf"{rm}/delete-tag", reg.delete_tag), _Route("GET", rf"{rm}/search", reg.search),
            _Route("GET", rf"{rm}/list", reg.search),
        ]
        p = self.permissions
        obj = r"/api/2\.0/permissions/(?P<object_type>[a-z-]+)/(?P<object_id>[^/]+)"
        r += [
            _Route("GET", obj, p.get), _Route("PUT", obj, p.set), _Route("PATCH", obj, p.update),
            _Route("GET", rf"{obj}/permissionLevels", p.levels),
        ]
        g = self.grants
        sec = r"/api/2\.1/unity-catalog/permissions/(?P<securable_type>[A-Za-z_]+)/(?P<full_name>[^/]+)"
        r += [_Route("GET", sec, g.get), _Route("PATCH", sec, g.update)]
        # the read-only pages behind the links the workspace hands out (they check access themselves:
        # none on loopback, the bearer token otherwise; see stackci.workspace.pages)
        pages = Pages(self)
        ident = r"\d{1,18}"
        r += [_Route("GET", r"/", pages.index, auth="none"),
              _Route("GET", rf"/jobs/(?P<job_id>{ident})", pages.job, auth="none"),
              _Route("GET", rf"/jobs/(?P<job_id>{ident})/runs/(?P<run_id>{ident})", pages.run, auth="none")]
        return r

    # ---- discovery and identity --------------------------------------------

    def _host_metadata(self, req: Request) -> dict:
        return {"oidc_endpoint": f"{self.url}/oidc", "workspace_id": self.workspace_id}

    def _oidc_metadata(self, req: Request) -> dict:
        base = f"{self.url}/oidc"
        return {
            "issuer": base, "authorization_endpoint": f"{base}/v1/authorize",
            "token_endpoint": f"{base}/v1/token", "jwks_uri": f"{base}/jwks.json",
            "grant_types_supported": ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
            "response_types_supported": ["code"], "scopes_supported": ["all-apis", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        }

    def _jwks(self, req: Request) -> dict:
        # issued tokens are opaque strings checked against the database, not signed JWTs
        return {"keys": []}

    def _me(self, req: Request) -> dict:
        principal = req.principal or self.user_name
        is_sp = principal == self._client_id
        ident = str(int.from_bytes(principal.encode()[:6].ljust(6, b"\0"), "big"))
        doc = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": ident, "userName": principal, "active": True,
            "displayName": "stackci local service principal" if is_sp else "Local User",
            "groups": [{"display": "admins", "type": "direct", "value": "1"},
                       {"display": "users", "type": "direct", "value": "2"}],
        }
        if not is_sp:
            doc["emails"] = [{"value": principal, "type": "work", "primary": True}]
        return doc

    # ---- faults admin -------------------------------------------------------

    def _faults_get(self, req: Request) -> dict:
        return self.faults.status()

    def _faults_put(self, req: Request) -> dict:
        try:
            self.faults.set_plan(FaultPlan.from_dict(req.json()))
        except ConfigError as exc:
            raise invalid(exc.message) from None
        return self.faults.status()

    def _faults_delete(self, req: Request) -> dict:
        self.faults.set_plan(FaultPlan())
        return self.faults.status()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    #: how long handle_request waits when the listening socket turns out to have nothing to accept
    timeout = 0.5
    workspace: LocalWorkspace

    def __init__(self, *args, **kwargs) -> None:
        self._open: set[socket.socket] = set()          # connections not yet closed
        self._handlers: set[threading.Thread] = set()   # the threads serving them
        self._open_lock = threading.Lock()
        self._woken, self._waker = socket.socketpair()     # before: a failed bind calls server_close
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._woken.close()                        # no-ops if server_close has closed them already
            self._waker.close()
            raise

    def serve_until_woken(self) -> None:
        """Accept connections until :meth:`wake`. ``serve_forever`` notices ``shutdown`` only at its
        next poll, so every stop of the workspace waited up to its poll interval (a tenth of a
        second, half of that on average); a byte on a socket pair ends this loop at once."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._woken, selectors.EVENT_READ)
            while True:
                ready = selector.select()
                if any(key.fileobj is self._woken for key, _ in ready):
                    return
                self.handle_request()           # the socket is readable: it accepts without waiting
                self.service_actions()

    def wake(self) -> None:
        self._waker.send(b"\0")

    def process_request(self, request, client_address) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        me = threading.current_thread()
        with self._open_lock:
            self._handlers.add(me)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._handlers.discard(me)

    def shutdown_request(self, request) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def hang_up(self, timeout: float = 5.0) -> None:
        """End every open connection, a client's idle keep-alive one too, and wait up to ``timeout``
        for their threads: a stopped workspace answers nothing more, and no request is still being
        served when its store closes."""
        with self._open_lock:
            connections, handlers = list(self._open), list(self._handlers)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)     # the handler's next read ends
            except OSError:
                pass                                      # it has just closed it
        deadline = time.monotonic() + timeout
        for thread in handlers:
            thread.join(max(0.0, deadline - time.monotonic()))

    def server_close(self) -> None:
        super().server_close()
        self._woken.close()
        self._waker.close()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # an answer's status line, headers and body are gathered in the write buffer and go out in one
    # send (_send flushes it): unbuffered, each was a send of its own, and when the client shares this
    # process (a rehearsal) each send hands the interpreter lock over, about a fifth of a request's cost
    wbufsize = 1 << 16
    # a larger body still goes out in a second write: without TCP_NODELAY a keep-alive answer would
    # wait for the client's delayed ACK (~40 ms on Linux)
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):   # the client has gone (killed, reset): nothing to answer
            self.close_connection = True
            self._drop_unsent()

    def _drop_unsent(self) -> None:
        """What is left in the write buffer can never be sent, and each of http.server's own
        flushes after this one (the connection's end) would raise again and print a traceback.
        The socket is let go and later flushes write nowhere."""
        try:
            self.wfile.close()
        except OSError:
            pass
        self.wfile = io.BytesIO()

    def handle_expect_100(self) -> bool:
        # "100 Continue" must reach the client now: it holds the body back until it has it (curl does)
        answer = super().handle_expect_100()
        self.wfile.flush()
        return answer

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ApiError(413, "REQUEST_ENTITY_TOO_LARGE", "The request body is too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ApiError(413, "REQUEST_ENTITY_TOO_LARGE", "The request body is too large")
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        ws = self.server.workspace
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path
        extra_headers: dict[str, str] = {}
        try:
            try:
                body = self._read_body()
            except ValueError:
                self.close_connection = True
                raise ApiError(400, "MALFORMED_REQUEST", "The request body could not be read") from None
            if not path.startswith("/stackci-admin/"):
                fault = ws.faults.draw(path)
                if fault == "drop":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if fault == "latency":
                    time.sleep(ws.faults.plan.latency_ms / 1000.0)
                elif fault == "429":
                    raise ApiError(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests (injected by stackci faults).",
                                   headers={"Retry-After": str(ws.faults.plan.retry_after)})
                elif fault == "503":
                    raise ApiError(503, "TEMPORARILY_UNAVAILABLE", "The service is temporarily unavailable "
                                   "(injected by stackci faults).",
                                   headers={"Retry-After": str(ws.faults.plan.retry_after)})
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            if path == "/oidc/v1/token":
                self._token(ws, body, headers)
                return
            if path.startswith("/api/"):
                extra_headers["X-Databricks-Org-Id"] = ws.workspace_id
            route, match, allowed = self._route(ws, path)
            principal = None
            needs = route.auth if route else ("bearer" if path.startswith("/api/") else "none")
            if needs != "none":
                principal = self._authenticate(ws, headers, admin=needs == "admin")
            if route is None:
                if allowed:
                    raise ApiError(405, "METHOD_NOT_ALLOWED",
                                   f"{self.command} is not allowed for {path}; use {', '.join(sorted(allowed))}")
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{self.command} {path}'")
            req = Request(method=self.command, path=path, query=query, headers=headers, body=body,
                          principal=principal, match={k: urllib.parse.unquote(v) for k, v in match.items()})
            result = route.handler(req)
            if isinstance(result, RawResponse):
                self._send(result.status, result.body, result.content_type, {**extra_headers, **result.headers})
            else:
                self._send_json(200, result, extra_headers)
        except ApiError as err:
            self._send_json(err.status, err.body(), {**extra_headers, **err.headers})
        except (BrokenPipeError, ConnectionResetError):
            raise                 # the client has gone: handle_one_request ends the connection
        except Exception as exc:  # never a traceback to the client
            log.exception("local workspace: %s %s failed", self.command, path)
            self._send_json(500, {"error_code": "INTERNAL_ERROR",
                                  "message": f"Internal error of the local workspace: {exc.__class__.__name__}"},
                            extra_headers)

    def _route(self, ws: LocalWorkspace, path: str):
        allowed = set()
        for route in ws.routes:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method == self.command or (self.command == "HEAD" and route.method == "GET"):
                return route, m.groupdict(), allowed
            allowed.add(route.method)
        return None, {}, allowed

    def _authenticate(self, ws: LocalWorkspace, headers: dict[str, str], *, admin: bool) -> str:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "UNAUTHENTICATED",
                           "Credential was not sent or was of an unsupported type for this API.")
        token = token.strip()
        if admin:
            if not secrets.compare_digest(token.encode("utf-8", "surrogateescape"), ws.token.encode()):
                raise ApiError(403, "PERMISSION_DENIED", "Only the token the server was started with may "
                               "change fault injection.")
            return ws.user_name
        principal = ws.auth.principal_for(token)
        if principal is None:
            raise ApiError(401, "UNAUTHENTICATED", "Invalid access token.")
        return principal

    def _token(self, ws: LocalWorkspace, body: bytes, headers: dict[str, str]) -> None:
        """``POST /oidc/v1/token``: answers and errors in the OAuth shape, never ``error_code``."""
        if self.command != "POST":
            self._send_json(405, {"error": "invalid_request", "error_description": "Use POST for the token endpoint"},
                            {"Allow": "POST"})
            return
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                                            keep_blank_values=True).items()}
        basic = None
        value = headers.get("authorization", "")
        if value[:6].lower() == "basic ":
            basic = parse_basic(value[6:])
            if basic is None:
                err = OAuthError(401, "invalid_client", "Malformed HTTP Basic client credentials",
                                 basic_challenge=True)
                self._send_json(err.status, err.body(), err.headers())
                return
        try:
            answer = ws.auth.token_endpoint(form, basic, ws.token_endpoint)
        except OAuthError as err:
            self._send_json(err.status, err.body(), {"Cache-Control": "no-store", **err.headers()})
            return
        self._send_json(200, answer, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _send_json(self, status: int, doc: dict, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
