"""/mcp inside `deepkb serve`: the MCP tools of deepkb.mcp over streamable HTTP, beside the OpenAI-compatible API.

The route sits behind the same Guard as every other route (Bearer key, request-size limit, metrics), answers only
when the server is ready, and its `ask` takes a slot of the same generation queue as /v1/chat/completions, so the
queue's limits (and its 429 when full) hold for agents too. On a loopback address the SDK's DNS-rebinding check is
on as well (Host and Origin must be local, or one of --cors-origin).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from deepkb.server.guard import ApiError
from deepkb.server.settings import is_loopback

if TYPE_CHECKING:
    from fastapi import FastAPI

    from deepkb.server.app import ServerState

log = logging.getLogger("deepkb.server")
PATH = "/mcp"
METHODS = ["GET", "POST", "DELETE"]


def mount_mcp(app: FastAPI, state: ServerState) -> None:
    """Serve MCP at /mcp on `app`, its sessions living as long as the app; without the SDK, /mcp says what to install."""
    try:
        from deepkb.mcp.server import Host, build_server
    except ImportError:
        from deepkb.mcp import MISSING_EXTRA

        async def missing() -> None:
            raise ApiError(501, MISSING_EXTRA, "server_error", "mcp_not_installed")

        app.add_api_route(PATH, missing, methods=METHODS, include_in_schema=False)
        return
    from mcp.server.transport_security import TransportSecuritySettings

    settings = state.settings
    host = Host(
        kb=state.kb,
        model=lambda: state.host.llm,
        describe=state.status,
        admit=lambda: _admit(state),
        not_ready=lambda: (
            None if state.ready else "deepkb is starting (loading the knowledge base and the model); retry shortly."
        ),
    )
    server = build_server(host)
    security = None  # a non-loopback bind needs --api-key; the app's own checks cover it
    if is_loopback(settings.host) and "*" not in settings.allowed_hosts:  # the app's SameSite check agrees
        local = ["127.0.0.1", "localhost", "[::1]", *settings.allowed_hosts]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[f"{h}:*" for h in local] + local,
            allowed_origins=[f"http://{h}:*" for h in local] + list(settings.cors_origins),
        )
    sub = server.streamable_http_app(
        streamable_http_path=PATH,
        transport_security=security,
        host=settings.host,
        max_request_body_size=settings.max_body_bytes,
    )
    for route in sub.routes:
        app.router.routes.append(route)
    manager = server.session_manager
    outer = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any):
        async with outer(application) as value, manager.run():  # MCP sessions end before the knowledge base closes
            yield value

    app.router.lifespan_context = lifespan


async def _admit(state: ServerState) -> Callable[[], None]:
    """A generation slot for one `ask`, as /v1/chat/completions takes one; the release frees it (from any thread)."""
    from mcp.server.mcpserver.exceptions import ToolError

    from deepkb.server.queue import QueueFull

    try:
        slot = await state.queue.acquire()
    except QueueFull as exc:
        state.metrics.rejections.labels(reason=exc.reason).inc()
        raise ToolError(f"{exc} (retry in about {exc.retry_after} s)") from None
    metrics, queue = state.metrics, state.queue
    metrics.in_flight.inc()
    began = time.perf_counter()
    released = []

    def release() -> None:
        if released:
            return
        released.append(True)
        queue.note_duration(time.perf_counter() - began)
        metrics.in_flight.dec()
        slot.release()

    return release
