"""The HTTP layer shared by the GitHub and Azure Repos clients.

One ``requests.Session`` per client, JSON in and out, and the failures a CI job
meets turned into stackci errors that say how to fix them: missing or rejected
credentials and missing permissions are configuration (exit 2); a rate limit
that resets soon is waited for (bounded by ``max_wait``), a longer one is an
error naming the reset time. The clock and the sleep are passed in, so tests
never wait.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping

import requests

from ..errors import ConfigError, RunFailed

#: how long a call may wait for a rate limit to reset before it gives up
DEFAULT_MAX_WAIT = 60.0
#: how many times one call is retried after waiting for a rate limit
MAX_RATE_LIMIT_RETRIES = 3
TIMEOUT = (10, 60)


class HostingError(RunFailed):
    """A call to the hosting service failed (exit 1). ``status`` is the HTTP status."""

    title = "stackci: hosting API"

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None,
                 payload: Any = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.payload = payload


class AlreadyExists(HostingError):
    """The object exists already (GitHub 422 ``already_exists``, Azure 409)."""


class NotFound(HostingError):
    """404: the object does not exist (or the token may not see it)."""


class PermissionDenied(ConfigError):
    """The credentials work but lack a permission (403, Azure ``updateStatus``). Exit 2."""

    title = "stackci: permission denied"

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class AuthenticationFailed(ConfigError):
    """No credentials, or the service rejected them (401). Exit 2."""

    title = "stackci: authentication failed"


class RateLimited(HostingError):
    """The rate limit resets later than the caller is willing to wait."""


@dataclass
class Transport:
    """What a client needs besides its base URL and auth: injectable for tests."""

    session: requests.Session = field(default_factory=requests.Session)
    sleep: Callable[[float], None] = field(default=lambda seconds: time.sleep(seconds))
    #: wall clock: rate-limit resets are epoch seconds
    now: Callable[[], float] = field(default=lambda: time.time())
    max_wait: float = DEFAULT_MAX_WAIT


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M:%S UTC")


def rate_limit_wait(response: requests.Response, now: float) -> tuple[float, str] | None:
    """Seconds to wait and a description, when ``response`` is a rate-limit answer; else None.

    GitHub: a 403 or 429 with ``x-ratelimit-remaining: 0`` waits until ``x-ratelimit-reset``
    (epoch seconds); a ``retry-after`` (secondary limits, Azure DevOps) waits that long.
    A 403 without those headers is a permission problem, not a limit.
    """
    if response.status_code not in (403, 429):
        return None
    headers = response.headers
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            seconds = max(0.0, float(retry_after))
        except ValueError:
            seconds = 60.0
        return seconds, f"retry after {seconds:g} s"
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            reset = float(headers["x-ratelimit-reset"])
        except ValueError:
            return 60.0, "rate limit exhausted"
        return max(0.0, reset - now) + 1.0, f"rate limit exhausted until {_utc(reset)}"
    if response.status_code == 429:
        return 60.0, "too many requests"
    return None


class Client:
    """Base of the hosting clients: ``request`` with rate limits and error translation."""

    service = "hosting API"
    #: what to say when credentials are missing or rejected
    auth_hint = "check the token"

    def __init__(self, base_url: str, headers: Mapping[str, str], transport: Transport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.transport = transport or Transport()
        self.headers = dict(headers)

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping | None = None,
                ok: tuple[int, ...] = (200, 201, 204)) -> requests.Response:
        url = self.url(path)
        for attempt in range(MAX_RATE_LIMIT_RETRIES + 1):
            try:
                response = self.transport.session.request(method, url, json=json, params=params,
                                                          headers=self.headers, timeout=TIMEOUT,
                                                          allow_redirects=False)
            except requests.RequestException as exc:
                raise HostingError(f"{self.service}: {method} {url} failed: {type(exc).__name__}",
                                   hint="check the API URL and the network") from None
            waited = rate_limit_wait(response, self.transport.now())
            if waited is not None:
                seconds, what = waited
                if seconds > self.transport.max_wait or attempt == MAX_RATE_LIMIT_RETRIES:
                    raise RateLimited(f"{self.service} rate limit: {what} ({seconds:.0f} s; this step waits "
                                      f"at most {self.transport.max_wait:.0f} s)", status=response.status_code,
                                      hint="re-run the job after the reset, or use a token with its own "
                                           "limit (a GitHub App installation token)")
                self.transport.sleep(seconds)
                continue
            if response.status_code in ok:
                return response
            self.fail(method, url, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def fail(self, method: str, url: str, response: requests.Response):
        raise HostingError(f"{self.service}: {method} {url} answered {response.status_code}",
                           status=response.status_code)

    @staticmethod
    def body(response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    def json(self, method: str, path: str, **kwargs) -> Any:
        return self.body(self.request(method, path, **kwargs))


def link_next(response: requests.Response) -> str | None:
    """The ``rel="next"`` URL of a GitHub ``Link`` header, if any."""
    return (response.links.get("next") or {}).get("url")


def paginate(client: Client, path: str, params: Mapping | None = None, max_pages: int = 100) -> Iterator[Any]:
    """Every item of a GitHub list endpoint, following ``Link: rel="next"``."""
    response = client.request("GET", path, params=params)
    for _ in range(max_pages):
        for item in client.body(response) or []:
            yield item
        nxt = link_next(response)
        if not nxt:
            return
        response = client.request("GET", nxt)
