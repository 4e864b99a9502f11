"""`deepkb mcp`: the MCP server on stdin/stdout, for a desktop assistant that starts it as a subprocess.

Only protocol goes to stdout. The SDK's stdio transport writes the protocol to a private copy of the standard
output and points descriptor 1 at stderr while it serves, so a print, a progress bar or a C library's message
(llama.cpp, OpenVINO) cannot corrupt the stream; deepkb's own logs go to stderr too.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepkb.kb import KnowledgeBase
    from deepkb.llm import LLM


class LocalModel:
    """The answer model of one `deepkb mcp` process: loaded on the first question, kept for the next ones."""

    def __init__(self, kb: KnowledgeBase, retrieval_only: bool) -> None:
        self.kb, self.retrieval_only = kb, retrieval_only
        self.llm: LLM | None = None
        self.reason: str | None = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        """What ChatSession takes: None (passages only), the loaded model, or a loader run on the first question."""
        if self.retrieval_only:
            return None
        return self.llm if self.llm is not None else self._load

    def _load(self) -> LLM:
        from deepkb.errors import DeepKBError
        from deepkb.llm import open_configured_llm

        with self._lock:
            if self.llm is None:
                try:
                    self.llm = open_configured_llm(self.kb.settings)
                except DeepKBError as exc:
                    self.reason = str(exc)
                    raise
                self.reason = None
            return self.llm

    def describe(self) -> dict[str, Any]:
        if self.retrieval_only:
            return {"mode": "retrieval-only", "model": None, "reason": "--retrieval-only was given"}
        if self.llm is None:
            configured = self.kb.settings.llm_url or self.kb.settings.model or "the pulled default model"
            return {"mode": "model (loaded on the first question)", "model": configured, "reason": self.reason}
        return {"mode": "model", "model": self.llm.name, "reason": None}


def serve_stdio(kb: KnowledgeBase, retrieval_only: bool = False) -> None:
    """Serve `kb` over MCP on stdio until the client closes the stream."""
    import anyio

    from deepkb.mcp.server import Host, build_server

    handler = logging.StreamHandler()  # stderr
    handler.setFormatter(logging.Formatter("deepkb mcp: %(message)s"))
    log = logging.getLogger("deepkb.mcp")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # the SDK gives the root logger a handler of its own
    model = LocalModel(kb, retrieval_only)
    server = build_server(Host(kb=kb, model=model.get, describe=model.describe))
    log.info("serving %s over stdio", kb.home)
    anyio.run(server.run_stdio_async)
