"""Benchmark: `deepkb serve` under a bounded load on loopback: served, refused, queue wait, TTFT, search latency.

A knowledge base of data/ is served by a real `deepkb serve` process (one local model: one generation at a time,
a bounded queue). N clients (4, then 16) send a fixed number of streamed chat requests between them, each
client one request at a time, distinct questions (the answer cache is off), no retries: a 429 counts as refused.
Meanwhile a probe sends POST /v1/search every 0.2 s to show retrieval is not queued behind generation.

    .venv/bin/python bench/serve_load.py [--requests 48] [--clients 4 16] [--model PATH] [--queue-size 8]

The default model is the tiny test GGUF (tests/tiny_gguf.py: ~15 tokens an answer, in milliseconds), so the
figures measure the server (queueing, streaming, retrieval) rather than a model; pass --model for a real GGUF.
Loopback only. Prints a table and writes bench/out/serve_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
OUT = REPO / "bench" / "out" / "serve_load.json"
CACHE = REPO / "bench" / "cache"
QUESTIONS = [
    "What does the retention policy say about backups?",
    "Who approves the rotation of API keys?",
    "How are travel expenses reimbursed?",
    "What happens during a security incident?",
    "What should a new employee do in the first week?",
    "What are the lab safety rules?",
    "What changed in the latest release?",
    "How long are backups kept?",
]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, model: Path, port: int, queue_size: int, queue_wait: float) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "deepkb", "--kb", str(home), "serve", "--port", str(port), "--model", str(model),
           "--queue-size", str(queue_size), "--queue-wait", str(queue_wait), "--cache-size", "0",
           "--max-tokens", "64", "--ctx", "2048"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not become ready: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)


def one_request(client: httpx.Client, i: int) -> dict:
    """One streamed question; times to the first token and the server's own queue wait."""
    body = {"model": "deepkb", "stream": True, "max_tokens": 64,
            "messages": [{"role": "user", "content": f"{QUESTIONS[i % len(QUESTIONS)]} (request {i})"}]}  # fmt: skip
    started = time.perf_counter()
    first = None
    info = None
    try:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code == 429:
                response.read()
                return {"status": "refused", "seconds": time.perf_counter() - started}
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
                if first is None and (delta.get("content") or delta.get("reasoning_content")):
                    first = time.perf_counter()
                if "deepkb" in chunk:
                    info = chunk["deepkb"]
                if "error" in chunk:
                    return {"status": "refused", "seconds": time.perf_counter() - started}
    except httpx.TimeoutException:
        return {"status": "hung", "seconds": time.perf_counter() - started}
    ended = time.perf_counter()
    return {
        "status": "served",
        "ttft_ms": (first - started) * 1000 if first else None,
        "queue_wait_ms": info["queue_wait_ms"] if info else None,
        "seconds": ended - started,
    }


def idle_search(url: str, n: int = 20) -> float | None:
    """/v1/search p50 with no generation running: the baseline for the figure under load."""
    times = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(n):
            started = time.perf_counter()
            if client.post("/v1/search", json={"query": "key rotation approval", "k": 5}).status_code == 200:
                times.append((time.perf_counter() - started) * 1000)
    return pct(times, 0.5)


def run_load(url: str, clients: int, requests: int) -> dict:
    idle = idle_search(url)
    counter = iter(range(requests))
    lock = threading.Lock()
    results: list[dict] = []
    searches: list[float] = []
    done = threading.Event()

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                results.append(one_request(client, i))

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not done.is_set():
                started = time.perf_counter()
                response = client.post("/v1/search", json={"query": "key rotation approval", "k": 5})
                if response.status_code == 200:
                    searches.append((time.perf_counter() - started) * 1000)
                time.sleep(0.2)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    prober = threading.Thread(target=probe)
    started = time.perf_counter()
    prober.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    done.set()
    prober.join()
    served = [r for r in results if r["status"] == "served"]
    waits = [r["queue_wait_ms"] for r in served if r["queue_wait_ms"] is not None]
    ttfts = [r["ttft_ms"] for r in served if r["ttft_ms"] is not None]
    return {
        "clients": clients, "requests": requests, "served": len(served),
        "refused": sum(r["status"] == "refused" for r in results), "hung": sum(r["status"] == "hung" for r in results),
        "queue_wait_ms_p50": pct(waits, 0.5), "queue_wait_ms_p95": pct(waits, 0.95),
        "ttft_ms_p50": pct(ttfts, 0.5), "ttft_ms_p95": pct(ttfts, 0.95),
        "search_idle_ms_p50": idle, "search_ms_p50": pct(searches, 0.5), "search_ms_p95": pct(searches, 0.95), "searches": len(searches),
        "seconds": round(elapsed, 2), "answers_per_s": round(len(served) / elapsed, 2),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per run, shared by the clients")
    parser.add_argument("--clients", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--model", type=Path, help="a GGUF (default: the tiny test model)")
    parser.add_argument("--queue-size", type=int, default=8)
    parser.add_argument("--queue-wait", type=float, default=120.0)
    args = parser.parse_args()

    model = args.model
    if model is None:
        from tiny_gguf import build_tiny_gguf

        model = CACHE / "tiny-r1.gguf"
        if not model.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            build_tiny_gguf(model.with_suffix(".part")).replace(model)
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="deepkb-serve-bench-") as tmp:
        home = Path(tmp) / "kb"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-m", "deepkb", "--kb", str(home), "ingest", str(REPO / "data"), "--json"],
                       cwd=REPO, env=env, check=True, capture_output=True)  # fmt: skip
        for clients in args.clients:
            port = free_port()
            server = start_server(home, model, port, args.queue_size, args.queue_wait)
            try:
                rows.append(run_load(f"http://127.0.0.1:{port}", clients, args.requests))
            finally:
                server.send_signal(signal.SIGINT)
                server.wait(timeout=30)
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "model": model.name, "queue_size": args.queue_size, "queue_wait_s": args.queue_wait, "rows": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_before": load_before,
                    "load_after": os.getloadavg()},
    }  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print("\n| clients | requests | served | refused | hung | queue wait p50 / p95 | TTFT p50 / p95 | "
          "/v1/search p50 / p95 during load (idle p50) | answers/s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['served']} | {r['refused']} | {r['hung']} | "
              f"{r['queue_wait_ms_p50']} / {r['queue_wait_ms_p95']} ms | {r['ttft_ms_p50']} / {r['ttft_ms_p95']} ms | "
              f"{r['search_ms_p50']} / {r['search_ms_p95']} ms ({r['search_idle_ms_p50']} ms) | {r['answers_per_s']} |")  # fmt: skip


if __name__ == "__main__":
    main()
