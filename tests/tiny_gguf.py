"""Build a tiny DeepSeek-R1-style GGUF that llama.cpp really loads and runs, for fast end-to-end tests.

Architecture qwen2, 2 layers, hidden size 64, seeded random weights, and the real Qwen2 BPE vocabulary
(tests/data/ggml-vocab-qwen2.gguf.xz, MIT, from llama.cpp; xz keeps the repository small) with DeepSeek-R1's special tokens and chat template.

Attention and feed-forward weights are small noise, so each next token depends on the current token only; the
output matrix chains SCRIPT's tokens, so after the R1 generation prompt ("<｜Assistant｜><think>\\n") the model
deterministically writes THINKING + "</think>\\n\\n" + ANSWER and stops. Tokens outside the chain lead into it.
"""

from __future__ import annotations

import lzma
import struct
import tempfile
from pathlib import Path

import numpy as np

VOCAB_XZ = Path(__file__).parent / "data" / "ggml-vocab-qwen2.gguf.xz"


def _vocab_path() -> Path:
    """The vocab-only GGUF, unpacked once into the temp dir."""
    target = Path(tempfile.gettempdir()) / f"deepkb-ggml-vocab-qwen2-{VOCAB_XZ.stat().st_size}.gguf"
    if not target.exists():
        partial = target.with_suffix(".part")
        partial.write_bytes(lzma.decompress(VOCAB_XZ.read_bytes()))
        partial.replace(target)
    return target


BOS, EOS, USER, ASSISTANT = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"
# DeepSeek-R1-Distill-Qwen's added tokens, in the ids its tokenizer gives them.
SPECIALS = {151643: EOS, 151644: USER, 151645: ASSISTANT, 151646: BOS, 151647: "<|EOT|>"}
USER_DEFINED = {151648: "<think>", 151649: "</think>"}

# The reply, as byte-level BPE token strings (Ġ is a space, Ċ a newline); every token is distinct.
SCRIPT = (
    [ASSISTANT, "<think>", "Ċ", "Okay", ",", "Ġthe", "Ġsources", "Ġanswer", "Ġit", "."]
    + ["</think>", "ĊĊ", "Back", "ups", "Ġare", "Ġkept", "Ġfor", "Ġthirty", "Ġdays", "Ġ[", "1", "]."]
    + [EOS]
)
THINKING = "Okay, the sources answer it."
ANSWER = "Backups are kept for thirty days [1]."

# DeepSeek-R1's chat template (tokenizer_config.json of the R1 distills), verbatim.
R1_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}"
    "{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}"
    "{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + "
    "tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + "
    "'<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + "
    "tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + "
    "tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}"
    "{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}"
    "{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
    "{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- set ns.is_output_first = false %}{%- else %}"
    "{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}"
    "{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
)

N_EMBD, N_FF, N_LAYER, N_HEAD, N_HEAD_KV, N_CTX = 64, 128, 2, 2, 1, 4096


def _read_kv(path: Path) -> dict[str, object]:
    """The metadata of a GGUF file (gguf.GGUFReader takes ~15 s on a 150k-token vocabulary; this takes <1 s)."""
    data = memoryview(path.read_bytes())
    scalars = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    pos = 0

    def take(fmt: str) -> object:
        nonlocal pos
        (value,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("<Q")
        pos += n
        return bytes(data[pos - n : pos]).decode("utf-8")

    def value(kind: int) -> object:
        if kind == 8:
            return string()
        if kind == 9:
            inner, count = take("<I"), take("<Q")
            if inner in scalars:
                nonlocal pos
                arr = np.frombuffer(data, np.dtype(scalars[inner]), count, pos)
                pos += arr.nbytes
                return arr.tolist()
            return [value(inner) for _ in range(count)]
        return take(scalars[kind])

    assert bytes(data[:4]) == b"GGUF"
    pos = 4
    _version, _n_tensors, n_kv = take("<I"), take("<Q"), take("<Q")
    out: dict[str, object] = {}
    for _ in range(n_kv):
        key = string()
        out[key] = value(take("<I"))
    return out


def _vocab() -> tuple[list[str], list[int], list[str]]:
    import gguf

    kv = _read_kv(_vocab_path())
    tokens = list(kv["tokenizer.ggml.tokens"])
    types = list(kv["tokenizer.ggml.token_type"])
    merges = list(kv["tokenizer.ggml.merges"])
    for table, kind in ((SPECIALS, gguf.TokenType.CONTROL), (USER_DEFINED, gguf.TokenType.USER_DEFINED)):
        for i, text in table.items():
            tokens[i], types[i] = text, int(kind)
    return tokens, types, merges


def build_tiny_gguf(path: Path, seed: int = 0, chat_template: str | None = None) -> Path:
    """Write the tiny model to `path` (about 40 MB) and return it; `chat_template` replaces R1's (a model that
    does not reason)."""

    tokens, types, merges = _vocab()
    ids = {t: i for i, t in enumerate(tokens)}
    chain = [ids[t] for t in SCRIPT]
    assert len(set(chain)) == len(chain) <= N_EMBD, "script tokens must be distinct and fit the hidden size"
    rng = np.random.default_rng(seed)
    n_vocab = len(tokens)

    embed = rng.normal(0, 1, (n_vocab, N_EMBD)).astype(np.float32)
    output = np.zeros((n_vocab, N_EMBD), np.float32)
    for axis, (tok, nxt) in enumerate(zip(chain[:-1], chain[1:], strict=True)):
        embed[tok] = 0.0
        embed[tok, axis] = 1.0  # after RMS norm the hidden state is ~8 on this axis only
        output[nxt, axis] = 10.0  # ...which makes `nxt` the next token by a wide margin
    embed[chain[-1]] = 0.0

    w = r1_qwen2_writer(path, "deepkb-tiny-r1", tokens, types, merges, context_length=N_CTX, embedding_length=N_EMBD,
                        feed_forward_length=N_FF, block_count=N_LAYER, head_count=N_HEAD, head_count_kv=N_HEAD_KV,
                        rope_freq_base=1_000_000.0, chat_template=chat_template)  # fmt: skip

    head_dim = N_EMBD // N_HEAD
    noise = lambda *shape: rng.normal(0, 0.01, shape).astype(np.float32)  # noqa: E731
    w.add_tensor("token_embd.weight", embed.astype(np.float16))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    w.add_tensor("output.weight", output.astype(np.float16))
    for b in range(N_LAYER):
        p = f"blk.{b}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(p + "attn_q.weight", noise(N_HEAD * head_dim, N_EMBD))
        w.add_tensor(p + "attn_k.weight", noise(N_HEAD_KV * head_dim, N_EMBD))
        w.add_tensor(p + "attn_v.weight", noise(N_HEAD_KV * head_dim, N_EMBD))
        w.add_tensor(p + "attn_q.bias", noise(N_HEAD * head_dim))
        w.add_tensor(p + "attn_k.bias", noise(N_HEAD_KV * head_dim))
        w.add_tensor(p + "attn_v.bias", noise(N_HEAD_KV * head_dim))
        w.add_tensor(p + "attn_output.weight", noise(N_EMBD, N_HEAD * head_dim))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(p + "ffn_gate.weight", noise(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_up.weight", noise(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_down.weight", noise(N_EMBD, N_FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def r1_qwen2_writer(
    path: Path,
    name: str,
    tokens: list[str],
    types: list[int],
    merges: list[str],
    *,
    rope_freq_base: float,
    chat_template: str | None = None,
    **shape: int,
):
    """A GGUFWriter for a qwen2 model with DeepSeek-R1-Distill-Qwen's tokenizer and chat template, tensors to add.

    `shape` names the GGUF keys without their add_ prefix: context_length, embedding_length, feed_forward_length,
    block_count, head_count, head_count_kv. Shared by the tiny test model and bench/llm_speed.py's 1.5B shape.
    """
    import gguf

    ids = {t: i for i, t in enumerate(tokens)}
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name(name)
    for key, value in shape.items():
        getattr(w, f"add_{key}")(value)
    w.add_rope_freq_base(rope_freq_base)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("deepseek-r1-qwen")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(ids[BOS])
    w.add_eos_token_id(ids[EOS])
    w.add_pad_token_id(ids[EOS])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(chat_template or R1_CHAT_TEMPLATE)
    return w


def tiny_model_path(tmp_path_factory) -> Path:
    """The tiny model, built once per test session (pass pytest's tmp_path_factory)."""
    path = tmp_path_factory.getbasetemp() / "tiny-r1.gguf"
    if not path.exists():
        build_tiny_gguf(path.with_suffix(".part"))
        path.with_suffix(".part").replace(path)
    return path
