"""The systems the benchmark compares, each measured phase by phase in its own process.

* ``flowreg``: the sync engine (first apply, no-op re-apply, 1%-changed re-apply), plus the
  floors measured on the same data: a bare full scroll (same payload subset, no vectors) and a
  bare batched upsert of precomputed vectors.
* ``naive``: what a naive flow-sync utility does: scroll a snapshot, then one embedding call and
  one upsert per created or changed flow, one delete per removed flow, sequentially.
* ``langchain``: LangChain's ``index()`` with ``cleanup="incremental"`` on the same kind of store
  and the same embedder.
"""

from __future__ import annotations

import gc
import os
import resource
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from bench.edge import run_edge
from bench.flows import as_read, change_one_percent, make_registry
from bench.measure import Phase, count_calls, make_embedder, median
from flowreg.embed import HashingEmbedder
from flowreg.embed.base import CountingEmbedder
from flowreg.flow import DeclaredFlows, point_id
from flowreg.store import SNAPSHOT_FIELDS, is_url, payload_of
from flowreg.store.client import ClientStore
from flowreg.sync import SyncEngine


def open_async(location: str) -> AsyncQdrantClient:
    if is_url(location):
        return AsyncQdrantClient(url=location, api_key=os.environ.get("QDRANT_API_KEY"),
                                 check_compatibility=False, timeout=60)
    return AsyncQdrantClient(location=":memory:") if location == ":memory:" \
        else AsyncQdrantClient(path=location)


def open_sync(location: str) -> QdrantClient:
    if is_url(location):
        return QdrantClient(url=location, api_key=os.environ.get("QDRANT_API_KEY"),
                            check_compatibility=False, timeout=60)
    return QdrantClient(location=":memory:") if location == ":memory:" \
        else QdrantClient(path=location)


async def run_flowreg(n: int, embedder_kind: str, url: str | None, location: str,
                      page_sizes: Sequence[int] = (), repeat: int = 5) -> list[dict[str, Any]]:
    """flowreg's phases and its floors. The no-op re-apply and the bare scroll (both read-only)
    run ``repeat`` times, interleaved so that a noisy machine slows both alike; each reports
    its median, with every run's time in ``runs``."""
    client = open_async(location)
    counts = count_calls(client)
    store = ClientStore(client, "flows", local=not is_url(location), location=location)
    emb = CountingEmbedder(make_embedder(embedder_kind, url))
    engine = SyncEngine(store, emb)
    # Each phase gets freshly built flows, as a new process would: no checksum is cached. The
    # no-op re-apply gets them as reading a manifest leaves them (content checksums computed:
    # reading verifies the declared ones), with that cost measured on its own.
    # They are built before the phase's clock starts, as for the other systems.
    registry = make_registry(n)
    with Phase("first apply", counts, emb) as first:
        await engine.apply(registry)
    results = [first.result()]
    results[0]["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    noops: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    readings: list[dict[str, Any]] = []
    for _ in range(max(1, repeat)):
        registry = make_registry(n)
        with Phase("reading: content checksums", counts, emb) as phase:
            as_read(registry)
        readings.append(phase.result())
        with Phase("no-op re-apply", counts, emb) as phase:
            await engine.apply(registry)
        noops.append(phase.result())
        del registry
        # The floor: the same scroll (payload subset, no vectors, flowreg's page size),
        # nothing else, with the garbage collector paused as flowreg pauses it. Like flowreg's
        # apply, it is timed until what it read is released.
        gc.disable()
        with Phase("floor: bare scroll", counts, emb) as phase:
            offset: Any = None
            pages = []
            while True:
                records, offset = await client.scroll(
                    "flows", limit=store.page_size, offset=offset, with_payload=SNAPSHOT_FIELDS,
                    with_vectors=False)
                pages.append(records)
                if offset is None:
                    break
            read = sum(map(len, pages))
            del pages, records
        gc.enable()
        assert read == n + 1  # the flows and the registry's digest point
        floors.append(phase.result())
    registry = change_one_percent(make_registry(n))
    with Phase("1% changed", counts, emb) as phase:
        await engine.apply(registry)
    results += [median(noops), phase.result(), median(floors), median(readings)]
    for size in page_sizes:
        with Phase(f"scroll, pages of {size}", counts, emb) as phase:
            offset = None
            while True:
                _, offset = await client.scroll("flows", limit=size, offset=offset,
                                                with_payload=SNAPSHOT_FIELDS,
                                                with_vectors=False)
                if offset is None:
                    break
        results.append(phase.result())
    # Floor for a first apply: upsert precomputed vectors in batches of 100, nothing else.
    registry = make_registry(n)
    vectors = await emb.inner.embed([f.embedding_text for f in registry.flows])
    points = [models.PointStruct(id=point_id(registry.agent_id, f.name), vector=v,
                                 payload=payload_of(f, registry.agent_id, registry.owner,
                                                    emb.identity))
              for f, v in zip(registry.flows, vectors, strict=True)]
    await client.create_collection("floor", vectors_config=models.VectorParams(
        size=384, distance=models.Distance.COSINE))
    with Phase("floor: bare batched upsert", counts, emb) as phase:
        for i in range(0, len(points), 100):
            await client.upsert("floor", points[i:i + 100])
    results.append(phase.result())
    await emb.aclose()
    await client.close()
    return results


async def run_naive(n: int, embedder_kind: str, url: str | None,
                    location: str) -> list[dict[str, Any]]:
    """The seed's algorithm: snapshot, then sequential per-flow calls."""
    client = open_async(location)
    counts = count_calls(client)
    emb = CountingEmbedder(make_embedder(embedder_kind, url))
    await client.create_collection("flows", vectors_config=models.VectorParams(
        size=384, distance=models.Distance.COSINE))
    results = []
    for name, reg in (("first apply", make_registry(n)), ("no-op re-apply", make_registry(n)),
                      ("1% changed", change_one_percent(make_registry(n)))):
        with Phase(name, counts, emb) as phase:
            await naive_sync(client, emb, reg)
        results.append(phase.result())
    await emb.aclose()
    await client.close()
    return results


async def naive_sync(client: AsyncQdrantClient, emb: CountingEmbedder, reg: DeclaredFlows) -> None:
    remote: dict[str, tuple[str, str]] = {}
    offset: Any = None
    while True:
        records, offset = await client.scroll("flows", limit=10_000, offset=offset,
                                              with_payload=["name", "checksum"])
        for r in records:
            remote[r.payload["name"]] = (str(r.id), r.payload["checksum"])
        if offset is None:
            break
    for flow in reg.flows:
        held = remote.get(flow.name)
        if held is not None and held[1] == flow.content_checksum:
            continue
        [vector] = await emb.embed([flow.embedding_text])
        await client.upsert("flows", [models.PointStruct(
            id=point_id(reg.agent_id, flow.name), vector=vector,
            payload=payload_of(flow, reg.agent_id, reg.owner, emb.identity))])
    declared = reg.by_name()
    for name, (pid, _) in remote.items():
        if name not in declared:
            await client.delete("flows", models.PointIdsList(points=[pid]))


class _LangChainEmbeddings:
    """LangChain ``Embeddings`` over the same embedder (synchronous, as LangChain calls it)."""

    def __init__(self, kind: str, url: str | None, emb: CountingEmbedder) -> None:
        self.kind, self.url, self.emb = kind, url, emb
        self.http = httpx.Client(timeout=30) if kind != "hashing" else None
        self.hashing = HashingEmbedder(384)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.emb.calls += 1
        self.emb.texts += len(texts)
        if self.http is None:
            return [self.hashing.embed_one(t) for t in texts]
        out: list[list[float]] = []
        for i in range(0, len(texts), 100):
            response = self.http.post(f"{self.url}/embeddings",
                                      json={"model": "bench-model", "input": texts[i:i + 100]})
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            out.extend(d["embedding"] for d in data)
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def run_langchain(n: int, embedder_kind: str, url: str | None,
                  location: str) -> list[dict[str, Any]]:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.indexing import InMemoryRecordManager, index
    from langchain_qdrant import QdrantVectorStore

    client = open_sync(location)
    client.create_collection("flows", vectors_config=models.VectorParams(
        size=384, distance=models.Distance.COSINE))
    counts = count_calls(client)
    emb = CountingEmbedder(HashingEmbedder(384))
    adapter = _LangChainEmbeddings(embedder_kind, url, emb)
    Embeddings.register(type(adapter))
    store = QdrantVectorStore(client=client, collection_name="flows",
                              embedding=adapter)  # type: ignore[arg-type]
    manager = InMemoryRecordManager(namespace="qdrant/flows")
    manager.create_schema()

    def docs(reg: DeclaredFlows) -> list[Any]:
        return [Document(page_content=f.embedding_text,
                         metadata={"name": f.name, "agent_id": reg.agent_id,
                                   "checksum": f.content_checksum}) for f in reg.flows]

    results = []
    for name, reg in (("first apply", make_registry(n)), ("no-op re-apply", make_registry(n)),
                      ("1% changed", change_one_percent(make_registry(n)))):
        documents = docs(reg)
        with Phase(name, counts, emb) as phase:
            index(documents, manager, store, cleanup="incremental", source_id_key="name",
                  key_encoder="sha1")
        results.append(phase.result())
    client.close()
    return results


RUNNERS: dict[str, Callable[..., Any]] = {
    "flowreg": run_flowreg, "edge": run_edge, "naive": run_naive, "langchain": run_langchain}
