"""`deepkb serve`: an OpenAI-compatible HTTP service over the knowledge base (FastAPI + uvicorn).

The server is a shell like the CLI and the TUI: it renders the conversation core's events (deepkb.conversation.session)
as OpenAI-shaped JSON and SSE, and adds what a long-running service needs around them: a bounded generation
queue, an answer cache, Prometheus metrics, authentication, a content policy and graceful degradation.
"""

from __future__ import annotations

from deepkb.errors import UsageError

MISSING_EXTRA = (
    "the server needs the [server] extra: run `pip install 'deepkb[server]'` (FastAPI, uvicorn, prometheus_client)."
)


def require_server_deps() -> None:
    """Fail with one line, not an ImportError traceback, when the optional server packages are missing."""
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"{MISSING_EXTRA} ({exc.name} is missing)") from None
