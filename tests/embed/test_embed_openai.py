"""The OpenAI-compatible embedder against a real local HTTP server."""

from __future__ import annotations

import time

import pytest

from flowreg.embed.openai import OpenAIEmbedder
from flowreg.errors import EmbedderUnavailable
from flowreg.flow import DeclaredFlows
from flowreg.manifest import parse_object
from flowreg.store import open_store
from flowreg.sync import SyncEngine
from tests.support.builders import make_flows, registry_doc
from tests.support.embedding_server import EmbeddingServer, Failure, vector_of


@pytest.fixture
def server():
    with EmbeddingServer(dimension=16) as srv:
        yield srv


def embedder(server, **kw) -> OpenAIEmbedder:
    kw.setdefault("backoff", 0.01)
    return OpenAIEmbedder(server.base_url, "test-model", api_key_env=None, **kw)


async def test_batches_and_keeps_order(server):
    emb = embedder(server, dimension=16, batch_size=10, concurrency=3)
    texts = [f"text number {i}" for i in range(95)]
    vectors = await emb.embed(texts)
    assert server.requests == 10 and server.max_batch == 10 and server.texts == 95
    assert vectors == [pytest.approx(vector_of(t, 16)) for t in texts]
    assert emb.identity == "openai:test-model/16"
    await emb.aclose()


async def test_retries_server_errors_and_rate_limits_then_succeeds(server):
    server.fail_next(Failure(503), Failure(429, headers={"Retry-After": "0"}), Failure(502))
    emb = embedder(server, dimension=16, max_retries=4)
    assert len(await emb.embed(["a", "b"])) == 2
    assert server.requests == 4
    await emb.aclose()


async def test_gives_up_after_max_retries_naming_the_status(server):
    server.fail_next(*[Failure(503)] * 5)
    emb = embedder(server, dimension=16, max_retries=2)
    with pytest.raises(EmbedderUnavailable, match=r"after 3 attempt.*HTTP 503"):
        await emb.embed(["a"])
    assert server.requests == 3
    await emb.aclose()


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_client_errors_are_not_retried(server, status):
    server.fail_next(Failure(status, body='{"error": "no"}'))
    emb = embedder(server, dimension=16)
    with pytest.raises(EmbedderUnavailable, match=f"HTTP {status}"):
        await emb.embed(["a"])
    assert server.requests == 1
    await emb.aclose()


async def test_a_hanging_server_times_out_in_bounded_time(server):
    server.fail_next(Failure(kind="hang", hang=2.0), Failure(kind="hang", hang=2.0))
    emb = embedder(server, dimension=16, timeout=0.3, max_retries=1)
    started = time.monotonic()
    with pytest.raises(EmbedderUnavailable, match="timed out"):
        await emb.embed(["a"])
    assert time.monotonic() - started < 2.0
    await emb.aclose()


@pytest.mark.parametrize("kind", ["malformed", "wrong_count", "wrong_dimension"])
async def test_unusable_answers_are_rejected(server, kind):
    server.fail_next(Failure(kind=kind))
    emb = embedder(server, dimension=16, max_retries=0)
    with pytest.raises(EmbedderUnavailable):
        await emb.embed(["a", "b"])
    await emb.aclose()


async def test_api_key_is_sent_but_never_shown(monkeypatch):
    monkeypatch.setenv("MY_EMBEDDING_KEY", "sk-very-secret-123")
    with EmbeddingServer(dimension=8, api_key="sk-very-secret-123") as srv:
        emb = OpenAIEmbedder(srv.base_url, "m", api_key_env="MY_EMBEDDING_KEY")
        await emb.probe()
        assert emb.dimension == 8
        assert srv.auth_headers == ["Bearer sk-very-secret-123"]
        assert "sk-very" not in repr(emb) and "sk-very" not in str(emb)
        await emb.aclose()
        wrong = OpenAIEmbedder(srv.base_url, "m", api_key="nope", backoff=0.01)
        with pytest.raises(EmbedderUnavailable) as err:
            await wrong.embed(["x"])
        assert "HTTP 401" in str(err.value) and "nope" not in str(err.value)
        await wrong.aclose()


async def test_engine_probes_the_dimension_and_batches_embeddings(server):
    emb = embedder(server, batch_size=64)
    store = open_store(":memory:")
    engine = SyncEngine(store, emb, batch_size=100)
    registry: DeclaredFlows = parse_object(registry_doc(make_flows(250))).registry
    report = await engine.apply(registry)
    assert len(report.created) == 250
    # one probe, then engine batches of 100, 100 and 50 texts: 64+36, 64+36, 50
    assert server.requests == 1 + 2 + 2 + 1 and server.texts == 1 + 250
    assert report.embedding_calls == 3
    again = await engine.apply(registry)
    assert again.embedded_texts == 0 and server.requests == 6
    await store.close()
    await emb.aclose()
