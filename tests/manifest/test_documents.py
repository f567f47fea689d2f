"""Reading YAML under limits: hostile input is refused cheaply, and both readers read alike."""

from __future__ import annotations

import itertools
import random
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowreg import documents, manifest
from flowreg.errors import InvalidSpec
from tests.support.builders import EXAMPLE, make_flows, registry_doc

HEADER = ("apiVersion: flowreg.dev/v1alpha1\nkind: FlowRegistry\nmetadata:\n  name: x\n"
          "spec:\n  agentId: a\n")
MEMORY_LIMIT = 2 * 2**30  # address space; a regression must not take the machine down
RSS_BOUND_MB = 150


def _bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghi"
    lines += [f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in itertools.pairwise(names)]
    return HEADER.replace("  name: x\n", "  name: x\n  annotations:\n"
                          + "".join(f"    {line}\n" for line in lines))


HOSTILE = {
    # name: (text, the line named, what the message says)
    "alias bomb": (_bomb(), 10, "aliases expand to more than"),
    "deep flow nesting": (HEADER + "  flows: " + "[" * 100_000 + "]" * 100_000 + "\n", 7,
                          "nested deeper than 64 levels"),
    "deep block sequences": (HEADER + "  flows:\n  " + "- " * 100_000 + "x\n", 8,
                             "nested deeper than 64 levels"),
    "deep flow mappings": (HEADER + "  flows: " + "{a: " * 50_000 + "x" + "}" * 50_000 + "\n",
                           7, "nested deeper than 64 levels"),
    "deep block mappings": (HEADER + "  flows:\n" + "".join(" " * (i + 4) + "a:\n"
                                                            for i in range(2000)), 70,
                            "nested deeper than 64 levels"),
    "duplicate keys": (HEADER + "  agentId: b\n", 7, "duplicate key 'agentId' (first on line 6)"),
    "unsafe tag": (HEADER + "  flows: !!python/object/apply:os.system [echo]\n", 7,
                   "unsupported tag"),
}


def flowreg_in_bounds(*args: str, stdin: bytes | None = None,
                      ) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``flowreg`` in a child with an address-space limit; its exit and peak RSS (MB)."""
    # VmHWM is the peak RSS of this address space (ru_maxrss would carry the parent's over
    # fork and exec)
    code = ("import sys\nfrom flowreg.cli.main import main\n"
            "try:\n    code = main(sys.argv[1:])\nfinally:\n"
            "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
            "    print('maxrss', hwm[0].split()[1], file=sys.stderr)\nsys.exit(code)\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    result = subprocess.run([sys.executable, "-c", code, *args], input=stdin,
                            capture_output=True, timeout=120, preexec_fn=limit)
    out = subprocess.CompletedProcess(result.args, result.returncode,
                                      result.stdout.decode(), result.stderr.decode())
    rss = [line for line in out.stderr.splitlines() if line.startswith("maxrss ")]
    assert rss, out.stderr[-2000:]
    return out, int(rss[0].split()[1]) / 1024


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_yaml_is_refused_naming_file_line_and_field_in_bounded_memory(tmp_path, name):
    text, line, message = HOSTILE[name]
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    result, rss_mb = flowreg_in_bounds("validate", "-f", str(path))
    assert result.returncode == 3, result.stderr[-2000:]
    assert f"{path}:{line}: field " in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr and "nothing was written" in result.stderr
    assert rss_mb < RSS_BOUND_MB, rss_mb


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(documents.MAX_FILE_BYTES + 1)
    result, rss_mb = flowreg_in_bounds("validate", "-f", str(path))
    assert result.returncode == 3
    assert f"{path}: file too large: 16.0 MiB, at most 16 MiB is read" in result.stderr
    assert rss_mb < RSS_BOUND_MB


def test_a_large_standard_input_is_refused_without_reading_it_all():
    result, rss_mb = flowreg_in_bounds("validate", "-f", "-",
                                       stdin=b"#" * (documents.MAX_FILE_BYTES + 10))
    assert result.returncode == 3 and "-: file too large" in result.stderr
    assert rss_mb < RSS_BOUND_MB


def test_non_utf8_input_names_the_line_and_column(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEADER.encode() + "  flows:\n  - name: f\n    description: café\n"
                     .encode("latin-1"))
    result, _ = flowreg_in_bounds("validate", "-f", str(path))
    assert result.returncode == 3
    assert f"{path}:9: not UTF-8: byte 0xe9 at column 21" in result.stderr


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n...\n"])
def test_input_without_a_document_is_refused(write_manifest, text):
    path = write_manifest(text)
    with pytest.raises(InvalidSpec) as err:
        manifest.load([path])
    assert str(err.value) == f"{path}: no FlowRegistry document found (empty input)"


def test_aliases_within_the_budget_and_merge_keys_are_read(write_manifest):
    text = HEADER + (
        "  flows:\n"
        "  - &first {name: a, description: first, examples: &ex [one, two]}\n"
        "  - {<<: *first, name: b, examples: *ex}\n")
    [decl] = manifest.load([write_manifest(text)])
    assert [(f.name, f.description, f.examples) for f in decl.registry.flows] == [
        ("a", "first", ("one", "two")), ("b", "first", ("one", "two"))]


@pytest.mark.parametrize(("value", "read_as"), [("yes", "boolean"), ("on", "boolean"),
                                                ("017", "integer"), ("1_000", "integer"),
                                                ("1:20", "integer")])
def test_plain_scalars_are_read_as_yaml_1_1_reads_them(write_manifest, value, read_as):
    """``kubectl`` and PyYAML read YAML 1.1: a plain ``yes`` is a boolean, never a string."""
    flows = make_flows(1)
    text = yaml.safe_dump(registry_doc(flows), sort_keys=False).replace(
        "- please do thing 0", f"- {value}")
    path = write_manifest(text)
    with pytest.raises(InvalidSpec) as err:
        manifest.load([path])
    assert f'field "examples[0]": expected string, got {read_as}' in str(err.value)


def test_quoted_scalars_stay_strings(write_manifest):
    flows = make_flows(1)
    flows[0]["examples"] = ["yes", "017", "2024-01-01"]
    [decl] = manifest.load([write_manifest(registry_doc(flows))])
    assert decl.registry.flows[0].examples == ("yes", "017", "2024-01-01")


def test_timestamps_must_be_quoted(write_manifest):
    path = write_manifest(HEADER + "  flows:\n  - name: f\n    description: 2024-01-01\n")
    with pytest.raises(InvalidSpec) as err:
        manifest.load([path])
    assert f"{path}:9:" in str(err.value) and "quote it to make it a string" in str(err.value)


_ALPHABET = [*"abc XYZ019 :#-'\"\\\t\n,[]{}!&*?|>%@`~.=<+", "é", "日本", "  ", "\r\n", "😀",
             "\u00a0", "\u2028", "yes", "no", "On", "017", "0o17", "1:20", "1e3", "2024-01-01",
             "1_000", ".inf", "<<", "~", "null", "true"]


def _random_value(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth < 3 and roll < 0.2:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 3 and roll < 0.4:
        return {_random_text(rng): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if roll < 0.45:
        return rng.randint(-1000, 1000)
    if roll < 0.5:
        return rng.choice([True, False, None, 1.5])
    return _random_text(rng)


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 6)))


def test_the_fast_reader_reads_what_the_located_reader_reads():
    """On any text the fast reader accepts, both readers give the same documents."""
    rng = random.Random(11)
    fast = 0
    for _ in range(1500):
        docs = [{"k": _random_value(rng)} for _ in range(rng.randint(1, 2))]
        text = yaml.safe_dump_all(docs, default_style=rng.choice([None, None, '"', "'", "|"]),
                                  width=rng.choice([20, 80, 1000]),
                                  allow_unicode=rng.random() < 0.5,
                                  default_flow_style=rng.choice([False, None, True]))
        for variant in (text, text.replace("'", "")):  # plain scalars, and some broken YAML
            try:
                located = [d.data for d in documents.read_documents(variant, "t", located=True)]
            except InvalidSpec:
                continue
            read = documents.read_documents(variant, "t")
            fast += not read[0].located if read else 0
            assert [d.data for d in read] == located, variant
    assert fast > 300  # the fast reader took a fair share


def test_the_example_and_a_generated_registry_take_the_fast_reader(tmp_path):
    for text in (EXAMPLE.read_text(), yaml.safe_dump(registry_doc(make_flows(50)))):
        [doc] = documents.read_documents(text, "x")
        assert not doc.located


def test_a_problem_in_a_fast_read_file_still_names_its_line(write_manifest):
    flows = make_flows(3)
    flows[2]["examples"] = ["fine", 42]
    path = write_manifest(registry_doc(flows))
    assert not documents.read_documents(Path(path).read_text(), "x")[0].located
    with pytest.raises(InvalidSpec) as err:
        manifest.load([path])
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "- 42" in t)
    assert f"{path}:{line}:" in str(err.value)


@pytest.mark.parametrize("text", [
    "k: >\n", "k: |\n---\nk: x\n",             # empty block scalars: "" in libyaml
    "k: [[], ?x]\n", "k: {a: [:x]}\n",         # ? and : indicators in flow (YAML 1.1)
    "k: 0X1e3\n", "k: 1e3017\n", "k: 1e3\n",   # numbers only YAML 1.2 reads as numbers
    "k: ! null\n", "k: !!str 1\n",             # tags
    "k: 017\n", "k: 0o17\n", "k: 1:20\n", "k: yes\n", "k: [on, Off]\n", "k: 2024-01-01\n",
    "k: x\u2028y\n", "\ufeffk: x\n",           # YAML 1.1 line breaks, a byte order mark
])
def test_texts_yaml_1_1_and_1_2_read_differently_are_read_as_1_1(text):
    try:
        expected = [d.data for d in documents.read_documents(text, "t", located=True)]
    except InvalidSpec:
        return
    assert [d.data for d in documents.read_documents(text, "t")] == expected
