"""Prompt cache: llama.cpp's KV state for the fixed start of every prompt, kept on disk between runs.

Every `deepkb ask` prompt starts with the same tokens (template header and system prompt). A one-shot process
would prefill them again on every run; instead their KV state is saved once, keyed by everything it depends on,
and loaded in a few milliseconds by the next process. Inside one process llama.cpp already reuses the
longest common prefix with the previous prompt, so the disk is read only when the context is empty.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import statistics
import struct
from collections.abc import Sequence
from pathlib import Path

MAGIC = b"DKBKV1\n"
KEEP_FILES = 8  # one file per model x system prompt x context size; the oldest go first
MIN_TOKENS = 16  # below this a prefill costs less than the file
SPEED_RUNS = 5  # prefill speeds remembered per model; their median is used
SPEED_MODELS = 16  # models remembered


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _header(prefix: Sequence[int]) -> bytes:
    """Magic, then the prefix's tokens: a file is used only for exactly the tokens it holds."""
    return MAGIC + struct.pack(f"<I{len(prefix)}i", len(prefix), *prefix)


class PromptCache:
    """Saves and restores the KV state of a token prefix for one loaded llama_cpp.Llama."""

    def __init__(self, folder: Path, llama, identity: str) -> None:
        self.folder = folder
        self.llama = llama
        self.identity = identity  # model file, context size, offload: what the state depends on

    def _file(self, prefix: Sequence[int]) -> Path:
        digest = hashlib.sha256(self.identity.encode())
        digest.update(struct.pack(f"<{len(prefix)}i", *prefix))
        return self.folder / f"{digest.hexdigest()[:32]}.kv"

    def restore(self, prefix: Sequence[int]) -> bool:
        """Load the saved state of exactly `prefix` into the empty context; False when none fits."""
        import llama_cpp

        path = self._file(prefix)
        try:
            data = path.read_bytes()
        except OSError:
            return False
        header = _header(prefix)
        if not data.startswith(header):
            return False
        digest, state = data[len(header) : len(header) + 32], data[len(header) + 32 :]
        if hashlib.sha256(state).digest() != digest:  # torn or damaged: never hand llama.cpp a bad state
            return False
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        ctx = self.llama._ctx.ctx
        if llama_cpp.llama_state_set_data(ctx, buffer, len(state)) != len(state):
            self.llama.reset()  # a state from another build: forget it and prefill as usual
            return False
        self.llama.input_ids[: len(prefix)] = prefix
        self.llama.n_tokens = len(prefix)
        self.llama._requires_eval = True  # the logits are not restored: the next token must be evaluated
        os.utime(path)  # recently used files are kept longest
        return True

    def save(self, prefix: Sequence[int]) -> None:
        """Write the current context's state, which must hold exactly `prefix`; atomic, best effort."""
        import llama_cpp

        ctx = self.llama._ctx.ctx
        size = llama_cpp.llama_state_get_size(ctx)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(ctx, buffer, size)
        state = memoryview(buffer)[:written]
        path = self._file(prefix)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(_header(prefix) + hashlib.sha256(state).digest())
                f.write(state)
            os.replace(tmp, path)
            self._prune()
        except OSError:  # a read-only or full disk only costs the next run its prefill
            tmp.unlink(missing_ok=True)

    def _prune(self) -> None:
        files = sorted(self.folder.glob("*.kv"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[KEEP_FILES:]:
            old.unlink(missing_ok=True)


class PrefillSpeeds:
    """The recent prefill speeds (tokens/s) of one model on this machine, kept in a small JSON file.

    `deepkb ask` sizes its CPU prompts by them (deepkb.answer.stream.cpu_source_tokens): a one-shot process cannot learn
    the machine's speed before its first prompt, so the runs before it tell. Best effort: a file that cannot be
    read or written only costs the budget its adaptation.
    """

    def __init__(self, file: Path, identity: str) -> None:
        self.file = file
        self.key = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.runs: list[float] = self._read().get(self.key, [])

    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    def add(self, tokens_per_s: float) -> None:
        data = self._read()
        self.runs = (data.pop(self.key, []) + [round(tokens_per_s, 2)])[-SPEED_RUNS:]
        data[self.key] = self.runs  # the most recent model last; the oldest are forgotten first
        data = dict(list(data.items())[-SPEED_MODELS:])
        tmp = self.file.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.file)
        except OSError:
            tmp.unlink(missing_ok=True)

    def _read(self) -> dict[str, list[float]]:
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            k: [float(x) for x in v]
            for k, v in data.items()
            if isinstance(v, list) and all(isinstance(x, (int, float)) and x > 0 for x in v)
        }
