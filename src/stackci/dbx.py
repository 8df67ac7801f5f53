"""One place that builds a databricks-sdk client and turns its auth failures into
messages that say how to fix them. Auth is the SDK's: DATABRICKS_HOST plus a token,
OAuth M2M, github-oidc, azure-devops-oidc, azure-cli, a profile, ... stackci never
parses tokens.

Before the client is built, the workspace URL is checked (an ``http(s)://`` URL of a host)
and the host is asked once, with short timeouts and a progress line per retry, whether it
answers at all: an unreachable or misspelt host is a one-line error (exit 2) within seconds,
not five minutes of the SDK's silent retries. Credentials the workspace rejects (401), and
permissions it refuses (403) before stackci has changed anything, are configuration errors
(exit 2) too, wherever the SDK is called.
"""

from __future__ import annotations

import logging
import os
import re
import time
import urllib.parse
from typing import Mapping

from . import log
from .errors import ConfigError, RunFailed

logger = log.get("dbx")

DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")

#: how long stackci keeps trying to reach a workspace before it says the host does not answer
REACH_SECONDS = 10.0
#: connect / read timeouts of one reachability request
REACH_TIMEOUT = (5.0, 10.0)
#: read timeout of one SDK request (the SDK's default; the retry budget stays the SDK's 300 s)
HTTP_TIMEOUT_SECONDS = 60
HOST_HINT = "give the workspace URL (--host / STACKCI_HOST, or the target's workspace.host), e.g. " \
            "https://adb-1234567890123456.7.azuredatabricks.net"


def parse_duration(text: str, option: str = "--timeout") -> float:
    """``90``, ``90s``, ``15m``, ``1h30m`` → seconds; anything else is a ConfigError."""
    m = DURATION.match(text or "")
    if not text or not text.strip() or not m or not any(m.groups()):
        raise ConfigError(f"{option}: {text!r} is not a duration",
                          hint="write seconds or a number with h/m/s, e.g. 90, 45s, 15m, 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"{option}: the duration must be more than zero", hint="e.g. 30m")
    return total


#: environment variables that hold a Databricks credential: masked wherever stackci hands its
#: environment on (the Databricks CLI, the project's tests)
CREDENTIAL_VARIABLES = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_PASSWORD", "ARM_CLIENT_SECRET")


def check_host(host: str, source: str = "--host") -> str:
    """``host`` as the workspace URL the SDK gets (``https://`` added to a bare host name); a value
    that cannot be one (another scheme, no host, a path, a bare word) is a ConfigError naming
    ``source``."""
    text = (host or "").strip().rstrip("/")
    explicit = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text) is not None
    url = text if explicit else f"https://{text}"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{source} {host!r} is not a workspace URL ({exc})", hint=HOST_HINT) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigError(f"{source} {host!r} is not a workspace URL: the scheme must be https:// (or http:// for a "
                          f"local workspace), not {parts.scheme}://", hint=HOST_HINT)
    name = parts.hostname or ""
    if not name or parts.username or parts.password or parts.query or parts.fragment \
            or parts.path not in ("", "/") or " " in text:
        raise ConfigError(f"{source} {host!r} is not a workspace URL: it must be the scheme and host only", hint=HOST_HINT)
    if not explicit and "." not in name and name != "localhost":
        raise ConfigError(f"{source} {host!r} is not a workspace URL: a bare word is not a workspace host",
                          hint=HOST_HINT)
    del port   # reading it checks it (a port out of range is a ValueError)
    return f"{parts.scheme.lower()}://{parts.netloc}"


def reach(host: str, *, budget: float = REACH_SECONDS, sleep=time.sleep, clock=time.monotonic,
          source: str = "the workspace") -> None:
    """Ask ``host`` once for ``/.well-known/databricks-config`` (any HTTP answer will do); retry
    connection failures and timeouts for ``budget`` seconds with a progress line each time, then
    raise a ConfigError saying the host does not answer."""
    import requests

    url = f"{host}/.well-known/databricks-config"
    progress = log.Progress(logger, f"reaching {host}", clock=clock)
    delay = 1.0
    while True:
        try:
            requests.get(url, timeout=REACH_TIMEOUT, allow_redirects=False).close()
            return
        except requests.exceptions.SSLError as exc:
            raise ConfigError(f"cannot reach {source} {host}: the TLS handshake failed ({first_line(exc)})",
                              hint="check the workspace URL; behind a TLS-intercepting proxy set REQUESTS_CA_BUNDLE "
                                   "to its CA certificate") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema) as exc:
            raise ConfigError(f"{source} {host!r} is not a workspace URL ({first_line(exc)})", hint=HOST_HINT) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            left = budget - progress.elapsed()
            what = _why(exc)
            if left <= 0:
                raise ConfigError(f"cannot reach {source} {host}: {what} (tried for {progress.elapsed():.0f} s)",
                                  hint=f"check the workspace URL and that this machine can reach it; {HOST_HINT}") \
                    from None
            wait = min(delay, left)
            progress.say(f"no answer yet ({what}); trying again in {wait:.0f} s (giving up after {budget:.0f} s)")
            sleep(wait)
            delay = min(delay * 2, 5.0)


def _why(exc: BaseException) -> str:
    """A short reason for a failed connection, from the exception types in its chain (never its text)."""
    import socket

    import requests

    todo, seen = [exc], set()
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, socket.gaierror):   # urllib3 2's NameResolutionError wraps one
            return "the host name does not resolve"
        todo += [e for e in (item.__cause__, item.__context__, getattr(item, "reason", None), *item.args)
                 if isinstance(e, BaseException)]
    if isinstance(exc, requests.exceptions.Timeout):
        return "no answer within the timeout"
    return f"connection failed ({type(exc).__name__})"


class _QuietHostMetadata(logging.Filter):
    """Drops the SDK's warning that the host metadata could not be read: :func:`reach` has checked the
    host, and the SDK carries on with the explicit configuration (token auth does not need it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to automatically resolve config from host metadata")


def _has_default_host(environ: Mapping[str, str]) -> bool:
    if environ.get("DATABRICKS_HOST") or environ.get("DATABRICKS_CONFIG_PROFILE"):
        return True
    cfg = environ.get("DATABRICKS_CONFIG_FILE") or os.path.join(environ.get("HOME") or os.path.expanduser("~"),
                                                                 ".databrickscfg")
    return os.path.isfile(cfg)


def workspace_client(host: str | None = None, profile: str | None = None, platform=None, *,
                     source: str = "--host", environ: Mapping[str, str] | None = None):
    """A WorkspaceClient, authenticated now, so a missing credential fails before any work.

    ``host`` (named ``source`` in messages) is checked and reached first; without it the SDK's
    DATABRICKS_HOST or profile is used, and when there is none either, that is the error."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    environ = os.environ if environ is None else environ
    if host:
        host = check_host(host, source)
    elif not profile and not _has_default_host(environ):
        raise ConfigError("no workspace to talk to: no --host, no DATABRICKS_HOST and no Databricks profile",
                          hint="pass --host (STACKCI_HOST) or set DATABRICKS_HOST (with --job KEY and -t TARGET the "
                               "target's workspace.host is used)")
    elif environ.get("DATABRICKS_HOST"):
        host = check_host(environ["DATABRICKS_HOST"], "DATABRICKS_HOST")
    if host:
        reach(host, source=source_name(source))
    kwargs = {k: v for k, v in (("host", host), ("profile", profile)) if v}
    quiet = _QuietHostMetadata()
    sdk_config_logger = logging.getLogger("databricks.sdk")     # the logger databricks.sdk.config writes to
    sdk_config_logger.addFilter(quiet)
    try:
        config = Config(http_timeout_seconds=HTTP_TIMEOUT_SECONDS, **kwargs)
        headers = config.authenticate()
    except ValueError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConfigError(f"cannot authenticate to Databricks: {first}",
                          hint="set DATABRICKS_HOST and DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID/SECRET, "
                               "or run in GitHub Actions with DATABRICKS_AUTH_TYPE=github-oidc") from None
    finally:
        sdk_config_logger.removeFilter(quiet)
    if platform is not None:
        for secret in (config.token, config.client_secret, headers.get("Authorization", "").partition(" ")[2]):
            if secret:
                platform.mask(secret)
    client = WorkspaceClient(config=config)
    settle_environment(client)
    guard_auth(client)
    return client


def settle_environment(client) -> None:
    """Read the proxy and CA-bundle variables once for ``client``'s session, not on every request.

    A requests session that trusts the environment walks all of ``os.environ`` twice per request
    (the ``*_proxy`` variables and ``no_proxy``): a quarter of a request's client time with 40
    variables, and a CI job has a hundred or more. The settings it would find for the workspace
    host (every request of the client goes there) are put on the session instead, which then
    stops looking; the answers are the same as long as those variables do not change, and
    nothing in one stackci command changes them."""
    import requests

    session = getattr(getattr(client.api_client, "_api_client", None), "_session", None)
    if not isinstance(session, requests.Session) or not session.trust_env:
        return                                   # another SDK layout: leave it as it is
    found = session.merge_environment_settings(client.config.host, {}, None, None, None)
    session.proxies = dict(found["proxies"])
    session.verify = found["verify"]
    session.trust_env = False


def source_name(source: str) -> str:
    return "the workspace" if source in ("--host", "DATABRICKS_HOST") else f"the workspace of {source}"


WRITES = ("POST", "PUT", "PATCH", "DELETE")


def guard_auth(client) -> None:
    """Every request of ``client`` (typed services and ``api_client.do`` alike): a 401 becomes a
    ConfigError (exit 2) naming the workspace and the auth type, and so does a 403 until the
    client has changed something (then it stays the SDK's error, for the caller's context)."""
    from databricks.sdk import errors

    api = client.api_client
    do = api.do
    config = client.config
    state = {"wrote": False}

    def guarded(method, path=None, *args, **kwargs):
        try:
            result = do(method, path, *args, **kwargs)
        except errors.Unauthenticated as exc:
            raise (ConfigError if not state["wrote"] else RunFailed)(
                f"the workspace {config.host} rejected the credentials (auth type {config.auth_type or 'unknown'}, "
                f"401 {exc.error_code or 'Unauthenticated'}: {first_line(exc)})",
                hint="check the token or OAuth credentials for this workspace (DATABRICKS_TOKEN, DATABRICKS_CLIENT_ID/"
                     "SECRET, DATABRICKS_AUTH_TYPE); they may be for another workspace or expired") from None
        except errors.PermissionDenied as exc:
            if state["wrote"]:
                raise
            where = path or kwargs.get("url") or ""
            raise ConfigError(
                f"the workspace {config.host} refused {method} {where} (403 {exc.error_code or 'PermissionDenied'}: "
                f"{first_line(exc)})",
                hint="the identity stackci authenticates as (auth type "
                     f"{config.auth_type or 'unknown'}) lacks a permission: grant it, or use credentials that have "
                     "it; nothing was changed") from None
        if str(method).upper() in WRITES:
            state["wrote"] = True
        return result

    api.do = guarded


def first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    # the SDK appends its configuration dump ("Config: host=..., Env: ...") to 401/403 messages
    text = text.split(". Config: ")[0]
    return text if len(text) <= 200 else text[:200] + "…"


def request_pool(workers: int, name: str, tasks: int | None = None):
    """A thread pool for workspace requests whose threads have all started before it is returned.

    ``ThreadPoolExecutor`` starts a thread on each submit that finds none idle, and each start
    waits until the new thread holds the interpreter lock. Once the first workers are busy
    building requests and reading answers, every later start waits a switch interval (5 ms) or
    more for them: 20 lookups or uploads handed to a fresh pool of 8 cost tens of milliseconds
    in thread starts alone. Here the threads start while nothing else runs, each parked until all
    are up. ``tasks``: how many will be submitted (no more threads than that)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import wait as wait_all

    count = max(1, min(workers, tasks if tasks is not None else workers))
    pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix=name)
    gate = threading.Event()
    parked = [pool.submit(gate.wait) for _ in range(count)]   # none idle: each submit starts one thread
    gate.set()
    wait_all(parked)
    return pool
