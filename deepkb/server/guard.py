"""Guard: the ASGI layers in front of every route, installed together by `install()`.

Outermost, `SameSite` refuses a Host header that is not the server's own name (a web page reaching a loopback
server through DNS rebinding) and a browser Origin that CORS does not allow (another site's page). Then CORS when
configured, then `Guard`: Bearer auth, request-size limit, per-route metrics. They wrap the whole application, so
routes and mounts added later (/mcp) are covered too.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deepkb.server.render import error_body

if TYPE_CHECKING:
    from fastapi import FastAPI

    from deepkb.server.app import ServerState
    from deepkb.server.settings import ServerSettings

OPEN_PATHS = {"/health"}  # the one route without authentication


class ApiError(Exception):
    """An error answered in OpenAI's error shape."""

    def __init__(
        self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
        param: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.type, self.code, self.param, self.headers = status, type_, code, param, headers


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(str(exc), exc.type, exc.code, exc.param), exc.status, headers=exc.headers)


class Guard:
    """ASGI middleware: Bearer auth on every route but /health, request-size limit, per-route metrics."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app, self.state = app, state
        self.key = (state.settings.api_key or "").strip().encode("utf-8")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            problem = self._check(scope)
            if problem is not None:
                await error_response(problem)(scope, receive, sending)
                return
            await self.app(scope, self._limited(receive), sending)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or ("/health" if scope["path"] == "/health" else "other")
            metrics = self.state.metrics
            metrics.requests.labels(route=label, method=scope["method"], status=str(status[0])).inc()
            metrics.latency.labels(route=label).observe(time.perf_counter() - started)

    def _check(self, scope: dict) -> ApiError | None:
        headers = dict(scope["headers"])
        if self.key and scope["path"] not in OPEN_PATHS and scope["method"] != "OPTIONS":
            given = headers.get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                return ApiError(401, "missing or wrong API key: send `Authorization: Bearer <key>`.",
                                "invalid_request_error", "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        length = headers.get(b"content-length")
        limit = self.state.settings.max_body_bytes
        if length is not None and (not length.isdigit() or int(length) > limit):
            return ApiError(413, f"the request body is larger than this server accepts ({limit} bytes).",
                            code="request_too_large")  # fmt: skip
        return None

    def _limited(self, receive: Any) -> Any:
        """Count a body sent without Content-Length (chunked) and stop it at the limit."""
        limit, seen = self.state.settings.max_body_bytes, [0]

        async def receiving() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise StarletteHTTPException(
                        413, f"the request body is larger than this server accepts ({limit} bytes)."
                    )
            return message

        return receiving


def install(app: FastAPI, state: ServerState) -> None:
    """Put the guards around the whole app: SameSite outermost, then CORS (when configured), then Guard."""
    settings = state.settings
    app.add_middleware(Guard, state=state)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])  # fmt: skip
    app.add_middleware(SameSite, settings=settings)  # added last: runs first


class SameSite:
    """ASGI middleware: only requests addressed to this server by name, and only browser origins it allows.

    Host: on a loopback address only loopback names (localhost, 127.0.0.1, [::1]) and --allowed-host names; a web
    page that rebinds its own name to 127.0.0.1 still sends that name. On another address (which needs an API key)
    any Host, unless --allowed-host names some. Origin (sent by browsers): the server's own, or a --cors-origin."""

    def __init__(self, app: Any, settings: ServerSettings) -> None:
        from deepkb.server.settings import is_loopback

        self.app = app
        self.names = {h.lower().strip("[]") for h in settings.allowed_hosts}
        self.any_host = "*" in self.names or (not is_loopback(settings.host) and not self.names)
        self.origins = {o.rstrip("/").lower() for o in settings.cors_origins}
        self._loopback = is_loopback

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            problem = self._check(scope)
            if problem is not None:
                if scope["type"] == "http":
                    await error_response(problem)(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)

    def _check(self, scope: dict) -> ApiError | None:
        hosts = [v for k, v in scope["headers"] if k == b"host"]
        host = hosts[0].decode("latin-1").strip() if hosts else ""
        if len(hosts) > 1 or (host and not self.allowed_host(host)) or (not host and not self.any_host and
                                                                      scope.get("http_version") != "1.0"):  # fmt: skip
            shown = host[:80] or "none"
            return ApiError(403, f"the Host header {shown!r} is not this server's name; connect to 127.0.0.1 or "
                            "localhost, or start deepkb serve with --allowed-host NAME.", code="host_not_allowed")  # fmt: skip
        origin = next((v.decode("latin-1").strip() for k, v in scope["headers"] if k == b"origin"), None)
        if origin is not None and not self.allowed_origin(origin, host):
            return ApiError(403, f"requests from the web page at {origin[:80]!r} are not allowed; start deepkb serve "
                            "with --cors-origin ORIGIN to allow that site.", code="origin_not_allowed")  # fmt: skip
        return None

    def allowed_host(self, host: str) -> bool:
        """The name part of a Host header (no port), checked against loopback names and --allowed-host."""
        if self.any_host:
            return True
        match = re.fullmatch(r"\[([0-9a-f:.]+)\](?::\d{1,5})?|([^\[\]:@/\s]+)(?::\d{1,5})?", host.lower())
        if match is None:  # not a host[:port] at all
            return False
        name = match.group(1) or match.group(2)
        return name in self.names or self._loopback(name)

    def allowed_origin(self, origin: str, host: str) -> bool:
        """The server's own origin (a page it served, were there one) or one allowed by --cors-origin."""
        origin = origin.rstrip("/").lower()
        if origin in self.origins or "*" in self.origins:
            return True
        return bool(host) and origin in (f"http://{host.lower()}", f"https://{host.lower()}")
