"""Request and error plumbing shared by the handlers of the local workspace.

Handlers receive a :class:`Request` and return a JSON-able dict (or a
:class:`RawResponse`); they raise :class:`ApiError` for anything the client did
wrong. The server turns an ``ApiError`` into the Databricks error body
``{"error_code": ..., "message": ...}`` with its HTTP status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class ApiError(Exception):
    """An error answered to the client in the Databricks shape."""

    def __init__(self, status: int, error_code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error_code": self.error_code, "message": self.message}


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def malformed(message: str) -> ApiError:
    return ApiError(400, "MALFORMED_REQUEST", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


def already_exists(message: str, status: int = 400) -> ApiError:
    return ApiError(status, "RESOURCE_ALREADY_EXISTS", message)


@dataclass
class RawResponse:
    """A non-JSON answer (file downloads)."""

    body: bytes
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object",
               list: "an array", float: "a number"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    principal: str | None = None
    match: dict[str, str] = field(default_factory=dict)
    _json: Any = None

    def json(self) -> dict:
        """The JSON body (an empty body is ``{}``); malformed → 400 MALFORMED_REQUEST."""
        if self._json is None:
            if not self.body.strip():
                self._json = {}
            else:
                try:
                    self._json = json.loads(self.body)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise malformed("Invalid JSON given in the body of the request - "
                                    f"failed to parse given JSON ({exc.__class__.__name__})") from None
                if not isinstance(self._json, dict):
                    raise malformed("Invalid JSON given in the body of the request - expected a map")
        return self._json

    # ---- typed access to body fields ---------------------------------------

    def field(self, name: str, kind: type, *, required: bool = False, default: Any = None) -> Any:
        """A field of the JSON body, checked against ``kind``."""
        return typed(self.json(), name, kind, required=required, default=default)

    # ---- typed access to query parameters ----------------------------------

    def arg(self, name: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.query.get(name)
        if value is None or value == "":
            if required:
                raise invalid(f"Missing required field: {name}")
            return default
        return value

    def int_arg(self, name: str, *, required: bool = False, default: int | None = None) -> int | None:
        value = self.arg(name, required=required)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise invalid(f"Invalid value for parameter {name}: {value!r} is not an integer") from None

    def bool_arg(self, name: str, default: bool = False) -> bool:
        value = self.arg(name)
        if value is None:
            return default
        low = value.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise invalid(f"Invalid value for parameter {name}: {value!r} is not a boolean")


def typed(doc: dict, name: str, kind: type, *, required: bool = False, default: Any = None,
          where: str = "") -> Any:
    """``doc[name]`` checked against ``kind`` (ints accept integral strings, as the real API does)."""
    label = f"{where}{name}"
    if name not in doc or doc[name] is None:
        if required:
            raise invalid(f"Missing required field: {label}")
        return default
    value = doc[name]
    if kind is int:
        if isinstance(value, bool):
            raise malformed(f"Invalid JSON given in the body of the request - "
                            f"expected an integer for field '{label}'")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise malformed(f"Invalid JSON given in the body of the request - expected an integer for field '{label}'")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise malformed(f"Invalid JSON given in the body of the request - expected a boolean for field '{label}'")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise malformed(f"Invalid JSON given in the body of the request - expected a number for field '{label}'")
    if not isinstance(value, kind):
        raise malformed(f"Invalid JSON given in the body of the request - "
                        f"expected {_TYPE_NAMES.get(kind, kind.__name__)} for field '{label}'")
    return value
