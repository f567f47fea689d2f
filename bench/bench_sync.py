"""Benchmark: flowreg's sync against its floors, a naive per-flow sync, and LangChain index().

Usage::

    python -m bench.bench_sync --embedder hashing --sizes 1000,10000,50000
    python -m bench.bench_sync --embedder latency --sizes 1000,10000   # 20 ms per request
    python -m bench.bench_sync --store path --systems edge,flowreg,langchain --sizes 10000

``edge`` is flowreg on its embedded default (Qdrant Edge in a directory); ``flowreg`` is the
same engine on qdrant-client's emulation (``--store memory``, or on disk with ``--store path``).

Each (system, N) runs in its own process so its peak RSS is its own. ``latency`` starts a local
OpenAI-compatible embedding server that adds a fixed delay per request, and every system embeds
through it. Prints one table and the target ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_one(system: str, n: int, embedder: str, url: str | None, store: str,
            page_sizes: list[int], repeat: int) -> dict[str, Any]:
    from bench.systems import RUNNERS

    location = ":memory:"
    scratch: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if store == "server":
        location = os.environ["FLOWREG_BENCH_QDRANT_URL"]
        from qdrant_client import QdrantClient

        admin = QdrantClient(url=location, api_key=os.environ.get("QDRANT_API_KEY"),
                             check_compatibility=False)
        for collection in admin.get_collections().collections:  # each system starts empty
            admin.delete_collection(collection.name)
        admin.close()
    elif store == "path":
        import tempfile

        # Removed with the store when the run ends (50,000 flows take some 160 MB).
        scratch = tempfile.TemporaryDirectory(prefix=f"bench-{system}-",
                                              ignore_cleanup_errors=True)
        location = scratch.name
    runner = RUNNERS[system]
    with scratch:
        if system == "langchain":
            phases = runner(n, embedder, url, location)
        elif system in ("flowreg", "edge"):
            phases = asyncio.run(runner(n, embedder, url, location, page_sizes, repeat))
        else:
            phases = asyncio.run(runner(n, embedder, url, location))
    rss = phases[0].get("rss_mib") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"system": system, "n": n, "phases": phases, "rss_mib": rss}


def measure(system: str, n: int, args: argparse.Namespace, url: str | None) -> dict[str, Any]:
    largest = n == max(args.size_list)
    cmd = [sys.executable, "-m", "bench.bench_sync", "--one", system, "--sizes", str(n),
           "--embedder", args.embedder, "--store", args.store, "--repeat", str(args.repeat),
           "--page-sizes", args.page_sizes if largest else ""]
    if url:
        cmd += ["--url", url]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{system} N={n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.embedding_server",
                             "--port", str(port), "--latency", str(latency),
                             "--dimension", "384"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving" in line, line
    return proc, f"http://127.0.0.1:{port}/v1"


def fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in
                     enumerate(zip(cells, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--embedder", choices=("hashing", "latency"), default="hashing")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--store", choices=("memory", "path", "server"), default="memory",
                        help="server: a Qdrant server built by hack/qdrant.sh, started here")
    parser.add_argument("--systems", default="flowreg,naive,langchain")
    parser.add_argument("--naive-max", type=int, default=10_000,
                        help="skip the naive baseline above this N (estimated instead)")
    parser.add_argument("--page-sizes", default="256,1000,10000",
                        help="scroll page sizes to compare at the largest N ('' for none)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of flowreg's no-op re-apply and of the bare scroll "
                             "(interleaved; medians are reported)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.size_list = [int(s) for s in args.sizes.split(",") if s]
    if args.one:
        pages = [int(p) for p in args.page_sizes.split(",") if p] if args.page_sizes else []
        result = run_one(args.one, args.size_list[0], args.embedder, args.url, args.store, pages,
                         args.repeat)
        print(json.dumps(result))
        return

    qdrant = None
    if args.store == "server":
        from tests.support.qdrant_server import QdrantServer

        binary = subprocess.run(["bash", str(REPO / "hack" / "qdrant.sh")], check=True,
                                capture_output=True, text=True).stdout.split()[-1]
        qdrant = QdrantServer(Path(binary)).start()
        os.environ["FLOWREG_BENCH_QDRANT_URL"] = qdrant.endpoint.url
        os.environ["QDRANT_API_KEY"] = qdrant.api_key
    server, url = (None, None)
    if args.embedder == "latency":
        server, url = start_server(args.latency)
    print(f"# flowreg sync benchmark: embedder={args.embedder}"
          + (f" ({args.latency * 1000:.0f} ms per request)" if server else "")
          + f", store={args.store}, cpus={os.cpu_count()}")
    results: dict[tuple[str, int], dict[str, Any]] = {}
    per_flow_naive: float | None = None
    try:
        for n in args.size_list:
            for system in args.systems.split(","):
                if system == "naive" and n > args.naive_max:
                    results[(system, n)] = {"skipped": True}
                    continue
                started = time.perf_counter()
                results[(system, n)] = measure(system, n, args, url)
                print(f"# measured {system} N={n} in {time.perf_counter() - started:.1f} s",
                      file=sys.stderr)
                if system == "naive":
                    first = results[(system, n)]["phases"][0]
                    per_flow_naive = first["wall"] / n
    finally:
        if server is not None:
            server.terminate()
        if qdrant is not None:
            qdrant.remove()

    head = ["N", "system / phase", "wall s", "emb calls", "emb texts", "qdrant calls",
            "qdrant writes", "peak RSS MiB"]
    widths = [6, 34, 9, 9, 9, 12, 13, 12]
    print(fmt_row(head, widths))
    for n in args.size_list:
        for system in args.systems.split(","):
            res = results.get((system, n))
            if res is None:
                continue
            if res.get("skipped"):
                est = f"est. {per_flow_naive * n:.0f} s" if per_flow_naive else "skipped"
                print(fmt_row([str(n), f"{system}: first apply (skipped)", est, "", "", "", "",
                               ""], widths))
                continue
            for i, ph in enumerate(res["phases"]):
                print(fmt_row([str(n), f"{system}: {ph['phase']}", f"{ph['wall']:.3f}",
                               str(ph["emb_calls"]), str(ph["emb_texts"]), str(ph["q_calls"]),
                               str(ph["q_writes"]),
                               f"{res['rss_mib']:.0f}" if i == 0 else ""], widths))
    print()
    for n in args.size_list:
        edge = results.get(("edge", n))
        if edge:
            ph = {p["phase"]: p["wall"] for p in edge["phases"]}
            ratio = ph["no-op re-apply"] / ph["floor: bare scroll"]
            calls = next(p["q_calls"] for p in edge["phases"] if p["phase"] == "no-op re-apply")
            built = ph.get("floor: bare batched upsert, building the points")
            print(f"N={n}: edge first apply {ph['first apply']:.3f} s "
                  f"({ph['first apply'] / ph['floor: bare batched upsert']:.2f}x the bare "
                  "batched upsert"
                  + (f", {ph['first apply'] / built:.2f}x the same building its points"
                     if built else "")
                  + f"), no-op {ph['no-op re-apply']:.4f} s in {calls} store "
                  f"calls ({ratio:.2f}x the bare scroll; the content checksums of {n} fresh "
                  f"flows, computed while reading, {ph['reading: content checksums']:.4f} s), "
                  "cold open + snapshot "
                  f"{ph['cold open + snapshot (new process)']:.3f} s, peak RSS "
                  f"{edge['rss_mib']:.0f} MiB")
            fresh = next((p for p in edge["phases"]
                          if p["phase"] == "no-op re-apply (new process)"), None)
            if fresh:
                print(f"N={n}: edge no-op in a new process: engine {fresh['wall']:.3f} s, "
                      f"process peak RSS {fresh['rss_mib']:.0f} MiB")
            for p in edge["phases"]:
                if p["phase"].startswith("no-op, "):
                    print(f"N={n}: edge {p['phase']}: engine {p['wall']:.3f} s, process peak "
                          f"RSS {p['rss_mib']:.0f} MiB")
    for n in args.size_list:
        fr = results.get(("flowreg", n))
        if not fr:
            continue
        ph = {p["phase"]: p["wall"] for p in fr["phases"]}
        noop, scroll = ph["no-op re-apply"], ph["floor: bare scroll"]
        first, upsert = ph["first apply"], ph["floor: bare batched upsert"]
        runs = {p["phase"]: p.get("runs") for p in fr["phases"]}
        if runs.get("no-op re-apply") and runs.get("floor: bare scroll"):
            pairs = zip(runs["no-op re-apply"], runs["floor: bare scroll"], strict=True)
            print(f"N={n}: {len(runs['no-op re-apply'])} runs of no-op / bare scroll (s): "
                  + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in pairs))
        calls = next(p["q_calls"] for p in fr["phases"] if p["phase"] == "no-op re-apply")
        line = (f"N={n}: no-op {noop:.4f} s in {calls} Qdrant calls (reading's content "
                f"checksums {ph['reading: content checksums']:.4f} s); no-op / bare scroll "
                f"(medians) = {noop / scroll:.2f}x")
        line += f"; first apply / bare upsert = {first / upsert:.2f}x"
        lc = results.get(("langchain", n))
        if lc:
            lph = {p["phase"]: p["wall"] for p in lc["phases"]}
            line += (f"; LangChain no-op / flowreg no-op = "
                     f"{lph['no-op re-apply'] / ph['no-op re-apply']:.1f}x")
            line += (f"; LangChain first / flowreg first = "
                     f"{lph['first apply'] / ph['first apply']:.1f}x")
        nv = results.get(("naive", n))
        if nv and not nv.get("skipped"):
            nph = {p["phase"]: p["wall"] for p in nv["phases"]}
            line += f"; naive first / flowreg first = {nph['first apply'] / ph['first apply']:.1f}x"
        elif per_flow_naive:
            line += (f"; naive first (estimated) / flowreg first = "
                     f"{per_flow_naive * n / ph['first apply']:.1f}x")
        print(line)


if __name__ == "__main__":
    main()
