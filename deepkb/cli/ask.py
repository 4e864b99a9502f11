"""`deepkb ask`: a thin shell over deepkb.conversation.session.ChatSession that streams the answer and lists its sources."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from deepkb.answer.prompt import cite_label
from deepkb.answer.stream import CPU_FIRST_CHARACTER_S, CPU_SOURCE_TOKENS, DEFAULT_MIN_RELEVANCE, AskOptions, AskResult
from deepkb.cli._common import (
    also_in,
    console,
    display_path,
    err_console,
    kb_option,
    location,
    open_kb,
    scope_from,
    scope_options,
)
from deepkb.display import snippet
from deepkb.errors import UsageError
from deepkb.llm import DEFAULT_CONTEXT_SIZE
from deepkb.retrieval.abstain import reads_many_languages
from deepkb.scope import no_match_message


class _Printer:
    """Streams answer pieces to the terminal: reasoning dimmed (or a spinner while it is hidden)."""

    def __init__(self, show_thinking: bool) -> None:
        self.show_thinking = show_thinking
        self.status = None
        self.in_thinking = False
        self.printed = False

    def __call__(self, kind: str, text: str) -> None:
        if kind == "notice":
            self._stop()
            if self.printed or self.in_thinking:
                console.print()
                self.printed = self.in_thinking = False
            err_console.print(text, style="yellow", soft_wrap=True, markup=False)  # the notice is plain text
            return
        if kind == "reasoning":
            if self.show_thinking:
                console.print(text, style="dim", end="", markup=False, soft_wrap=True)
                self.in_thinking = True
            elif self.status is None and err_console.is_terminal:
                self.status = err_console.status("[dim]thinking…[/]")
                self.status.start()
            return
        self._stop()
        if self.in_thinking:
            console.print()
            self.in_thinking = False
            text = text.lstrip("\n")
        if not self.printed:
            text = text.lstrip()
        if text:
            console.print(text, end="", markup=False, soft_wrap=True)
            self.printed = True

    def _stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def close(self) -> None:
        self._stop()
        if self.printed or self.in_thinking:
            console.print()


def _print_support(result: AskResult) -> None:
    """The answer's sentences that their cited passages do not back (deepkb.answer.grounding), with a one-line count."""
    missing = [s for s in result.support if not s.supported]
    if missing:
        console.print(f"\n⚠ {len(missing)} of {len(result.support)} sentences not supported by the cited passages:",
                      style="yellow", markup=False)  # fmt: skip
        for s in missing:
            console.print(f"  ⚠ {snippet(s.sentence, 200)} ({s.reason})", style="yellow", markup=False, soft_wrap=True)


def _print_sources(result: AskResult, verbose: bool) -> None:
    if result.citations:
        console.print("[bold]Best passages[/]" if result.fallback else "\n[bold]Sources[/]")
        for c in result.citations:
            h = c.hit
            where = location(h.page, h.line_start, h.line_end)
            heading = f"  [magenta]{h.heading}[/]" if h.heading else ""
            console.print(f"[bold cyan][{c.n}][/] [bold]{display_path(h.path)}[/] {where}{heading}", soft_wrap=True)
            console.print("    " + snippet(h.text, 240), markup=False, style="dim")
            if h.also_in:
                console.print("    " + also_in(h.also_in), markup=False, style="dim", soft_wrap=True)
    if result.also_retrieved and not result.abstained:
        names = " · ".join(cite_label(h) for h in result.also_retrieved)
        console.print(f"[dim]Also retrieved (not cited): {names}[/]", soft_wrap=True)
    if result.dropped_markers:
        err_console.print(f"[dim]{result.dropped_markers} citation marker(s) pointed to no source and were removed.[/]")
    if verbose:
        t = result.timings
        parts = [f"retrieve {t.retrieve_ms} ms"]
        if t.load_ms is not None:
            waited = f" (waited {t.model_wait_ms} ms)" if t.model_wait_ms is not None else ""
            parts.append(f"model load {t.load_ms} ms{waited}")
        if t.excerpt_ms is not None:
            parts.append(f"excerpts {t.excerpt_ms} ms")
        if t.grounding_ms is not None:
            parts.append(f"grounding {t.grounding_ms} ms")
        if t.prompt_tokens is not None:
            cached = f", {t.cached_prompt_tokens} cached" if t.cached_prompt_tokens else ""
            budget = f", sources ≤ {t.source_token_budget}" if t.source_token_budget is not None else ""
            parts.append(f"prompt {t.prompt_tokens} tokens{cached}{budget}")
        if t.prefill_ms is not None:
            parts.append(f"prefill {t.prefill_ms} ms")
        if t.ttft_ms is not None:
            parts.append(f"first token {t.ttft_ms} ms")
        if t.tokens_per_s is not None:
            parts.append(f"{t.tokens_per_s} tokens/s ({t.completion_tokens} tokens)")
        err_console.print(f"[dim]{result.model or 'no model'} · {' · '.join(parts)}[/]", soft_wrap=True)
        if (r := result.retrieval) and r["decision"] != "first":
            why = f" ({r['cue']})" if r["cue"] else ""
            sim = f", similarity to the conversation {r['similarity']:.2f}" if r["similarity"] is not None else ""
            err_console.print(
                f"searched as {r['decision']}{why}{sim}: {r['query']!r}", style="dim", markup=False, soft_wrap=True
            )


@click.command()
@click.argument("question")
@click.option("-c", "--continue", "continue_last", is_flag=True, help="Continue the last conversation.")
@click.option("--chat", "chat_id", metavar="ID", help="Continue the conversation with this id (see `deepkb chats`).")
@click.option("--no-save", is_flag=True, help="Do not save this question and answer as a conversation.")
@click.option("-k", "k", type=int, default=AskOptions.k, show_default=True, help="Passages to retrieve.")
@click.option("--model", help="GGUF file or catalog name (default: setting `model`, else the pulled default model).")
@click.option("--llm-url", help="Answer with an OpenAI-compatible server at this URL instead (setting `llm_url`).")
@click.option(
    "--llm-api-key-env",
    metavar="NAME",
    help="Send the API key held in environment variable NAME to --llm-url; no key is sent otherwise.",
)
@click.option(
    "--gpu-layers", type=int, default=None, help="Layers to put on the GPU (-1 all, 0 none; default: all if possible)."
)
@click.option(
    "--ctx", "context_size", type=int, default=None, help=f"Context size in tokens (default {DEFAULT_CONTEXT_SIZE})."
)
@click.option("--threads", type=int, default=None, help="CPU threads for the model (default: the physical cores).")
@click.option(
    "--max-tokens",
    type=int,
    default=AskOptions.answer_tokens,
    show_default=True,
    help="Room for the reply, reasoning included.",
)
@click.option(
    "--temperature", type=float, default=AskOptions.temperature, show_default=True, help="Sampling temperature."
)
@click.option(
    "--min-relevance",
    type=float,
    default=DEFAULT_MIN_RELEVANCE,
    show_default=True,
    help="Abstain when no passage is this similar to the question.",
)
@click.option(
    "--source-tokens",
    type=int,
    default=None,
    help=(
        "Prompt tokens for passages, the best always in (default on a CPU: what this machine prefills, at the speed "
        f"earlier runs measured, in what is left of {CPU_FIRST_CHARACTER_S:g} s from the command's start, "
        f"{CPU_SOURCE_TOKENS} before the first run; on a GPU all that fit). On a CPU or under this option the passages "
        "are the sentences of each retrieved chunk that match the question."
    ),
)
@click.option("--no-think", "skip_reasoning", is_flag=True, help="Skip the reasoning phase: R1 models answer at once.")
@click.option("--show-thinking", is_flag=True, help="Print the model's reasoning, dimmed (and add it to --json).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of streaming.")
@click.option("-v", "--verbose", is_flag=True, help="Print timings: retrieval, prompt tokens, first token, tokens/s.")
@scope_options
@kb_option
@click.pass_context
def ask(
    ctx: click.Context, question: str, continue_last: bool, chat_id: str | None, no_save: bool, k: int,
    model: str | None, llm_url: str | None, llm_api_key_env: str | None, gpu_layers: int | None,
    context_size: int | None, threads: int | None, max_tokens: int, temperature: float, min_relevance: float, source_tokens: int | None,
    skip_reasoning: bool, show_thinking: bool, as_json: bool, verbose: bool, in_paths: tuple[str, ...],
    types: str | None,
) -> None:  # fmt: skip
    """Answer QUESTION from the knowledge base with a local model, citing file, page and lines.

    Streams the answer, then lists the sources it cites. Says "not in the documents" (without running
    the model) when nothing relevant is found; without a model it shows the best passages instead.
    Each answer is saved as a conversation: -c asks a follow-up in the last one, --chat ID in another.
    Ctrl-C stops the answer and keeps what was written so far (exit code 130). An answer cut at
    --max-tokens says so.

    \b
    Example:
        deepkb ask "What does the retention policy say about backups?"
        deepkb ask -c "and how long are they kept offsite?"
        deepkb ask "Who approves key rotation?" --no-think -v
        deepkb ask "..." --json --model ~/models/DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf
        deepkb ask "When is the invoice due?" --in ~/mail --type email
    """
    from deepkb.conversation.session import ChatSession, ConversationStore
    from deepkb.llm import open_configured_llm

    if continue_last and chat_id:
        raise click.UsageError("give -c or --chat ID, not both.")
    scope = scope_from(in_paths, types)
    kb = open_kb(
        ctx, model=model, llm_url=llm_url, llm_api_key_env=llm_api_key_env, gpu_layers=gpu_layers,
        llm_context=context_size, llm_threads=threads,
    )  # fmt: skip
    options = AskOptions(
        k=k, min_relevance=min_relevance, answer_tokens=max_tokens, temperature=temperature,
        skip_reasoning=skip_reasoning, show_thinking=show_thinking, source_tokens=source_tokens, scope=scope,
        cross_language=reads_many_languages(kb.settings.embedding_model),
    )  # fmt: skip
    if scope and not kb.store.scope_documents(scope):  # said before a model is loaded for nothing
        raise UsageError(no_match_message(scope))
    store = ConversationStore(kb.home)
    conversation_id = store.last_id() if continue_last else store.resolve(chat_id) if chat_id else None
    # The model loads in the background while the question is embedded and searched: each takes seconds on a CPU.
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepkb-load-llm")
    load_ms: list[float] = []

    def load():
        started = time.perf_counter()
        llm = open_configured_llm(kb.settings)
        load_ms.append(round((time.perf_counter() - started) * 1000, 1))
        return llm

    model_ready = loader.submit(load)
    session = ChatSession(
        kb, model_ready.result, options=options, conversation_id=conversation_id, save=not no_save, store=store
    )
    printer = None if as_json else _Printer(show_thinking)
    try:
        try:
            result = _run(session, question, printer, process_started())
        finally:
            if printer:
                printer.close()
        if result.timings.load_ms is not None and load_ms:  # the core timed the wait; the load ran meanwhile
            result.timings.model_wait_ms, result.timings.load_ms = result.timings.load_ms, load_ms[0]
        if as_json:
            click.echo(json.dumps(result.to_json(), ensure_ascii=False))
        else:
            _print_support(result)
            _print_sources(result, verbose)
            if result.abstained and not result.also_retrieved and not kb.store.counts()["chunks"]:
                err_console.print("[yellow]The knowledge base is empty; run `deepkb ingest PATH` first.[/]")
        if result.error:
            ctx.exit(1)
        if result.cancelled:  # Ctrl-C: the answer so far is printed and saved; the shell sees the interrupt
            ctx.exit(130)
    finally:
        loader.shutdown(wait=True)  # a model still loading after an abstention finishes before the process exits


def process_started() -> float:
    """When this process started, on the time.perf_counter() clock: the user has waited since then (start-up and
    imports included), and the CPU source budget counts from it. From /proc where there is one, else now."""
    now = time.perf_counter()
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - age if 0 <= age < 60 else now


def _run(session, question: str, printer: _Printer | None, since: float | None = None) -> AskResult:
    """Answer on a worker thread so that Ctrl-C here cancels the answer (kept and saved) instead of killing it."""
    from deepkb.conversation.session import Delta, Done, Notice

    events: queue.Queue = queue.Queue()

    def pump() -> None:
        try:
            for event in session.send(question, waiting_since=since):
                events.put(event)
        except BaseException as exc:  # handed to the main thread, which raises it
            events.put(exc)

    threading.Thread(target=pump, name="deepkb-answer", daemon=True).start()
    while True:
        try:  # Ctrl-C may come while a piece is being printed as well as while waiting for the next
            event = events.get()
            if isinstance(event, BaseException):
                break
            if printer is not None and isinstance(event, Delta):
                printer(event.kind, event.text)
            elif printer is not None and isinstance(event, Notice):
                printer("notice", event.text)
            elif isinstance(event, Done):
                return event.result
        except KeyboardInterrupt:
            session.cancel()
    raise event
