"""`deepkb chat`: a thin shell that opens the knowledge base and starts the Textual chat (deepkb.tui)."""

from __future__ import annotations

import importlib.util
from functools import partial

import click

from deepkb.answer import AskOptions
from deepkb.cli._common import kb_option, open_kb
from deepkb.errors import UsageError
from deepkb.llm import DEFAULT_CONTEXT_SIZE


@click.command()
@click.option(
    "--watch", "watch", multiple=True, type=click.Path(), help="Keep this folder in step while chatting (repeatable)."
)
@click.option("--model", envvar="DEEPKB_MODEL", help="GGUF file or catalog name (default: the pulled default model).")
@click.option("--llm-url", envvar="DEEPKB_LLM_URL", help="Answer with an OpenAI-compatible server at this URL instead.")
@click.option("--no-model", is_flag=True, help="Retrieval only: show the best passages, never load a model.")
@click.option(
    "--gpu-layers", type=int, default=None, help="Layers to put on the GPU (-1 all, 0 none; default: all if possible)."
)
@click.option(
    "--ctx", "context_size", type=int, default=DEFAULT_CONTEXT_SIZE, show_default=True, help="Context size in tokens."
)
@click.option("-k", "k", type=int, default=AskOptions.k, show_default=True, help="Passages to retrieve per question.")
@click.option("--no-think", "skip_reasoning", is_flag=True, help="Start with reasoning off (/think on turns it on).")
@click.option(
    "--resume", "conversation_id", help="Continue a saved conversation (its id or a prefix, see `deepkb chats`)."
)
@kb_option
@click.pass_context
def chat(
    ctx: click.Context, watch: tuple[str, ...], model: str | None, llm_url: str | None, no_model: bool,
    gpu_layers: int | None, context_size: int, k: int, skip_reasoning: bool, conversation_id: str | None,
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
    """
    if importlib.util.find_spec("textual") is None:
        raise UsageError(
            "the chat needs Textual; install it with `pip install 'deepkb[tui]'` (or `pip install textual`)."
        )
    from deepkb.config import kb_home
    from deepkb.conversation import ConversationStore
    from deepkb.llm import open_llm
    from deepkb.tui.app import ChatConfig, run_chat

    home = kb_home(ctx.ensure_object(dict).get("kb"))
    if conversation_id:
        conversation_id = ConversationStore(home).resolve(conversation_id)
    load_llm = None
    if not no_model:
        cache_dir = home / "cache" / "prompts"
        load_llm = partial(
            open_llm, model, url=llm_url, context_size=context_size, gpu_layers=gpu_layers, cache_dir=cache_dir
        )
    label = llm_url or (model and click.format_filename(model, shorten=True)) or "the model"
    options = AskOptions(k=k, skip_reasoning=skip_reasoning)
    # The knowledge base opens in a worker behind the screen: its imports (numpy, hnswlib, the embedder) take a while.
    config = ChatConfig(partial(open_kb, ctx), load_llm, label, options, watch=watch, conversation_id=conversation_id)
    run_chat(config)
