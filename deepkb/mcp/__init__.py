"""deepkb over the Model Context Protocol: the knowledge base as tools and resources for agents and desktop
assistants (Claude Desktop, Claude Code, Cursor, LM Studio, Open WebUI).

deepkb.mcp.tools holds what the tools do (plain calls into the knowledge base and the conversation core);
deepkb.mcp.server renders them with the official `mcp` SDK; deepkb.mcp.stdio runs them for `deepkb mcp`, and
deepkb.server.mcp mounts them at /mcp inside `deepkb serve`.
"""

from __future__ import annotations

from deepkb.errors import UsageError

MISSING_EXTRA = "MCP needs the [mcp] extra: run `pip install 'deepkb[mcp]'` (the official `mcp` SDK, 2.x)."


def require_mcp() -> None:
    """Fail with one line, not an ImportError traceback, when the optional MCP SDK is missing."""
    try:
        import mcp.server  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"{MISSING_EXTRA} ({exc.name} is missing)") from None
