"""`deepkb chat`: a thin shell that opens the knowledge base and starts the Textual chat (deepkb.tui)."""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click

from deepkb.answer.stream import AskOptions
from deepkb.cli._common import kb_option, require_kb, scope_from, scope_options
from deepkb.errors import UsageError

if TYPE_CHECKING:
    from deepkb.kb import KnowledgeBase


@click.command()
@click.option(
    "--watch", "watch", multiple=True, type=click.Path(), help="Keep this folder in step while chatting (repeatable)."
)
@click.option("--model", help="GGUF file or catalog name (default: setting `model`, else the pulled default model).")
@click.option("--llm-url", help="Answer with an OpenAI-compatible server at this URL instead (setting `llm_url`).")
@click.option(
    "--llm-api-key-env", metavar="NAME", help="Send the API key held in environment variable NAME to --llm-url."
)
@click.option("--no-model", is_flag=True, help="Retrieval only: show the best passages, never load a model.")
@click.option(
    "--gpu-layers", type=int, default=None, help="Layers to put on the GPU (-1 all, 0 none; default: all if possible)."
)
@click.option("--ctx", "context_size", type=int, default=None, help="Context size in tokens (setting `llm_context`).")
@click.option("--threads", type=int, default=None, help="CPU threads for the model (default: the physical cores).")
@click.option("-k", "k", type=int, default=AskOptions.k, show_default=True, help="Passages to retrieve per question.")
@click.option("--no-think", "skip_reasoning", is_flag=True, help="Start with reasoning off (/think on turns it on).")
@click.option(
    "--resume", "conversation_id", help="Continue a saved conversation (its id or a prefix, see `deepkb chats`)."
)
@scope_options
@kb_option
@click.pass_context
def chat(
    ctx: click.Context, watch: tuple[str, ...], model: str | None, llm_url: str | None, llm_api_key_env: str | None,
    no_model: bool, gpu_layers: int | None, context_size: int | None, threads: int | None, k: int,
    skip_reasoning: bool, conversation_id: str | None, in_paths: tuple[str, ...], types: str | None,
) -> None:  # fmt: skip
    """Chat with the knowledge base in a full-screen terminal UI, with sources beside each answer.

    The screen opens at once and the model loads in the background while you type. Each answer streams in
    with [n] citation markers; the sources pane lists file, page/lines and heading of every passage. Enter
    on a source reads it whole, `e` opens the file at that line in $EDITOR. Esc stops an answer, /help
    lists the commands and keys. Conversations are saved and can be resumed (ctrl+o).

    \b
    Example:
        deepkb chat
        deepkb chat --watch ~/notes --no-think
        deepkb chat --llm-url http://localhost:8080/v1
        deepkb chat --in ~/mail --type email   (or /in and /type while chatting)
    """
    if importlib.util.find_spec("textual") is None:
        raise UsageError(
            "the chat needs Textual; install it with `pip install 'deepkb[tui]'` (or `pip install textual`)."
        )
    from deepkb.config import Settings
    from deepkb.conversation.session import ConversationStore
    from deepkb.llm import open_configured_llm
    from deepkb.tui.app import ChatConfig, run_chat

    obj = ctx.ensure_object(dict)
    if not watch:  # with --watch the chat fills the knowledge base itself
        require_kb(ctx)
    settings = Settings.load(
        obj.get("kb"), **obj.get("settings", {}), model=model, llm_url=llm_url, llm_api_key_env=llm_api_key_env,
        gpu_layers=gpu_layers, llm_context=context_size, llm_threads=threads,
    )  # fmt: skip
    if conversation_id:
        conversation_id = ConversationStore(settings.home).resolve(conversation_id)
    load_llm = None if no_model else partial(open_configured_llm, settings)
    label = settings.llm_url or (Path(settings.model).name if settings.model else "the model")
    options = AskOptions(k=k, skip_reasoning=skip_reasoning, scope=scope_from(in_paths, types))

    def open_kb() -> KnowledgeBase:
        """Runs in a worker behind the screen: the knowledge base's imports (numpy, hnswlib, embedder) take a while."""
        from deepkb.kb import KnowledgeBase

        kb = KnowledgeBase(settings)
        ctx.call_on_close(kb.close)
        return kb

    run_chat(ChatConfig(open_kb, load_llm, label, options, watch=watch, conversation_id=conversation_id))
