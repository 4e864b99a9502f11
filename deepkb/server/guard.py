"""Guard: the ASGI layer in front of every route: Bearer auth, request-size limit, per-route metrics."""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deepkb.server.render import error_body

if TYPE_CHECKING:
    from deepkb.server.app import ServerState

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
        self.key = (state.settings.api_key or "").encode("utf-8")

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
