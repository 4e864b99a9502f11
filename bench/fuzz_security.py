"""Fuzz the two doors untrusted input comes through: `deepkb restore` (hostile backups) and `deepkb serve` (raw HTTP).

Restore: a real backup of a small knowledge base is mutated into hostile manifests (path traversal, absolute paths,
symlinks, FIFOs, devices, unknown names, huge or wrong sizes, bad JSON, random byte flips) and restored into a fresh
folder inside a sandbox. Each case must end in one DeepKBError line or a clean restore, within 10 s, with nothing
written outside the target folder and nothing but deepkb's own file names inside it.

HTTP: a real server (create_app under uvicorn, retrieval only) on a loopback port gets malformed request lines,
bad headers, huge headers and URLs, bad Host and Origin headers, bad bodies and slow clients over raw sockets.
Each case must get one answer (an HTTP error status, never 5xx from deepkb) or a closed connection within 10 s,
and the server must still answer /health afterwards and while the slow clients hang on.

    .venv/bin/python bench/fuzz_security.py [--random 300] [--seed 19] [--skip-http]

Loopback only, bounded loops. Prints the counts and writes bench/out/fuzz_security.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
OUT = REPO / "bench" / "out" / "fuzz_security.json"
CASE_SECONDS = 10


# restore ---------------------------------------------------------------------------------------------------
def make_backup(root: Path) -> Path:
    """A real backup of a real (small, vector-less) knowledge base: kb.sqlite, conversations.sqlite, config.toml."""
    import sqlite3

    from deepkb.backup import backup
    from deepkb.storage.catalog import Store

    home = root / "kb"
    home.mkdir()
    Store(home).close()
    with sqlite3.connect(home / "conversations.sqlite") as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    (home / "config.toml").write_text('embed_batch_size = 16\nllm_url = "http://attacker.example/v1"\n')
    backup(home, root / "base")
    return root / "base"


def restore_cases(base: Path, n_random: int, seed: int) -> list[tuple[str, object]]:
    """(name, mutate(src: Path, outside: Path)) for every hostile case."""
    from deepkb.backup import MANIFEST

    cases: list[tuple[str, object]] = []

    def manifest_of(src: Path) -> dict:
        return json.loads((src / MANIFEST).read_text())

    def put(src: Path, manifest: object) -> None:
        (src / MANIFEST).write_text(json.dumps(manifest))

    def named(name: str, payload_at: str | None = None):
        def mutate(src: Path, outside: Path) -> None:
            m = manifest_of(src)
            payload = src / "kb.sqlite"
            m["files"][name] = dict(m["files"]["kb.sqlite"])
            if payload_at:  # the file the name points at, so its hash check alone would pass
                target = Path(os.path.normpath(src / payload_at)) if not os.path.isabs(payload_at) else None
                if target is not None and not target.exists():
                    try:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy(payload, target)
                    except OSError:
                        pass
            put(src, m)

        return mutate

    for name in ["../PWNED", "../../PWNED", "sub/../../PWNED", "./kb.sqlite", "sub/kb.sqlite", "kb.sqlite/..", "..",
                 ".", "", "kb.sqlite\x00.txt", "x" * 5000, "kb\u2024sqlite", "..\\PWNED", "kb.sqlite ",
                 "KB.SQLITE", "vectors.hnsw/../../PWNED"]:  # fmt: skip
        cases.append((f"traversal {name[:30]!r}", named(name, name if name.startswith("..") else None)))
    for name in ["/tmp/deepkb-fuzz-PWNED", "/etc/passwd", "//x", "C:\\x", "\\\\server\\share\\x", "~/PWNED"]:
        cases.append((f"absolute {name!r}", named(name)))
    for name in ["evil.sh", "kb.sqlite-wal", "models/x.gguf", ".bashrc", "writer.lock", "deepkb-backup.json"]:
        cases.append((f"unknown {name!r}", named(name)))

    def link(name: str, to: str):
        def mutate(src: Path, outside: Path) -> None:
            path = src / name
            target = to.replace("OUTSIDE", str(outside))
            if path.exists() or path.is_symlink():
                path.unlink()
            os.symlink(target, path)
            m = manifest_of(src)
            try:
                size = os.stat(path).st_size
            except OSError:
                size = 0
            m["files"][name] = {"size": size, "sha256": "0" * 64}
            try:
                from deepkb.checksum import file_sha256

                if os.path.isfile(path) and size < 1 << 20:
                    m["files"][name]["sha256"] = file_sha256(path)
            except OSError:
                pass
            put(src, m)

        return mutate

    for name in ["kb.sqlite", "config.toml", "conversations.sqlite", "vectors.hnsw"]:
        for to in ["OUTSIDE/secret.txt", "/dev/zero", "/dev/null", "OUTSIDE", "OUTSIDE/missing", name]:
            cases.append((f"symlink {name} -> {to}", link(name, to)))

    def fifo(name: str):
        def mutate(src: Path, outside: Path) -> None:
            (src / name).unlink(missing_ok=True)
            os.mkfifo(src / name)
            m = manifest_of(src)
            m["files"][name] = {"size": 0, "sha256": "0" * 64}
            put(src, m)

        return mutate

    for name in ["kb.sqlite", "config.toml", "vectors.json"]:
        cases.append((f"fifo {name}", fifo(name)))

    def manifest_link(to: str):
        def mutate(src: Path, outside: Path) -> None:
            (src / MANIFEST).unlink()
            os.symlink(to.replace("OUTSIDE", str(outside)), src / MANIFEST)

        return mutate

    for to in ["/dev/zero", "/dev/urandom", "OUTSIDE/secret.txt", "OUTSIDE"]:
        cases.append((f"manifest symlink -> {to}", manifest_link(to)))

    def manifest_fifo(src: Path, outside: Path) -> None:
        (src / MANIFEST).unlink()
        os.mkfifo(src / MANIFEST)

    cases.append(("manifest fifo", manifest_fifo))

    def field(name: str, key: str, value: object):
        def mutate(src: Path, outside: Path) -> None:
            m = manifest_of(src)
            if value is _DELETE:
                m["files"][name].pop(key, None)
            else:
                m["files"][name][key] = value
            put(src, m)

        return mutate

    for value in [2**62, -1, "100", 1.5, True, None, 0, 10**30, [], {}]:
        cases.append((f"size {value!r}", field("kb.sqlite", "size", value)))
    for value in ["0" * 63, "Z" * 64, "A" * 64, 123, None, "", "0" * 65]:
        cases.append((f"sha256 {str(value)[:10]!r}", field("config.toml", "sha256", value)))
    cases.append(("size missing", field("kb.sqlite", "size", _DELETE)))

    def raw(text: bytes):
        def mutate(src: Path, outside: Path) -> None:
            (src / MANIFEST).write_bytes(text)

        return mutate

    for label, text in [
        ("empty", b""), ("truncated", b'{"files": {"kb.sqlite": {"size": 1'), ("not utf-8", b"\xff\xfe{}"),
        ("array", b"[]"), ("string", b'"files"'), ("files list", b'{"files": []}'), ("files null", b'{"files": null}'),
        ("entry string", b'{"files": {"kb.sqlite": "x"}}'), ("no kb.sqlite", b'{"files": {}}'),
        ("deep nesting", b"[" * 200_000 + b"]" * 200_000), ("huge manifest", b" " * (3 << 20) + b"{}"),
        ("nan", b'{"files": {"kb.sqlite": {"size": NaN, "sha256": "x"}}}'),
        ("duplicate keys", None),
    ]:  # fmt: skip
        if text is None:

            def dup(src: Path, outside: Path) -> None:
                m = manifest_of(src)
                entry = json.dumps(m["files"]["kb.sqlite"])
                body = json.dumps(m)[:-2] + f', "../PWNED": {entry}, "kb.sqlite": {entry}' + "}}"
                (src / MANIFEST).write_text(body)

            cases.append((f"json {label}", dup))
        else:
            cases.append((f"json {label}", raw(text)))

    def content(name: str, data: bytes):
        def mutate(src: Path, outside: Path) -> None:
            (src / name).write_bytes(data)
            from deepkb.checksum import file_sha256

            m = manifest_of(src)
            m["files"][name] = {"size": len(data), "sha256": file_sha256(src / name)}
            put(src, m)

        return mutate

    cases.append(("kb.sqlite not sqlite", content("kb.sqlite", b"#!/bin/sh\nrm -rf ~\n")))
    cases.append(("config not toml", content("config.toml", b"llm_url = [[[")))
    cases.append(("config table", content("config.toml", b'[llm]\nllm_url = "http://x"\n')))
    cases.append(("config key env", content("config.toml", b'llm_api_key_env = "AWS_SECRET_ACCESS_KEY"\n')))
    cases.append(("vectors.hnsw garbage", content("vectors.hnsw", os.urandom(4096))))

    rng = random.Random(seed)
    for i in range(n_random):

        def flip(src: Path, outside: Path, i=i) -> None:
            data = bytearray((src / MANIFEST).read_bytes())
            local = random.Random(seed * 1000 + i)
            for _ in range(local.randint(1, 8)):
                pos = local.randrange(len(data))
                data[pos] = local.choice(b'./\\\x00"{}[]:,-0123456789abcdef' + bytes([local.randrange(256)]))
            (src / MANIFEST).write_bytes(bytes(data))

        cases.append((f"random flips #{i}", flip))
    rng.shuffle(cases)
    return cases


_DELETE = object()


def snapshot(folder: Path, skip: set[Path]) -> dict[str, tuple]:
    """Every entry under folder (not following links) with its type, size and mtime, skipping some subtrees."""
    seen: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in dirnames + filenames:
            path = here / name
            st = os.lstat(path)
            seen[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return seen


class Timeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Timeout


def fuzz_restore(n_random: int, seed: int) -> dict:

    outcomes: Counter = Counter()
    problems: list[str] = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        return _fuzz_restore(n_random, seed, outcomes, problems)
    finally:
        signal.signal(signal.SIGALRM, previous)


def _fuzz_restore(n_random: int, seed: int, outcomes: Counter, problems: list[str]) -> dict:
    from deepkb.backup import RESTORABLE, restore
    from deepkb.errors import DeepKBError

    with tempfile.TemporaryDirectory(prefix="deepkb-fuzz-") as tmp:
        root = Path(tmp)
        base = make_backup(root)
        outside = root / "outside"
        outside.mkdir()
        (outside / "secret.txt").write_text("api_key = hunter2\n")
        cases = restore_cases(base, n_random, seed)
        for i, (name, mutate) in enumerate(cases):
            # Two folders down, so that what a forged name reaches ("../../PWNED") is still inside the temporary
            # folder: there the snapshot below sees a restore write it, and the fuzzer leaves nothing in /tmp.
            src, target = root / "in" / "deep" / f"src{i}", root / f"case{i}" / "kb"
            shutil.copytree(base, src, symlinks=True)
            mutate(src, outside)
            before = snapshot(root, {src, target.parent})
            signal.alarm(CASE_SECONDS)
            try:
                result = restore(src, target)
                outcome = "restored"
                if result.get("left_out_settings"):
                    outcome = "restored, remote settings left out"
            except DeepKBError as exc:
                text = str(exc)
                outcome = "refused"
                if "\n" in text or not text:
                    problems.append(f"{name}: not one line: {text!r}")
            except Timeout:
                outcome = "HANG"
                problems.append(f"{name}: no answer in {CASE_SECONDS} s")
            except Exception as exc:  # noqa: BLE001 - every other exception is a finding
                outcome = f"crash {type(exc).__name__}"
                problems.append(f"{name}: {type(exc).__name__}: {exc}")
            finally:
                signal.alarm(0)
            outcomes[outcome] += 1
            after = snapshot(root, {src, target.parent})
            if after != before:
                changed = sorted(set(after) ^ set(before)) or [k for k in after if after[k] != before.get(k)]
                problems.append(f"{name}: wrote outside the KB: {changed[:3]}")
            if target.exists():
                extra = [p.name for p in target.iterdir() if p.name not in RESTORABLE and p.name != "writer.lock"]
                links = [p.name for p in target.iterdir() if p.is_symlink()]
                if extra or links:
                    problems.append(f"{name}: unexpected entries in the KB: {extra + links}")
                if outcome == "refused" and any(target.iterdir()):
                    problems.append(f"{name}: refused but left files behind")
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(target.parent, ignore_errors=True)
    return {"cases": len(cases), "outcomes": dict(outcomes), "problems": problems}


# HTTP --------------------------------------------------------------------------------------------------------
def _exchange(port: int, payload: bytes, pace: float = 0.0, read_for: float = CASE_SECONDS) -> tuple[str, float]:
    """Send raw bytes (optionally a byte every `pace` seconds); the status line back, or 'closed' / 'HANG'."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=read_for) as sock:
        try:
            if pace:
                for b in payload:
                    sock.sendall(bytes([b]))
                    time.sleep(pace)
            else:
                sock.sendall(payload)
        except OSError:
            pass  # the server may close before we finish sending: its answer is still read below
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            return "HANG", time.monotonic() - started
        except OSError:
            return "closed", time.monotonic() - started
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    return (parts[1] if len(parts) > 1 and parts[0].startswith("HTTP/") else ("closed" if not data else "junk")), (
        time.monotonic() - started
    )


def http_cases(port: int) -> list[tuple[str, bytes]]:
    host = f"127.0.0.1:{port}".encode()
    body = b'{"query": "albatross"}'

    def req(method=b"POST", path=b"/v1/search", headers=None, data=body, version=b"HTTP/1.1") -> bytes:
        hdrs = headers if headers is not None else [(b"Host", host), (b"Content-Type", b"application/json"),
                                                     (b"Content-Length", str(len(data)).encode())]  # fmt: skip
        return (
            method
            + b" "
            + path
            + b" "
            + version
            + b"\r\n"
            + b"".join(k + b": " + v + b"\r\n" for k, v in hdrs)
            + (b"Connection: close\r\n\r\n" + data)
        )

    cases = [
        ("garbage", random.Random(19).randbytes(512)), ("garbage lines", b"\x00\xff junk \x01\r\n\r\n"), ("empty line", b"\r\n\r\n"), ("no version", b"GET /health\r\n\r\n"),
        ("HTTP/9.9", req(version=b"HTTP/9.9")), ("lowercase method", req(method=b"post")),
        ("unknown method", req(method=b"BREW")), ("NUL in path", req(path=b"/v1/se\x00arch")),
        ("header without colon", b"GET /health HTTP/1.1\r\nHost " + host + b"\r\n\r\n"),
        ("CR in header", b"GET /health HTTP/1.1\r\nHost: " + host + b"\rX: y\r\n\r\n"),
        ("obs-fold", b"GET /health HTTP/1.1\r\nHost: " + host + b"\r\n X: y\r\n\r\n"),
        ("100 KB URL", req(method=b"GET", path=b"/v1/documents?" + b"a" * 100_000, data=b"")),
        ("1 MB header", req(headers=[(b"Host", host), (b"X-Big", b"a" * (1 << 20))])),
        ("2000 headers", req(headers=[(b"Host", host)] + [(f"X-{i}".encode(), b"v" * 50) for i in range(2000)])),
        ("bad Content-Length", req(headers=[(b"Host", host), (b"Content-Length", b"abc")])),
        ("negative Content-Length", req(headers=[(b"Host", host), (b"Content-Length", b"-1")])),
        ("two Content-Lengths", req(headers=[(b"Host", host), (b"Content-Length", b"5"), (b"Content-Length", b"6")])),
        ("Content-Length too big", req(headers=[(b"Host", host), (b"Content-Length", b"99999999999")], data=b"")),
        ("short body", req(headers=[(b"Host", host), (b"Content-Length", b"500")], data=b"{}")),
        ("bad chunk size", req(headers=[(b"Host", host), (b"Transfer-Encoding", b"chunked")], data=b"zz\r\nab\r\n0\r\n\r\n")),
        ("CL and TE", req(headers=[(b"Host", host), (b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")],
                          data=b"0\r\n\r\n")),
        ("2 MB body", req(data=b'{"query": "' + b"a" * (2 << 20) + b'"}')),
        ("chunked 2 MB body", req(headers=[(b"Host", host), (b"Transfer-Encoding", b"chunked")],
                                  data=b"".join(b"%x\r\n%s\r\n" % (65536, b"a" * 65536) for _ in range(32)) + b"0\r\n\r\n")),
        ("not JSON", req(data=b"{query: albatross")), ("JSON array", req(data=b"[]")),
        ("deep JSON", req(data=b'{"query": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
        ("wrong types", req(data=b'{"query": 5, "k": "x"}')), ("huge k", req(data=b'{"query": "a", "k": 1e308}')),
        ("NaN k", req(data=b'{"query": "a", "k": NaN}')), ("bad UTF-8", req(data=b'{"query": "\xff\xfe"}')),
        ("chat bad messages", req(path=b"/v1/chat/completions", data=b'{"model": "deepkb", "messages": 7}')),
        ("chat 10k messages", req(path=b"/v1/chat/completions",
                                  data=json.dumps({"model": "deepkb", "messages": [{"role": "user", "content": "a"}] * 10_000}).encode())),
        ("unknown route", req(method=b"GET", path=b"/../../etc/passwd", data=b"")),
        ("encoded traversal", req(method=b"GET", path=b"/v1/models/..%2f..%2fetc%2fpasswd", data=b"")),
        ("absolute-form URL", req(method=b"GET", path=b"http://evil.example/v1/documents", data=b"")),
    ]  # fmt: skip
    for bad in [b"evil.example", b"evil.example:" + host.split(b":")[1], b"127.0.0.1.evil.example",
                b"localhost.evil.example", b"127.0.0.1@evil.example", b"[::1].evil", b"", b"\xff\xfe",
                b"127.0.0.1:80:80", b"[::ffff:7f00:1]x", b"0x7f.1"]:  # fmt: skip
        cases.append((f"Host {bad[:30]!r}", req(method=b"GET", path=b"/v1/documents", data=b"",
                                                headers=[(b"Host", bad)])))  # fmt: skip
    cases.append(("two Hosts", req(method=b"GET", path=b"/v1/documents", data=b"",
                                   headers=[(b"Host", host), (b"Host", b"evil.example")])))  # fmt: skip
    cases.append(("no Host", b"GET /v1/documents HTTP/1.1\r\nConnection: close\r\n\r\n"))
    for origin in [b"https://evil.example", b"null", b"http://127.0.0.1.evil.example", b"file://", b"\xff"]:
        cases.append((f"Origin {origin!r}", req(headers=[(b"Host", host), (b"Origin", origin),
                                                         (b"Content-Length", str(len(body)).encode())])))  # fmt: skip
    cases.append(("preflight from evil", req(method=b"OPTIONS", data=b"", headers=[
        (b"Host", host), (b"Origin", b"https://evil.example"), (b"Access-Control-Request-Method", b"POST")])))  # fmt: skip
    return cases


# Requests that are not finished yet (no blank line after the headers, a body shorter than its Content-Length):
# HTTP says to wait for the rest, so the server does, holding only that connection (while others are answered).
WAITS_FOR_MORE = {"garbage", "short body"}


def fuzz_http() -> dict:
    import uvicorn

    from deepkb.embedders import create_embedder
    from deepkb.kb import KnowledgeBase
    from deepkb.server.app import create_app
    from deepkb.server.settings import ServerSettings

    outcomes: Counter = Counter()
    problems: list[str] = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="deepkb-fuzz-http-") as tmp:
        home, docs = Path(tmp) / "kb", Path(tmp) / "docs"
        docs.mkdir()
        (docs / "a.md").write_text("# A\n\nThe albatross glides for hours over the southern ocean.\n")
        embedder = create_embedder("all-MiniLM-L6-v2")
        with KnowledgeBase.open(home, embedder=embedder) as kb:
            kb.ingest([docs])
        app = create_app(ServerSettings(port=0, kb=home, retrieval_only=True), embedder=embedder)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="critical", access_log=False, lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 120
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        while _exchange(port, b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")[0] != "200":
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.2)
        # slow clients hang on while everything else runs: they must not block anyone
        slow = [threading.Thread(target=_exchange, args=(port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n", 0.5,
                                                         30), daemon=True) for _ in range(20)]  # fmt: skip
        for t in slow:
            t.start()
        for name, payload in http_cases(port):
            status, seconds = _exchange(port, payload)
            rows.append({"case": name, "status": status, "seconds": round(seconds, 3)})
            kind = status if status in ("closed", "HANG", "junk") else f"{status[0]}xx"
            outcomes[kind] += 1
            if status == "HANG" and name in WAITS_FOR_MORE:
                outcomes[kind] -= 1
                kind = "waits for the rest of the request"
                outcomes[kind] += 1
            elif status == "HANG" or status.startswith("5") or status == "junk":
                problems.append(f"{name}: {status} after {seconds:.1f} s")
            if name.startswith(("Host", "two Hosts", "Origin", "preflight")) and status.startswith("2"):
                problems.append(f"{name}: let through ({status})")
        health, seconds = _exchange(port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        if health != "200" or seconds > 2:
            problems.append(f"/health while 20 slow clients hang on: {health} in {seconds:.1f} s")
        server.should_exit = True
        thread.join(20)
        sock.close()
    outcomes = +outcomes  # drop zero counts
    return {"cases": len(rows), "outcomes": dict(outcomes), "problems": problems, "rows": rows,
            "health_during_slow_clients": {"status": health, "seconds": round(seconds, 3)}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--random", type=int, default=300, help="random byte-flip manifests (default 300)")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    report = {"restore": fuzz_restore(args.random, args.seed)}
    if not args.skip_http:
        report["http"] = fuzz_http()
    for part, result in report.items():
        print(f"{part}: {result['cases']} cases, outcomes {result['outcomes']}, problems {len(result['problems'])}")
        for problem in result["problems"]:
            print(f"  - {problem}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))
    sys.exit(1 if any(r["problems"] for r in report.values()) else 0)


if __name__ == "__main__":
    main()
