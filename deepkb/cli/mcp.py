"""`deepkb mcp`: a thin shell that opens the knowledge base and serves it over MCP on stdio (deepkb.mcp)."""

from __future__ import annotations

import click

from deepkb.cli._common import kb_option, open_kb
from deepkb.llm import DEFAULT_CONTEXT_SIZE


@click.command()
@click.option("--model", help="GGUF file or catalog name for `ask` (default: setting `model`, else the pulled model).")
@click.option("--llm-url", help="Answer `ask` with an OpenAI-compatible server at this URL (setting `llm_url`).")
@click.option(
    "--llm-api-key-env", metavar="NAME", help="Send the API key held in environment variable NAME to --llm-url."
)
@click.option(
    "--ctx",
    "context_size",
    type=int,
    default=None,
    help=f"Context size in tokens (default {DEFAULT_CONTEXT_SIZE}; setting `llm_context`).",
)
@click.option(
    "--gpu-layers", type=int, default=None, help="Layers to put on the GPU (-1 all, 0 none; setting `gpu_layers`)."
)
@click.option("--retrieval-only", is_flag=True, help="No model: `ask` answers with the best passages, cited.")
@kb_option
@click.pass_context
def mcp(
    ctx: click.Context, model: str | None, llm_url: str | None, llm_api_key_env: str | None, context_size: int | None,
    gpu_layers: int | None, retrieval_only: bool,
) -> None:  # fmt: skip
    """Serve the knowledge base to AI assistants over MCP (Model Context Protocol) on stdin/stdout.

    Tools: search, fetch (a passage and its neighbours), ask (a cited answer from the local model) and
    status; resources deepkb://document/{id}. All read-only. Only the protocol is written to stdout; logs go
    to stderr. The assistant starts this command itself: see the README for Claude Desktop, Claude Code,
    Cursor, LM Studio and Open WebUI. `deepkb serve` offers the same over HTTP at /mcp.

    \b
    Example:
        deepkb mcp --kb ~/kb
        claude mcp add deepkb -- deepkb mcp --kb ~/kb
    """
    from deepkb.mcp import require_mcp

    require_mcp()
    from deepkb.mcp.stdio import serve_stdio

    kb = open_kb(
        ctx, model=model, llm_url=llm_url, llm_api_key_env=llm_api_key_env, llm_context=context_size,
        gpu_layers=gpu_layers,
    )  # fmt: skip
    serve_stdio(kb, retrieval_only=retrieval_only)
