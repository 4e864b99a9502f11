"""ServerSettings: everything `deepkb serve` is configured with, in one typed place (CLI flag > environment)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from deepkb.answer.stream import AskOptions
from deepkb.errors import UsageError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSettings:
    """How one `deepkb serve` process runs. Field defaults are the tested defaults."""

    host: str = "127.0.0.1"
    """Address to bind; any non-loopback address requires api_key."""
    port: int = 8000
    """TCP port (0: any free port, for tests)."""
    kb: Path | None = None
    """Knowledge-base folder (None: DEEPKB_HOME, else the platform data dir)."""
    watch: tuple[str, ...] = ()
    """Folders (or files) kept in step with the knowledge base while the server runs."""
    model: str | None = None
    """GGUF path or catalog name; with llm_url, the upstream's model name (None: the KB's `model` setting)."""
    llm_url: str | None = None
    """Forward generation to this OpenAI-compatible server (None: the KB's `llm_url` setting)."""
    llm_api_key_env: str | None = None
    """Environment variable holding the key sent to llm_url (None: the KB's `llm_api_key_env` setting)."""
    fallback_model: str | None = None
    """A smaller GGUF to switch to when the model fails to load or errors mid-run."""
    retrieval_only: bool = False
    """Serve without a model: answers are the best passages with citations."""
    api_key: str | None = field(default=None, repr=False)
    """Bearer token required on every route but /health (never logged)."""
    parallel: int = 1
    """Generations in flight at once; a local llama.cpp model always runs one."""
    queue_size: int = 8
    """Requests that may wait for a generation slot; more are refused with 429."""
    queue_wait: float = 120.0
    """Seconds a request may wait for a slot before it is refused with 429."""
    keepalive: float = 10.0
    """Seconds between SSE comment keep-alives while a stream waits or the model reasons."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API (none: CORS off, and browser requests from other sites refused)."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names besides the loopback ones this server answers to (a reverse proxy's name; "*": any)."""
    sources_footer: bool = False
    """Append a plain "Sources:" list to each answer's text, for clients that show only the text."""
    blocklist: Path | None = None
    """File of words or /regex/ patterns, one a line; a matching answer is withheld."""
    max_body_bytes: int = 1_000_000
    """Largest accepted request body."""
    max_messages: int = 200
    """Most messages accepted in one chat request."""
    cache_size: int = 256
    """Answers kept in the answer cache (least recently used are dropped)."""
    context_size: int | None = None
    """Model context in tokens (None: the KB's `llm_context` setting)."""
    gpu_layers: int | None = None
    """Layers offloaded to the GPU (None: the KB's `gpu_layers` setting)."""
    max_tokens: int = AskOptions.answer_tokens
    """Default room for a reply (reasoning included) when the request gives none."""

    def llm_overrides(self) -> dict[str, object]:
        """The model settings given here, as overrides of the knowledge base's own (deepkb.config.Settings)."""
        return {"model": self.model, "llm_url": self.llm_url, "llm_api_key_env": self.llm_api_key_env,
                "llm_context": self.context_size, "gpu_layers": self.gpu_layers}  # fmt: skip

    def check(self) -> None:
        """Refuse unsafe or impossible settings before anything starts."""
        if self.api_key is not None and not self.api_key.strip():
            raise UsageError(
                "the API key is empty or only whitespace, so no client could use the server; give a real key with "
                "--api-key-file FILE or DEEPKB_API_KEY."
            )
        if not is_loopback(self.host) and not self.api_key:
            raise UsageError(
                f"binding {self.host} exposes the knowledge base to the network; set --api-key or DEEPKB_API_KEY "
                "(or bind 127.0.0.1)."
            )
        if self.parallel < 1 or self.queue_size < 0 or self.queue_wait <= 0:
            raise UsageError("--parallel must be at least 1, --queue-size at least 0, --queue-wait above 0.")

    def check_model(self, llm_url: str) -> None:
        """Checks that need the resolved upstream URL (it may come from the knowledge base's config.toml)."""
        if self.parallel > 1 and not llm_url:
            raise UsageError("--parallel above 1 needs --llm-url: a local model generates one answer at a time.")
