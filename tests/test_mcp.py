"""deepkb over MCP: the official SDK's client against `deepkb mcp` (stdio, a real subprocess) and against /mcp in a
real `deepkb serve` (streamable HTTP), on a knowledge base built from data/ and the tiny GGUF; the MCP Inspector's
CLI (npm) as a third-party client. Both protocol eras are exercised: the initialize handshake (what 1.x SDKs and
most desktop clients speak) and the 2026-07-28 per-request protocol (what 2.x clients try first)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepkb.kb import KnowledgeBase
from deepkb.server.settings import ServerSettings

from conftest import REPO, SAMPLE_DATA
from server_harness import Upstream, running

mcp = pytest.importorskip("mcp", reason="the [mcp] extra is not installed")
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

QUESTION = "How long are backups kept?"
TOOLS = {"search", "fetch", "ask", "status"}
LEGACY = "legacy"  # the initialize handshake
MODERN = "2026-07-28"


DOCUMENTS: dict[str, int] = {}


@pytest.fixture(scope="module")
def built(tmp_path_factory, embedder) -> Path:
    """A knowledge base of data/, built once for the module."""
    home = tmp_path_factory.mktemp("mcp-kb")
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        kb.ingest([SAMPLE_DATA])
        DOCUMENTS["data"] = len(kb.documents())
    return home


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return env


def _stdio(home: Path, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "deepkb", "mcp", "--kb", str(home), *extra], env=_env(), cwd=str(REPO)
    )


def _http(url: str, key: str | None = None):
    import httpx2

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=120))


async def _exercise(client: Client, data_root: Path) -> dict:
    """Every tool and the document resource, as an agent would use them; returns what a test may check further."""
    listed = await client.list_tools()
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and tool.input_schema["type"] == "object"
        assert tool.annotations.read_only_hint is True and tool.annotations.destructive_hint is False
    assert tools["search"].input_schema["required"] == ["query"]
    assert {"k", "mode", "paths", "types"} <= set(tools["search"].input_schema["properties"])
    assert tools["search"].output_schema and "hits" in tools["search"].output_schema["properties"]

    found = await client.call_tool("search", {"query": QUESTION, "k": 3})
    assert not found.is_error, found.content
    hits = found.structured_content["hits"]
    assert 1 <= len(hits) <= 3
    top = hits[0]
    assert Path(top["path"]).name == "backup-retention-policy.pdf"  # the document that holds the answer
    assert Path(top["path"]).is_relative_to(data_root.resolve())
    assert top["page"] >= 1 and 1 <= top["line_start"] <= top["line_end"] and top["text"]
    first, last = (top["chunk_ids"][0], top["chunk_ids"][-1]) if top["chunk_ids"] else (top["chunk_id"],) * 2
    assert top["url"] == Path(top["path"]).as_uri() and top["id"] == (
        f"{first}-{last}" if last != first else str(first)
    )
    assert top["id"] in found.content[0].text  # text-only clients see the ids too

    fetched = await client.call_tool("fetch", {"id": top["id"], "after": 1})
    assert not fetched.is_error, fetched.content
    passage = fetched.structured_content
    assert passage["text"] == top["text"] and passage["location"] == top["location"]
    doc = passage["document"]
    assert doc["uri"] == f"deepkb://document/{doc['id']}" and 1 <= doc["position"] <= doc["passages"]
    if doc["position"] < doc["passages"]:  # the next passage, and fetch walks to it
        assert passage["after"][0]["id"] == passage["next_id"]
        walked = await client.call_tool("fetch", {"id": passage["next_id"]})
        assert walked.structured_content["previous_id"] == str(last)  # the last chunk of a joined passage

    whole = await client.read_resource(doc["uri"])
    assert (
        all(line in whole.contents[0].text for line in top["text"].split("\n"))
        and top["path"] in whole.contents[0].text
    )

    missing = await client.call_tool("fetch", {"id": "999999"})
    assert missing.is_error and "no passage 999999" in missing.content[0].text

    status = await client.call_tool("status", {})
    assert status.structured_content["documents"] == DOCUMENTS["data"] > 5
    assert status.structured_content["read_only"] is True

    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    answered = await client.call_tool("ask", {"question": QUESTION, "k": 3}, progress_callback=on_progress)
    assert not answered.is_error, answered.content
    answer = answered.structured_content
    assert answer["model"] == "tiny-r1" and answer["answer"] and not answer["fallback"]
    cited = {c["n"] for c in answer["citations"]}
    for c in answer["citations"]:
        ids = c["chunk_ids"] or [c["chunk_id"]]  # a passage of consecutive chunks: "FIRST-LAST", as search gives it
        assert c["id"] == "-".join(map(str, dict.fromkeys([ids[0], ids[-1]]))) and c["path"] in answered.content[0].text
    assert all(f"[{n}]" not in answer["answer"] or n in cited for n in range(1, 10))  # markers point to sources
    assert progress and progress[0][1].startswith("retrieved")  # progress while it generated
    assert [v for v, _ in progress] == sorted({v for v, _ in progress})  # strictly increasing
    return {"hits": hits, "answer": answer}


# stdio ---------------------------------------------------------------------------------------------------------
def test_stdio_with_the_sdk_client(built, tiny_model):
    """`deepkb mcp` as a desktop assistant starts it; the 2.x client negotiates the newest protocol."""

    async def main() -> None:
        async with Client(_stdio(built, "--model", str(tiny_model), "--ctx", "1024")) as client:
            assert client.protocol_version == MODERN
            await _exercise(client, SAMPLE_DATA)

    asyncio.run(main())


def test_stdio_an_older_client_uses_the_initialize_handshake(built):
    """A client that only speaks the initialize handshake (mcp 1.x, most desktop apps today) connects and gets
    the same tools; search's filters by path and file type."""

    async def main() -> None:
        async with Client(_stdio(built, "--retrieval-only"), mode=LEGACY) as client:
            assert client.protocol_version == "2025-11-25"
            assert client.server_info.name == "deepkb"
            found = await client.call_tool("search", {"query": QUESTION, "k": 2, "mode": "keyword"})
            assert found.structured_content["hits"]
            answered = await client.call_tool("ask", {"question": QUESTION})
            assert answered.structured_content["fallback"] is True  # retrieval-only: the passages, cited
            assert answered.structured_content["citations"]
            # `paths` and `types` keep the hits inside the folder and the file types asked for, and say how
            only_md = await client.call_tool("search", {"query": "security policy keys", "k": 5, "types": ["md"]})
            hits = only_md.structured_content["hits"]
            assert hits and all(h["path"].endswith(".md") for h in hits)
            assert only_md.structured_content["filter"]["types"] == ["md"]
            one = str(SAMPLE_DATA.resolve() / "security-policy.md")
            inside = await client.call_tool("search", {"query": QUESTION, "k": 3, "paths": [one]})
            assert {h["path"] for h in inside.structured_content["hits"]} == {one}  # not the backup PDF
            relative = await client.call_tool("search", {"query": QUESTION, "k": 3, "paths": ["security-policy.md"]})
            assert {h["path"] for h in relative.structured_content["hits"]} == {one}  # below an ingested folder
            bad = await client.call_tool("search", {"query": QUESTION, "mode": "fuzzy"})
            assert bad.is_error and "unknown search mode 'fuzzy'" in bad.content[0].text

    asyncio.run(main())


NOISY = """
import os, sys
import deepkb.mcp.tools as tools
search = tools.search
def noisy(*args, **kwargs):
    print("a stray print")
    os.write(1, b"a C library writing to descriptor 1\\n")
    return search(*args, **kwargs)
tools.search = noisy
from deepkb.cli import main
sys.argv = ["deepkb", *sys.argv[1:]]
main()
"""


def test_stdout_carries_only_the_protocol(built):
    """A print or a C library's write during a tool call goes to stderr; every stdout line is a JSON-RPC message."""
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "search", "arguments": {"query": QUESTION, "k": 1, "mode": "keyword"}}},
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", NOISY, "mcp", "--kb", str(built), "--retrieval-only"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=REPO, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        for request in requests:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            if "id" in request:
                lines.append(proc.stdout.readline())
                while json.loads(lines[-1]).get("id") != request["id"]:  # a notification first: read on
                    lines.append(proc.stdout.readline())
        rest, err = proc.communicate(timeout=60)  # closes stdin: the server ends
    finally:
        if proc.poll() is None:
            proc.kill()
    lines += rest.splitlines()
    messages = [json.loads(line) for line in lines if line.strip()]  # a stray line would not parse
    assert all(m["jsonrpc"] == "2.0" for m in messages)
    result = next(m for m in messages if m.get("id") == 2)["result"]
    assert result["structuredContent"]["hits"] and not result.get("isError")
    assert "a stray print" in err and "a C library writing to descriptor 1" in err
    assert proc.returncode == 0


# streamable HTTP inside `deepkb serve` --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [MODERN, LEGACY])
def test_http_with_the_sdk_client(built, tiny_model, embedder, mode):
    settings = ServerSettings(port=0, kb=built, model=str(tiny_model), context_size=1024, api_key="s3cret")
    with running(settings, embedder, headers={"Authorization": "Bearer s3cret"}) as srv:

        async def main() -> None:
            async with Client(_http(srv.url + "/mcp", "s3cret"), mode=mode) as client:
                assert client.protocol_version == (MODERN if mode == MODERN else "2025-11-25")
                await _exercise(client, SAMPLE_DATA)

        asyncio.run(main())
        assert srv.metric("deepkb_generations_in_flight") == 0  # the answer's queue slot was given back


def test_http_needs_the_api_key_and_a_local_host(built, embedder):
    settings = ServerSettings(port=0, kb=built, retrieval_only=True, api_key="s3cret")
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}  # fmt: skip
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with running(settings, embedder) as srv:
        no_key = srv.http.post("/mcp", json=initialize, headers=accept)
        assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
        wrong = srv.http.post("/mcp", json=initialize, headers={**accept, "Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        authed = {**accept, "Authorization": "Bearer s3cret"}
        rebinding = srv.http.post("/mcp", json=initialize, headers={**authed, "Host": "attacker.example"})
        assert rebinding.status_code in (400, 403, 421)  # a DNS-rebinding page never reaches the tools
        foreign = srv.http.post("/mcp", json=initialize, headers={**authed, "Origin": "http://attacker.example"})
        assert foreign.status_code in (400, 403)
        ok = srv.http.post("/mcp", json=initialize, headers=authed)
        assert ok.status_code == 200 and "deepkb" in ok.text
        huge = srv.http.post("/mcp", content=b"x" * (settings.max_body_bytes + 1), headers=authed)
        assert huge.status_code == 413


SLOW_REPLY = " ".join(  # no sentence repeats: only a cancel (not the loop guard) can stop it early
    f"Rule {n} of the policy keeps backups {i + 1} weeks longer [1]."
    for i, n in enumerate(["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"])
)


def _cancel_midway(connect) -> None:
    """Ask, cancel the request once the answer is streaming, then use the same session again."""
    import anyio

    async def main() -> None:
        answering = anyio.Event()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            if message and message.startswith("answering"):
                answering.set()

        async with Client(connect()) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.call_tool("ask", {"question": QUESTION}, progress_callback=on_progress))
                with anyio.fail_after(90):
                    await answering.wait()
                tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled
            found = await client.call_tool("search", {"query": QUESTION, "k": 1})  # the session goes on
            assert found.structured_content["hits"]

    asyncio.run(main())


def _stopped_early(upstream: Upstream) -> None:
    deadline = time.monotonic() + 30
    while upstream.closed_early < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert upstream.closed_early == 1, "the upstream kept streaming after the cancel"
    assert upstream.requests == 1


def test_http_cancelling_ask_stops_the_model(built, embedder):
    """A client that cancels `ask` stops the generation: the upstream stream is closed, the queue slot comes back."""
    with Upstream(reply=SLOW_REPLY, pieces=44, delay=0.25) as upstream:
        settings = ServerSettings(port=0, kb=built, llm_url=upstream.url, model="upstream-model")
        with running(settings, embedder) as srv:
            _cancel_midway(lambda: _http(srv.url + "/mcp"))
            _stopped_early(upstream)
            srv.wait_metric("deepkb_generations_in_flight", 0, timeout=30)


def test_stdio_cancelling_ask_stops_the_model(built):
    with Upstream(reply=SLOW_REPLY, pieces=44, delay=0.25) as upstream:
        _cancel_midway(lambda: _stdio(built, "--llm-url", upstream.url, "--model", "upstream-model"))
        _stopped_early(upstream)


# a third-party client ------------------------------------------------------------------------------------------
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"


def test_the_mcp_inspector_cli(built):
    """The MCP Inspector's CLI (npm), as a user runs it, lists the tools of `deepkb mcp` and calls search."""
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx (Node.js) is not installed: the MCP Inspector cannot run")
    base = [npx, "-y", INSPECTOR, "--cli", "-e", f"PYTHONPATH={REPO}", sys.executable, "-m", "deepkb", "mcp",
            "--kb", str(built), "--retrieval-only"]  # fmt: skip
    listed = subprocess.run([*base, "--method", "tools/list"], capture_output=True, text=True, timeout=300, cwd=REPO)
    offline = ("ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET", "network")
    if listed.returncode != 0 and any(sign in listed.stderr for sign in offline):
        pytest.skip(f"npx could not fetch {INSPECTOR} from the npm registry: {listed.stderr.strip()[-200:]}")
    assert listed.returncode == 0, listed.stderr
    assert {t["name"] for t in json.loads(listed.stdout)["tools"]} == TOOLS
    called = subprocess.run(
        [*base, "--method", "tools/call", "--tool-name", "search", "--tool-arg", f"query={QUESTION}", "--tool-arg",
         "k=2", "--tool-arg", "mode=keyword"], capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout)
    assert not result.get("isError") and "backup-retention-policy.pdf" in result["content"][0]["text"]


def test_answer_text_lists_citations_and_unsupported_sentences():
    """Clients that show only text still get the sources with their passage ids, and the grounding marks."""
    from deepkb.mcp.tools import answer_text

    data = {
        "answer": "Backups are kept for thirty days [1]. They are encrypted [1].",
        "notice": None,
        "citations": [{"n": 1, "path": "/docs/backups.md", "location": "L3-10", "id": "42"}],
        "support": [
            {"sentence": "Backups are kept for thirty days [1].", "supported": True, "reason": None},
            {"sentence": "They are encrypted [1].", "supported": False, "reason": "not in the passage"},
        ],
    }
    text = answer_text(data)
    assert "[1] /docs/backups.md L3-10 (passage id 42)" in text
    assert (
        "Not backed by the cited passages (1 of 2 sentences):\n- They are encrypted [1]. (not in the passage)" in text
    )
    assert "thirty days [1]. (" not in text  # a supported sentence is not listed


def test_the_mcp_command_says_how_to_configure_a_client():
    from click.testing import CliRunner

    from deepkb.cli import main
    from deepkb.cli.mcp import mcp

    shown = CliRunner().invoke(main, ["mcp", "--help"])
    assert shown.exit_code == 0 and mcp.name == "mcp"
    assert "stdin/stdout" in shown.output and "claude mcp add deepkb -- deepkb mcp" in shown.output


def test_in_process_the_answering_model_is_loaded_on_the_first_question_and_its_failure_said(
    built, embedder, monkeypatch
):
    """deepkb.mcp.server's tools over the SDK's in-process transport, with deepkb.mcp.stdio's LocalModel as `deepkb
    mcp` runs it: --retrieval-only answers with the best passages and says so; a configured model file that is gone
    still gets the passages, and `status` then names the file and why (before the first question it says the model
    loads then)."""
    from deepkb.mcp.server import Host, build_server
    from deepkb.mcp.stdio import LocalModel

    missing = built.parent / "gone.gguf"
    monkeypatch.setenv("DEEPKB_MODEL", str(missing))

    async def session(model: LocalModel) -> tuple[dict, dict, dict]:
        async with Client(build_server(Host(kb=kb, model=model.get, describe=model.describe))) as client:
            before = (await client.call_tool("status", {})).structured_content["answering"]
            answered = await client.call_tool("ask", {"question": QUESTION, "k": 3})
            assert not answered.is_error, answered.content
            after = (await client.call_tool("status", {})).structured_content["answering"]
            return before, answered.structured_content, after

    with KnowledgeBase.open(built, embedder=embedder) as kb:
        before, answer, after = asyncio.run(session(LocalModel(kb, retrieval_only=True)))
        assert before == after and before["mode"] == "retrieval-only" and before["model"] is None
        assert answer["fallback"] and Path(answer["citations"][0]["path"]).name == "backup-retention-policy.pdf"

        before, answer, after = asyncio.run(session(LocalModel(kb, retrieval_only=False)))
        assert before["mode"].startswith("model (loaded on the first question)") and before["reason"] is None
        assert before["model"] == str(missing)
        assert answer["fallback"] and Path(answer["citations"][0]["path"]).name == "backup-retention-policy.pdf"
        assert str(missing) in after["reason"] and "does not exist" in after["reason"]


def test_fetch_refuses_a_passage_id_that_names_no_passage_of_consecutive_chunks(built, embedder):
    """A passage id comes from the agent: one that is malformed, runs backwards, crosses documents or spans more
    chunks than a passage joins is one clear sentence, never a traceback nor another document's text."""
    from deepkb.errors import UsageError
    from deepkb.mcp.tools import fetch

    with KnowledgeBase.open(built, embedder=embedder) as kb:
        docs = list(kb.store.documents_under([str(SAMPLE_DATA.resolve())]).values())
        long_doc = next(d for d in docs if len(kb.store.chunk_ids(d.id)) >= 5)
        other = next(d for d in docs if d.id != long_doc.id)
        a, b, c, d, e = kb.store.chunk_ids(long_doc.id)[:5]
        joined = fetch(kb, f"{a}-{c}")
        assert joined["id"] == f"{a}-{c}" and joined["next_id"] == str(d)
        singles = [fetch(kb, str(i))["text"] for i in (a, b, c)]
        assert all(line in joined["text"] for text in singles for line in text.split("\n"))
        for bad in (f"{c}-{a}", f"{a}-{e}", f"{a}-{kb.store.chunk_ids(other.id)[0]}", "x-1", "1-x", "-1", "1-2-3", ""):
            with pytest.raises(UsageError, match="passage"):
                fetch(kb, bad)
