"""Collection settings for Qdrant servers: parsing and checks from every shell (CLI flags,
operator config, Python API), and how an existing collection's layout is judged."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from qdrant_client import AsyncQdrantClient, models

import flowreg
from flowreg.cli.main import main
from flowreg.controller.config import parse_config
from flowreg.embed import HashingEmbedder
from flowreg.errors import InvalidSpec
from flowreg.flow import DeclaredFlows, Flow
from flowreg.store import open_store
from flowreg.store.settings import (
    CollectionLayout,
    CollectionSettings,
    check_peers,
    layout_warnings,
    settings_from,
)
from flowreg.sync import SyncEngine
from tests.support.builders import EXAMPLE
from tests.support.qdrant_server import server_available, session_server
from tests.support.stores import drop


def layout(**changes) -> CollectionLayout:
    fields = {"collection": "flows", "shards": 3, "replication_factor": 2,
              "write_consistency_factor": 1, "tenant_index": True, "global_index": False,
              "cluster": True, "peers": 3,
              "read_consistency": "majority", "write_ordering": "medium", **changes}
    return CollectionLayout(**fields)


@pytest.mark.parametrize(("data", "message"), [
    ({"shards": 0}, "shards must be a whole number of at least 1, not 0"),
    ({"replicationFactor": -1}, "replicationFactor must be a whole number of at least 1"),
    ({"replicationFactor": "2"}, "not '2'"),
    ({"readConsistency": "most"}, "readConsistency must be one of all, majority, quorum"),
    ({"writeOrdering": "fast"}, "writeOrdering must be one of weak, medium, strong"),
    ({"replicationFactor": 2, "writeConsistencyFactor": 3},
     "writeConsistencyFactor 3 is larger than .*replicationFactor 2"),
    ({"replicas": 2}, "unknown setting.* replicas"),
    ({"globalIndex": "yes"}, "globalIndex must be true or false, not 'yes'"),
    ({"globalIndex": 1}, "globalIndex must be true or false, not 1"),
])
def test_bad_settings_are_refused_naming_the_setting(data, message):
    with pytest.raises(InvalidSpec, match=message):
        settings_from(data, "stores.default.cluster.")


def test_settings_parse_from_configuration_keys():
    settings = settings_from({"shards": 3, "replicationFactor": 2, "readConsistency": "2",
                              "writeOrdering": "strong", "globalIndex": True})
    assert settings == CollectionSettings(3, 2, None, 2, "strong", True)
    assert settings.to_dict() == {"shards": 3, "replicationFactor": 2, "readConsistency": 2,
                                  "writeOrdering": "strong", "globalIndex": True}


def test_more_replicas_than_peers_names_both_numbers_and_the_collection():
    with pytest.raises(InvalidSpec, match=r"replicationFactor 4 is larger than the number of "
                                          r"peers, 3: collection 'flows' not created"):
        check_peers("flows", CollectionSettings(replication_factor=4), 3, True)
    with pytest.raises(InvalidSpec, match=r"replicationFactor 2 .* peers, 1.*not a cluster"):
        check_peers("flows", CollectionSettings(replication_factor=2), 1, False)
    check_peers("flows", CollectionSettings(replication_factor=3), 3, True)


def test_a_mismatched_collection_is_a_warning_per_setting_and_the_tenant_index_says_how():
    assert layout_warnings(layout(), CollectionSettings(3, 2, 1)) == []
    assert layout_warnings(layout(), CollectionSettings()) == []
    [rf] = layout_warnings(layout(replication_factor=1), CollectionSettings(replication_factor=2))
    assert "replicationFactor 1, the configuration asks for 2" in rf
    assert "uses the collection as it is" in rf
    [graph] = layout_warnings(layout(), CollectionSettings(global_index=True))
    assert "globalIndex false, the configuration asks for true" in graph
    assert layout_warnings(layout(global_index=True), CollectionSettings(global_index=True)) == []
    [tenant] = layout_warnings(layout(tenant_index=False), CollectionSettings())
    assert "no tenant index on agent_id" in tenant
    assert '"is_tenant": true' in tenant and "PUT /collections/flows/index" in tenant


def test_the_operator_config_takes_cluster_settings_and_names_a_bad_one():
    config = parse_config({"stores": {"default": {"location": "http://q:6333",
                                                  "cluster": {"replicationFactor": 2}}}})
    assert config.store("default").cluster == CollectionSettings(replication_factor=2)
    assert parse_config({}).store("default").cluster is None
    with pytest.raises(ValueError, match=r"stores.default.cluster.shards must be .* not 0"):
        parse_config({"stores": {"default": {"cluster": {"shards": 0}}}})
    with pytest.raises(ValueError, match=r"stores.default.cluster: unknown setting.* shard\b"):
        parse_config({"stores": {"default": {"cluster": {"shard": 2}}}})


def test_settings_for_a_store_that_is_not_a_server_are_refused():
    with pytest.raises(InvalidSpec, match="apply only to a Qdrant server"):
        open_store(":memory:", settings=CollectionSettings(replication_factor=2))
    open_store(":memory:", settings=CollectionSettings())  # nothing configured: fine


def test_cli_flags_are_checked_before_anything_is_opened(tmp_path, capsys):
    store = tmp_path / "store"
    with pytest.raises(SystemExit) as exited:
        main(["apply", "-f", str(EXAMPLE), "--store", "http://127.0.0.1:9", "--shards", "0"])
    assert exited.value.code == 2
    assert "--shards: must be an integer from 1 to 100000, not '0'" in capsys.readouterr().err
    for flag in ("--replication-factor=2", "--global-index", "--no-global-index"):
        code = main(["apply", "-f", str(EXAMPLE), "--store", str(store), flag])
        assert code == 3 and not store.exists()
        assert "apply only to a Qdrant server" in capsys.readouterr().err


def test_the_python_api_takes_settings_as_a_mapping_and_checks_them():
    registry = flowreg.Registry("a", [flowreg.Flow("f", "Do f.")])
    with pytest.raises(InvalidSpec, match="writeOrdering must be one of"):
        flowreg.sync_registry_blocking(registry, store=":memory:",
                                       settings={"writeOrdering": "fast"})
    report = flowreg.sync_registry_blocking(registry, store=":memory:", settings={})
    assert report.created == ["f"] and report.collection is None and report.warnings == []


server_only = pytest.mark.skipif(not server_available(), reason="no Qdrant server at hand")


@server_only
async def test_a_server_collection_gets_the_tenant_index_and_is_reported_without_warnings():
    endpoint = session_server()
    store = open_store(endpoint.url, f"t_{uuid.uuid4().hex[:12]}", api_key=endpoint.api_key)
    try:
        engine = SyncEngine(store, HashingEmbedder())
        first = await engine.apply(DeclaredFlows("a", "ns/r", (Flow("f", "Do f."),)))
        assert first.collection is not None and first.collection["tenantIndex"] is True
        assert first.collection["globalIndex"] is False
        assert first.collection["cluster"] is False and first.warnings == []
        again = await engine.apply(DeclaredFlows("a", "ns/r", (Flow("f", "Do f."),)))
        assert again.collection == first.collection and again.warnings == []
    finally:
        await drop(store)


@server_only
@pytest.mark.parametrize("global_index", [None, True])
async def test_a_new_collection_has_a_graph_per_agent_unless_a_global_index_is_asked_for(
        global_index):
    """Every flowreg search is one agent's: by default Qdrant builds no graph over the whole
    collection (``m: 0``), only one per agent (``payload_m``); searches still find each agent's
    own flows first."""
    endpoint = session_server()
    settings = CollectionSettings(global_index=global_index)
    store = open_store(endpoint.url, f"t_{uuid.uuid4().hex[:12]}", api_key=endpoint.api_key,
                       settings=settings)
    client = AsyncQdrantClient(url=endpoint.url, api_key=endpoint.api_key,
                               check_compatibility=False)
    try:
        engine = SyncEngine(store, HashingEmbedder())
        for agent in ("a", "b"):
            await engine.apply(DeclaredFlows(agent, f"ns/{agent}", (
                Flow("refund", "Refund a customer's order."),
                Flow("weather", "Tell the weather forecast for a city."))))
        hnsw = (await client.get_collection(store.collection)).config.hnsw_config
        if global_index:
            assert (hnsw.m, hnsw.payload_m) == (16, None)
        else:
            assert (hnsw.m, hnsw.payload_m) == (0, 16)
        hits = await engine.query("b", "weather forecast for a city", limit=5)
        assert [h.payload["name"] for h in hits][:1] == ["weather"]
        assert {h.payload["agent_id"] for h in hits} == {"b"}
        layout = await store.layout()
        assert layout is not None and layout.global_index is bool(global_index)
    finally:
        await client.close()
        await drop(store)


@server_only
def test_a_collection_made_elsewhere_is_used_as_it_is_and_the_warning_upgrades_it(
        capsys, monkeypatch):
    endpoint = session_server()
    name = f"t_{uuid.uuid4().hex[:12]}"

    async def admin(*schemas: object) -> int:
        """Make the collection (with ``schemas`` of agent_id); return its shard number."""
        client = AsyncQdrantClient(url=endpoint.url, api_key=endpoint.api_key,
                                   check_compatibility=False)
        try:
            if not await client.collection_exists(name):
                await client.create_collection(name, vectors_config=models.VectorParams(
                    size=384, distance=models.Distance.COSINE))
            for schema in schemas:
                await client.create_payload_index(name, "agent_id", field_schema=schema,
                                                  wait=True)
            return int((await client.get_collection(name)).config.params.shard_number or 0)
        finally:
            await client.close()

    asyncio.run(admin(models.PayloadSchemaType.KEYWORD))
    monkeypatch.setenv("QDRANT_API_KEY", endpoint.api_key or "")
    try:
        assert main(["plan", "-f", str(EXAMPLE), "--store", endpoint.url, "--collection", name,
                     "-o", "json", "--shards", "2"]) == 0
        out = capsys.readouterr()
        report = json.loads(out.out)
        assert report["collection"]["shards"] == 1 and report["collection"]["tenantIndex"] is False
        assert any("shards 1, the configuration asks for 2" in w for w in report["warnings"])
        [upgrade] = [w for w in report["warnings"] if "is_tenant" in w]
        assert f"PUT /collections/{name}/index" in upgrade and "warning:" in out.err
        # the upgrade the warning names, done as it says: the tenant index replaces the keyword one
        assert asyncio.run(admin(models.KeywordIndexParams(
            type=models.KeywordIndexType.KEYWORD, is_tenant=True))) == 1  # shards unchanged
        assert main(["store", "info", "--store", endpoint.url, "--collection", name,
                     "-o", "json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["exists"] and info["settings"]["tenantIndex"] is True and info["warnings"] == []
    finally:
        asyncio.run(drop(open_store(endpoint.url, name, api_key=endpoint.api_key)))
