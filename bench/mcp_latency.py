"""What MCP costs on top of a search: `deepkb mcp` over stdio with the official SDK client, against the same search
called in-process, on a knowledge base of data/ (built in a temp folder unless --kb names one).

    python bench/mcp_latency.py [--kb DIR] [--runs 30]

Prints the client's connect time, the first search (it loads the embedding model in the server), then the p50 /
p95 of warm searches over MCP and in-process, with the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUERIES = [
    "How long are backups kept?",
    "Who approves key rotation?",
    "What is the travel expense limit?",
    "What to do in a security incident?",
    "lab safety goggles",
]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def over_mcp(home: Path, runs: int) -> dict[str, float | list[float]]:
    from mcp import Client, StdioServerParameters

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "deepkb", "mcp", "--kb", str(home), "--retrieval-only"], env=env
    )
    started = time.perf_counter()
    async with Client(params) as client:
        connected = time.perf_counter() - started
        t = time.perf_counter()
        await client.call_tool("search", {"query": QUERIES[0], "k": 5})
        first = time.perf_counter() - t
        warm = []
        for i in range(runs):
            t = time.perf_counter()
            result = await client.call_tool("search", {"query": QUERIES[i % len(QUERIES)], "k": 5})
            warm.append((time.perf_counter() - t) * 1000)
            assert result.structured_content["hits"]
    return {"connect_s": connected, "first_s": first, "warm_ms": warm}


def in_process(home: Path, runs: int) -> list[float]:
    from deepkb.kb import KnowledgeBase

    with KnowledgeBase.open(home) as kb:
        kb.search(QUERIES[0], k=5)
        times = []
        for i in range(runs):
            t = time.perf_counter()
            kb.search(QUERIES[i % len(QUERIES)], k=5)
            times.append((time.perf_counter() - t) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, help="a knowledge base to use (default: data/ ingested into a temp folder)")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.kb
        if home is None:
            from deepkb.kb import KnowledgeBase

            home = Path(tmp) / "kb"
            with KnowledgeBase.open(home) as kb:
                kb.ingest([REPO / "data"])
        load = os.getloadavg()[0]
        mcp = asyncio.run(over_mcp(home, args.runs))
        local = in_process(home, args.runs)
        warm = mcp["warm_ms"]
        print(f"load average {load:.1f} on {os.cpu_count()} CPUs; {args.runs} searches of k=5, hybrid")
        print(f"MCP stdio: connect {mcp['connect_s']:.2f} s, first search {mcp['first_s']:.2f} s (loads the embedder)")
        print(f"MCP stdio warm search: p50 {statistics.median(warm):.1f} ms, p95 {_pct(warm, 0.95):.1f} ms")
        print(f"in-process kb.search:  p50 {statistics.median(local):.1f} ms, p95 {_pct(local, 0.95):.1f} ms")


if __name__ == "__main__":
    main()
