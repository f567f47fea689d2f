"""Embedded store directories: older stores are migrated into Qdrant Edge with nothing lost, and
a directory that is not a store is refused untouched."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowreg.embed import HashingEmbedder
from flowreg.errors import StoreIncompatible
from flowreg.manifest import parse_object
from flowreg.store import open_store
from flowreg.store.client import ClientStore
from flowreg.store.edge import EdgeStore
from flowreg.sync import SyncEngine
from tests.support.builders import make_flows, registry_doc


def registry(n: int, **kw):
    return parse_object(registry_doc(make_flows(n), **kw)).registry


async def write_older_store(path: Path) -> dict[str, tuple[dict, list[float]]]:
    """A store as earlier releases wrote it (qdrant-client's emulation on disk): its points."""
    store = ClientStore.emulated(str(path), "flowreg_flows")
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(40))
    await engine.apply(registry(7, name="other", agent="agent_2"))
    ids = [p.id for agent in ("agent_1", "agent_2") for p in await store.snapshot(agent)]
    payloads, vectors = await store.payloads(ids), await store.vectors(ids)
    await store.close()
    return {i: (payloads[i], vectors[i]) for i in ids}


async def read_all(store) -> dict[str, tuple[dict, list[float]]]:
    ids = [p.id for agent in ("agent_1", "agent_2") for p in await store.snapshot(agent)]
    payloads, vectors = await store.payloads(ids), await store.vectors(ids)
    return {i: (payloads[i], vectors[i]) for i in ids}


async def test_an_older_store_is_migrated_into_edge_with_every_point(tmp_path):
    path = tmp_path / "qdrant"
    before = await write_older_store(path)
    store = open_store(str(path))
    assert isinstance(store, EdgeStore)
    after = await read_all(store)
    assert after.keys() == before.keys() and len(after) == 47
    for pid, (payload, vector) in before.items():
        assert after[pid][0] == payload
        assert after[pid][1] == pytest.approx(vector, abs=1e-6)
    # the old files are kept aside, and the migrated store needs no work at all
    assert (path / "local-mode-backup" / "meta.json").is_file()
    assert not (path / "meta.json").exists()
    report = await SyncEngine(store, HashingEmbedder()).apply(registry(40))
    assert report.change_count == 0 and report.store_writes == 0 and report.embedded_texts == 0
    await store.close()


async def test_a_migration_interrupted_before_verification_starts_again(tmp_path):
    path = tmp_path / "qdrant"
    before = await write_older_store(path)
    (path / ".migrating-flowreg_flows").mkdir()  # a half-built shard left by a killed run
    (path / ".migrating-flowreg_flows" / "junk").write_text("x")
    store = open_store(str(path))
    assert (await read_all(store)).keys() == before.keys()
    await store.close()


def test_the_cli_applies_to_an_older_store_without_re_embedding(tmp_path):
    path = tmp_path / "qdrant"
    asyncio.run(write_older_store(path))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump(registry_doc(make_flows(40))), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "flowreg.cli.main", "apply", "-f", str(manifest), "--store",
         str(path), "-o", "json", "--progress", "never", "--embedder", "hashing"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["changes"] == 0 and report["embedded_texts"] == 0


@pytest.mark.parametrize("stranger", ["notes.txt", "data"])
def test_a_directory_that_is_not_a_store_is_refused_untouched(tmp_path, stranger):
    path = tmp_path / "somewhere"
    path.mkdir()
    if stranger == "data":
        (path / "data").mkdir()
    else:
        (path / "notes.txt").write_text("mine")
    before = sorted(p.name for p in path.rglob("*"))
    with pytest.raises(StoreIncompatible, match=rf"{path} is not a flowreg store .*{stranger}"):
        open_store(str(path))
    assert sorted(p.name for p in path.rglob("*")) == before


def test_a_file_is_not_a_store(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(StoreIncompatible, match="is a file"):
        open_store(str(path))
