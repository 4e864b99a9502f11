"""`deepkb serve`: a thin shell that builds ServerSettings from flags and runs deepkb.server under uvicorn."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import click

from deepkb.cli._common import err_console, kb_option, require_kb
from deepkb.errors import UsageError
from deepkb.llm import DEFAULT_CONTEXT_SIZE
from deepkb.server.settings import ServerSettings

_D = ServerSettings()


@click.command()
@click.option(
    "--host", default=_D.host, show_default=True, help="Address to bind; any other than loopback needs --api-key."
)
@click.option("--port", type=click.IntRange(0, 65535), default=_D.port, show_default=True, help="TCP port.")
@click.option(
    "--watch",
    "watch",
    multiple=True,
    type=click.Path(),
    metavar="DIR",
    help="Keep this folder in step while serving (repeat for more).",
)
@click.option("--model", help="GGUF file or catalog name; with --llm-url the upstream's model name (setting `model`).")
@click.option(
    "--llm-url",
    help="Forward generation to an OpenAI-compatible server: llama.cpp server, vLLM, Ollama (setting `llm_url`).",
)
@click.option(
    "--llm-api-key-env", metavar="NAME", help="Send the API key held in environment variable NAME to --llm-url."
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 256),
    default=_D.parallel,
    show_default=True,
    help="Generations in flight at once with --llm-url (the upstream batches them); a local model runs one.",
)
@click.option("--fallback-model", help="A smaller GGUF to switch to when the model fails to load or errors mid-answer.")
@click.option("--retrieval-only", is_flag=True, help="Serve without a model: answers are the best passages, cited.")
@click.option(
    "--api-key",
    envvar="DEEPKB_API_KEY",
    help="Bearer token required on every route but /health. Given here it shows in `ps` to every local user: "
    "prefer DEEPKB_API_KEY or --api-key-file.",
)
@click.option(
    "--api-key-file",
    envvar="DEEPKB_API_KEY_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the Bearer token from this file (its first line; or DEEPKB_API_KEY_FILE).",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A Host name to answer besides localhost/127.0.0.1/[::1], e.g. a reverse proxy's (repeat; '*': any). "
    "Other names get 403 (DNS rebinding).",
)
@click.option(
    "--queue-size",
    type=click.IntRange(0),
    default=_D.queue_size,
    show_default=True,
    help="Requests that may wait for the model; more get 429 with Retry-After.",
)
@click.option(
    "--queue-wait",
    type=click.FloatRange(min=0.1),
    default=_D.queue_wait,
    show_default=True,
    help="Seconds a request may wait for the model before it gets 429.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="A browser origin allowed to call the API, e.g. http://localhost:3000 (repeat; default: CORS off).",
)
@click.option(
    "--sources-footer",
    is_flag=True,
    help="Append a plain 'Sources:' list to answers (for NextChat and other text-only clients).",
)
@click.option(
    "--blocklist",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="File of words or /regexes/, one a line: a matching answer is withheld.",
)
@click.option(
    "--cache-size",
    type=click.IntRange(0),
    default=_D.cache_size,
    show_default=True,
    help="Answers kept in the answer cache (0: off).",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=_D.max_tokens,
    show_default=True,
    help="Default room for a reply (reasoning included) when a request sets none.",
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
@kb_option
@click.pass_context
def serve(
    ctx: click.Context, host: str, port: int, watch: tuple[str, ...], model: str | None, llm_url: str | None,
    llm_api_key_env: str | None, parallel: int, fallback_model: str | None, retrieval_only: bool, api_key: str | None,
    api_key_file: Path | None, allowed_hosts: tuple[str, ...], queue_size: int,
    queue_wait: float, cors_origins: tuple[str, ...], sources_footer: bool, blocklist: Path | None, cache_size: int,
    max_tokens: int, context_size: int | None, gpu_layers: int | None,
) -> None:  # fmt: skip
    """Serve the knowledge base over an OpenAI-compatible HTTP API, with citations.

    Point Open WebUI, NextChat or any OpenAI client at http://127.0.0.1:8000/v1 with model `deepkb`
    (retrieval + cited answer) or `deepkb-norag` (the model alone). Also: POST /v1/search,
    GET /v1/documents, GET /health, /ready and /metrics (Prometheus).

    \b
    Example:
        deepkb serve --watch ~/notes
        deepkb serve --host 0.0.0.0 --port 8080 --api-key-file ~/.config/deepkb/api-key
        deepkb serve --llm-url http://gpu-box:8000/v1 --model deepseek-r1 --parallel 8
    """
    from deepkb.server import require_server_deps

    api_key = _api_key(api_key, api_key_file)
    require_server_deps()
    import uvicorn

    from deepkb.server.app import create_app

    settings = ServerSettings(
        host=host, port=port, kb=ctx.ensure_object(dict).get("kb"), watch=watch, model=model, llm_url=llm_url,
        llm_api_key_env=llm_api_key_env,
        fallback_model=fallback_model, retrieval_only=retrieval_only, api_key=api_key, parallel=parallel,
        queue_size=queue_size, queue_wait=queue_wait, cors_origins=cors_origins, allowed_hosts=allowed_hosts,
        sources_footer=sources_footer,
        blocklist=blocklist, cache_size=cache_size, max_tokens=max_tokens, context_size=context_size,
        gpu_layers=gpu_layers,
    )  # fmt: skip
    settings.check()
    if not watch:  # with --watch the server fills the knowledge base itself
        require_kb(ctx)
    sock = _bind(host, port)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    server_log = logging.getLogger("deepkb.server")
    server_log.addHandler(handler)
    server_log.setLevel(logging.INFO)
    app = create_app(settings)
    bound = sock.getsockname()[1]
    err_console.print(
        f"deepkb serving http://{host}:{bound}/v1 (models deepkb, deepkb-norag; /health /ready /metrics)"
        + ("" if settings.api_key else "; no API key"),
        soft_wrap=True,
    )
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])  # Ctrl-C: running answers are cancelled, the watcher stops
    except KeyboardInterrupt:
        pass
    err_console.print("stopped.")


def _api_key(given: str | None, key_file: Path | None) -> str | None:
    """The Bearer token from --api-key / DEEPKB_API_KEY or from a file; a blank one is refused, not ignored."""
    if given is not None and key_file is not None:
        raise UsageError("give the API key one way: --api-key (or DEEPKB_API_KEY) or --api-key-file, not both.")
    if key_file is not None:
        try:
            lines = key_file.expanduser().read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"cannot read the API key file {key_file} ({reason}).") from None
        given = lines[0] if lines else ""
        if not given.strip():
            raise UsageError(f"the API key file {key_file} is empty; write the key on its first line.")
    if given is not None and not given.strip():
        raise UsageError(
            "--api-key is empty or only whitespace, so no client could use the server; give a real key "
            "(DEEPKB_API_KEY or --api-key-file keep it out of `ps`)."
        )
    return given.strip() if given is not None else None


def _bind(host: str, port: int) -> socket.socket:
    """Bind before anything loads, so a taken port is one clear line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host.") from None
    sock.set_inheritable(True)
    return sock
