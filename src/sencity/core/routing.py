"""Framework-agnostic routes, requests and responses.

Modules declare :class:`Route` objects; the ASGI adapter in :mod:`sencity.web.asgi`
turns them into Starlette routes and enforces authentication, roles and tenants
before a handler runs.  Handlers take a :class:`Request` and return a
:class:`Response` (or a dict/list, sent as JSON).  Plain ``def`` handlers run in a
worker thread, so they may call the (synchronous) store.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sencity.errors import BadRequest, UnsupportedMediaType

if TYPE_CHECKING:
    from sencity.auth.service import Principal
    from sencity.core.platform import Platform


@dataclass
class Request:
    method: str
    path: str
    path_params: dict[str, str]
    query: list[tuple[str, str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    platform: Platform
    principal: Principal | None
    tenant: str
    role: str | None
    request_id: str
    client: str = ""
    cookies: Mapping[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.query:
            if k == name:
                return v
        return default

    def args(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]

    def json(self) -> Any:
        ctype = self.headers.get("content-type", "application/json").split(";")[0].strip()
        if ctype not in ("application/json", "application/ld+json") and not ctype.endswith("+json"):
            raise UnsupportedMediaType(f"expected a JSON body, got content type '{ctype}'")
        try:
            return json.loads(self.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from exc


@dataclass
class Response:
    body: Any = None  # bytes, str, or JSON-serialisable
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str | None = None
    cookies: list[dict[str, Any]] = field(default_factory=list)

    def set_cookie(self, key: str, value: str, **kw: Any) -> None:
        self.cookies.append({"key": key, "value": value, **kw})


@dataclass
class StreamResponse:
    """A long-lived response (server-sent events and the like)."""

    iterator: AsyncIterator[bytes]
    media_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], "Response | StreamResponse | Any | Awaitable[Any]"]


@dataclass(frozen=True)
class Route:
    """One endpoint.

    ``roles`` are the roles that may call it; ``public=True`` lets anyone in (then
    ``roles`` is ignored).  ``scope`` says where the role must be held:

    * ``tenant`` — on the request's tenant (``NGSILD-Tenant`` header, else the default);
    * ``platform`` — on every tenant (``*``): platform administration;
    * ``user`` — on at least one tenant: calls about the caller themself.
    """

    method: str
    path: str
    handler: Handler
    roles: frozenset[str] = frozenset()
    public: bool = False
    scope: Literal["tenant", "platform", "user"] = "tenant"
    name: str = ""
    summary: str = ""

    def __post_init__(self) -> None:
        if not self.public and not self.roles:
            raise ValueError(f"route {self.method} {self.path}: declare roles or public=True")
