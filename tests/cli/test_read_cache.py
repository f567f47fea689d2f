"""The manifest read cache: an unchanged file is not parsed again by a no-op apply, and no
state of the cache (stale, corrupt, unwritable, a file edited mid-run) changes what is synced."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import yaml

from flowreg import documents, manifest, read_cache
from flowreg.cli.main import main
from flowreg.errors import InvalidSpec
from flowreg.flow import DeclaredFlows, DeferredFlows
from flowreg.read_cache import ReadCache
from tests.support.builders import make_flows, registry_doc


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("FLOWREG_CACHE_DIR", str(directory))
    return directory


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources whose YAML was parsed, in order."""
    seen: list[str] = []
    real = documents.read_documents

    def counted(text: str, source: str, **kwargs: object) -> list[documents.Document]:
        seen.append(source)
        return real(text, source, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(documents, "read_documents", counted)
    return seen


def apply(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> dict:
    assert main(["apply", *args, "-o", "json"]) == code
    return json.loads(capsys.readouterr().out)


def test_a_noop_apply_of_an_unchanged_file_does_not_parse_it(capsys, tmp_path, write_manifest,
                                                            cache_dir, parses):
    path = write_manifest(registry_doc(make_flows(20)))
    store = str(tmp_path / "qdrant")
    first = apply(capsys, "-f", str(path), "--store", store)
    assert len(first["created"]) == 20 and parses == [str(path)]
    second = apply(capsys, "-f", str(path), "--store", store)
    assert parses == [str(path)]  # not parsed again
    assert second["digest"] == "matched" and second["store_calls"] <= 3
    assert second["skipped"] == [f"flow_{i:05d}" for i in range(20)]
    assert second["store_writes"] == 0 and second["embedding_calls"] == 0


def test_a_cached_file_whose_digest_differs_is_read_in_full_and_synced(capsys, tmp_path,
                                                                      write_manifest, cache_dir,
                                                                      parses):
    path = write_manifest(registry_doc(make_flows(12)))
    apply(capsys, "-f", str(path), "--store", str(tmp_path / "one"))
    # Another store holds nothing: the cached summary cannot match, so the file is read.
    report = apply(capsys, "-f", str(path), "--store", str(tmp_path / "two"))
    assert len(report["created"]) == 12 and report["embedded_texts"] == 12
    assert parses == [str(path), str(path)]
    assert report["digest"] == "written"


def test_an_edited_file_is_read_again(capsys, tmp_path, write_manifest, cache_dir, parses):
    path = write_manifest(registry_doc(make_flows(5)))
    store = str(tmp_path / "qdrant")
    apply(capsys, "-f", str(path), "--store", store)
    path.write_text(yaml.safe_dump(registry_doc(make_flows(5, salt="x"))), encoding="utf-8")
    report = apply(capsys, "-f", str(path), "--store", store)
    assert len(report["updated"]) == 5 and len(parses) == 2


def test_a_file_changed_after_it_was_hashed_is_refused_before_anything_is_written(
        tmp_path, write_manifest, cache_dir):
    path = write_manifest(registry_doc(make_flows(3)))
    cache = ReadCache(cache_dir)
    manifest.load([path], cache=cache)
    [decl] = manifest.load([path], cache=cache, defer=True)
    assert isinstance(decl.registry, DeferredFlows)
    path.write_text(yaml.safe_dump(registry_doc(make_flows(3, salt="y"))), encoding="utf-8")
    with pytest.raises(InvalidSpec) as caught:
        decl.registry.load()
    assert str(path) in str(caught.value) and "changed while flowreg ran" in str(caught.value)


def test_the_deferred_registry_loads_the_same_flows(tmp_path, write_manifest, cache_dir):
    path = write_manifest([registry_doc(make_flows(4), name="a"),
                           registry_doc(make_flows(6, prefix="g"), name="b", agent="other")])
    cache = ReadCache(cache_dir)
    full = manifest.load([path], cache=cache)
    deferred = manifest.load([path], cache=cache, defer=True)
    for whole, summary in zip(full, deferred, strict=True):
        assert isinstance(summary.registry, DeferredFlows)
        assert isinstance(whole.registry, DeclaredFlows)
        assert (summary.registry.names, summary.registry.content_checksums) == (
            whole.registry.names, whole.registry.content_checksums)
        assert (summary.policy, summary.name, summary.source, summary.interval) == (
            whole.policy, whole.name, whole.source, whole.interval)
        assert summary.registry.load() == whole.registry


def test_the_cluster_size_warning_is_said_again_from_the_cache(capsys, tmp_path, write_manifest,
                                                              cache_dir, monkeypatch):
    monkeypatch.setattr("flowreg.size.CLUSTER_BUDGET", 100)
    path = write_manifest(registry_doc(make_flows(3)))
    store = str(tmp_path / "qdrant")
    for _ in range(2):
        assert main(["apply", "-f", str(path), "--store", store]) == 0
        assert "a default Kubernetes cluster stores at most" in capsys.readouterr().err


def test_a_file_with_a_problem_is_never_cached(capsys, write_manifest, cache_dir, tmp_path):
    doc = registry_doc(make_flows(2))
    doc["spec"]["flows"][1]["checksum"] = "sha256:" + "0" * 64
    path = write_manifest(doc)
    for _ in range(2):
        assert main(["apply", "-f", str(path), "--store", str(tmp_path / "q")]) != 0
        err = capsys.readouterr().err
        assert "flow_00001" in err and "checksum" in err
    assert not cache_dir.exists() or not any(cache_dir.iterdir())


def test_a_duplicate_registry_across_a_cached_and_a_new_file_is_still_refused(
        capsys, write_manifest, cache_dir, tmp_path):
    first = write_manifest(registry_doc(make_flows(2)))
    store = str(tmp_path / "q")
    assert main(["apply", "-f", str(first), "--store", store]) == 0
    second = write_manifest(registry_doc(make_flows(2, prefix="h")))
    assert main(["apply", "-f", str(first), "-f", str(second), "--store", store]) != 0
    assert "declared twice" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["garbage", "other key", "wrong types", "empty"])
def test_a_damaged_entry_is_a_miss(capsys, tmp_path, write_manifest, cache_dir, parses, damage):
    path = write_manifest(registry_doc(make_flows(3)))
    store = str(tmp_path / "qdrant")
    apply(capsys, "-f", str(path), "--store", store)
    [entry] = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    data = json.loads(entry.read_bytes())
    if damage == "garbage":
        entry.write_bytes(b"\x00not json")
    elif damage == "other key":
        data["key"] = "0" * 64
        entry.write_text(json.dumps(data))
    elif damage == "wrong types":
        data["registries"][0]["names"] = [1, 2, 3]
        entry.write_text(json.dumps(data))
    else:
        entry.write_bytes(b"")
    report = apply(capsys, "-f", str(path), "--store", store)
    assert report["digest"] == "matched" and len(parses) == 2  # parsed again, same outcome


def test_an_unwritable_cache_leaves_the_command_working(capsys, tmp_path, write_manifest,
                                                        monkeypatch, parses):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FLOWREG_CACHE_DIR", str(blocker / "cache"))  # under a regular file
    path = write_manifest(registry_doc(make_flows(3)))
    store = str(tmp_path / "qdrant")
    assert len(apply(capsys, "-f", str(path), "--store", store)["created"]) == 3
    assert apply(capsys, "-f", str(path), "--store", store)["digest"] == "matched"
    assert len(parses) == 2  # read both times: there is no cache


def test_a_directory_others_may_write_into_is_not_used(capsys, tmp_path, write_manifest,
                                                        cache_dir, parses):
    path = write_manifest(registry_doc(make_flows(3)))
    store = str(tmp_path / "qdrant")
    apply(capsys, "-f", str(path), "--store", store)
    cache_dir.chmod(0o777)
    assert apply(capsys, "-f", str(path), "--store", store)["digest"] == "matched"
    assert len(parses) == 2


def test_an_entry_that_lies_about_the_policy_stops_the_apply_before_any_write(
        capsys, tmp_path, write_manifest, cache_dir, parses):
    path = write_manifest(registry_doc(make_flows(3)))
    store = str(tmp_path / "qdrant")
    apply(capsys, "-f", str(path), "--store", store)
    [entry] = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    data = json.loads(entry.read_bytes())
    data["registries"][0]["policy"] = [False, 0, False]  # the file says prune, 25
    entry.write_text(json.dumps(data))
    assert main(["apply", "-f", str(path), "--store", store, "-o", "json"]) == InvalidSpec.exit_code
    captured = capsys.readouterr()
    assert "read cache's entry" in captured.err and str(path) in captured.err
    assert not entry.exists()  # removed: the next run reads the file
    report = apply(capsys, "-f", str(path), "--store", store)
    assert report["digest"] == "matched" and report["store_writes"] == 0


@pytest.fixture
def crd_env(monkeypatch):
    """Set ``$FLOWREG_CRD`` for in-process commands: the CRD, read once per process, is read
    again now and after the test."""
    from flowreg import schema

    cached = (schema._crd_text, schema.crd_digest, schema.crd, schema.object_schema,
              schema._compiled)

    def use(path: Path) -> None:
        monkeypatch.setenv("FLOWREG_CRD", str(path))
        for function in cached:
            function.cache_clear()

    yield use
    monkeypatch.delenv("FLOWREG_CRD", raising=False)
    for function in cached:
        function.cache_clear()


def test_another_crd_is_another_key(capsys, tmp_path, write_manifest, cache_dir, parses,
                                    crd_env):
    from flowreg import schema

    path = write_manifest(registry_doc(make_flows(3)))
    store = str(tmp_path / "qdrant")
    apply(capsys, "-f", str(path), "--store", store)
    same = tmp_path / "same.yaml"
    same.write_bytes(schema.crd_path().read_bytes())
    crd_env(same)  # the same text elsewhere: the same key
    apply(capsys, "-f", str(path), "--store", store)
    assert len(parses) == 1
    edited = tmp_path / "edited.yaml"
    edited.write_bytes(schema.crd_path().read_bytes() + b"\n# edited\n")
    crd_env(edited)  # other text: read again
    apply(capsys, "-f", str(path), "--store", store)
    assert len(parses) == 2


def test_a_file_name_that_is_not_utf8_is_read_without_the_cache(capsys, tmp_path, cache_dir,
                                                                parses):
    path = Path(os.fsdecode(bytes(tmp_path) + b"/\xff-bot.yaml"))
    path.write_text(yaml.safe_dump(registry_doc(make_flows(3))), encoding="utf-8")
    store = str(tmp_path / "qdrant")
    apply(capsys, "-f", str(path), "--store", store)
    assert apply(capsys, "-f", str(path), "--store", store)["digest"] == "matched"
    assert len(parses) == 2  # its entry cannot name it in JSON: read both times, no error


def test_pruning_touches_nothing_but_entries(tmp_path):
    directory = tmp_path / "c"
    directory.mkdir(mode=0o700)
    mine = directory / "notes.txt"
    mine.write_text("keep me")
    cache = ReadCache(directory, max_entries=1)
    for key in ("a" * 64, "b" * 64):
        cache.put(key, 0, [])
    assert mine.read_text() == "keep me"
    assert len([p for p in directory.iterdir() if p.name != "notes.txt"]) == 1


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_cache_can_be_turned_off(capsys, tmp_path, write_manifest, cache_dir, parses,
                                     monkeypatch, how):
    path = write_manifest(registry_doc(make_flows(3)))
    store = str(tmp_path / "qdrant")
    flags = ["--no-read-cache"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv("FLOWREG_CACHE_DIR", "off")
    for _ in range(2):
        apply(capsys, "-f", str(path), "--store", store, *flags)
    assert len(parses) == 2 and not cache_dir.exists()


def test_deep_apply_reads_the_file(capsys, tmp_path, write_manifest, cache_dir, parses):
    path = write_manifest(registry_doc(make_flows(3)))
    store = str(tmp_path / "qdrant")
    apply(capsys, "-f", str(path), "--store", store)
    assert apply(capsys, "-f", str(path), "--store", store, "--deep")["digest"] != "matched"
    assert len(parses) == 2


def test_an_edited_reader_never_takes_an_entry_it_did_not_write(tmp_path, monkeypatch):
    package = tmp_path / "flowreg"
    package.mkdir()
    module = package / "reader.py"
    module.write_text("one = 1\n")
    site = tmp_path / "site"
    (site / "fakeparser").mkdir(parents=True)
    parser = site / "fakeparser" / "__init__.py"
    parser.write_text("")
    (site / "fakeparser-1.0.dist-info").mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(read_cache, "_PACKAGE", package)
    monkeypatch.setattr(read_cache, "READERS", {"fakeparser": "fakeparser"})

    def key(path: str = "m.yaml", verify: bool = True, crd: str = "c" * 64) -> str:
        return ReadCache(tmp_path).key(path, b"x", verify, crd)

    before = key()
    assert key() == before  # the same install, the same key
    os.utime(module, ns=(1, 1))  # flowreg's own files count by their content
    assert key() == before
    module.write_text("one = 2\n")  # the same size, other bytes
    os.utime(module, ns=(1, 1))
    assert key() != before
    before = key()
    os.utime(parser, ns=(1, 1))  # a parser's files count by size and mtime
    assert key() != before
    before = key()
    (site / "fakeparser-1.0.dist-info").rename(site / "fakeparser-1.1.dist-info")
    assert key() != before  # and by the installed version
    assert key(crd="d" * 64) != key()
    assert key("other.yaml") != key() and key(verify=False) != key()


def test_the_least_recently_used_entries_go_beyond_the_limit(tmp_path):
    cache = ReadCache(tmp_path / "c", max_entries=2)
    for i, key in enumerate(("a" * 64, "b" * 64, "c" * 64)):
        cache.put(key, 0, [])
        os.utime(tmp_path / "c" / key, ns=(i * 10**9, i * 10**9))
    assert cache.get("a" * 64) is None  # pruned when the third was kept
    assert cache.get("b" * 64) is not None and cache.get("c" * 64) is not None


def test_every_registry_of_an_apply_is_read_before_the_first_write(
        capsys, tmp_path, write_manifest, cache_dir, parses, monkeypatch):
    first = write_manifest(registry_doc(make_flows(3), name="a", agent="agent_a"))
    second = write_manifest(registry_doc(make_flows(3), name="b", agent="agent_b"))
    files = ["-f", str(first), "-f", str(second)]
    main(["apply", *files, "--store", str(tmp_path / "one"), "-o", "json"])
    capsys.readouterr()
    real = manifest.load

    def load_then_edit(*args: object, **kwargs: object) -> list[manifest.Declaration]:
        loaded = real(*args, **kwargs)  # type: ignore[arg-type]
        second.write_text(second.read_text() + "\n# edited while flowreg ran\n")
        return loaded

    monkeypatch.setattr(manifest, "load", load_then_edit)
    other = str(tmp_path / "two")  # its digests differ: both files must be read
    assert main(["apply", *files, "--store", other, "-o", "json"]) == InvalidSpec.exit_code
    captured = capsys.readouterr()
    assert "changed while flowreg ran" in captured.err and str(second) in captured.err
    monkeypatch.setattr(manifest, "load", real)
    assert main(["plan", "-f", str(first), "--store", other, "-o", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["created"]) == 3  # nothing of a written


def test_a_pipe_is_read_without_the_cache(capsys, tmp_path, cache_dir, parses):
    fifo = tmp_path / "manifest.yaml"
    os.mkfifo(fifo)
    text = yaml.safe_dump(registry_doc(make_flows(3)))
    for store in ("one", "two"):  # the second's digest differs: a cached pipe could not be read
        writer = threading.Thread(target=fifo.write_text, args=(text,))
        writer.start()
        report = apply(capsys, "-f", str(fifo), "--store", str(tmp_path / store))
        writer.join()
        assert report["digest"] == "written" and len(report["created"]) == 3
        assert not list(cache_dir.glob("[0-9a-f]*"))  # nothing kept of it
    assert len(parses) == 2
