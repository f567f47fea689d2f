"""``flowreg lint``: text and JSON output, file:line of examples, --fail-on, bad input."""

from __future__ import annotations

import json

import pytest

from flowreg import lint
from flowreg.cli import lint as cli_lint
from flowreg.cli.main import main
from flowreg.errors import ExitCode
from tests.support.builders import registry_doc

CLASH = [
    {"name": "pay_bill",
     "description": "Pay a utility bill from the current account to a saved payee once confirmed",
     "examples": ["pay the electricity bill for this month to the energy company",
                  "card refund"]},
    {"name": "refund", "description": "Card refund",
     "examples": ["card refund", "a card refund please"]},
    {"name": "rates", "description": "Quote an exchange rate", "examples": ["euro to dollar"]},
]

def test_defaults_of_the_command_line_are_the_cores():
    assert (cli_lint.DEFAULT_DUPLICATE, cli_lint.DEFAULT_MARGIN, cli_lint.DEFAULT_MIN_EXAMPLES,
            cli_lint.DEFAULT_LIMIT) == (lint.DEFAULT_DUPLICATE, lint.DEFAULT_MARGIN,
                                        lint.DEFAULT_MIN_EXAMPLES, lint.DEFAULT_LIMIT)


def test_json_names_the_example_its_line_and_both_flows(capsys, write_manifest):
    path = write_manifest(registry_doc(CLASH))
    assert main(["lint", "-f", str(path), "-o", "json", "--margin", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["embedder"] == "hashing-v1/384"
    [reg] = out["registries"]
    [c] = reg["confusable"]
    assert (c["flow"], c["other"]) == ("pay_bill", "refund")
    assert c["example"] == "card refund"
    assert c["otherScore"] > c["ownScore"]
    lines = path.read_text().splitlines()
    assert lines[c["line"] - 1].strip() == "- card refund"
    assert c["source"] == str(path)
    assert reg["thin"] == [{"flow": "rates", "examples": 1}]
    assert reg["pairs"][0]["flows"] == ["pay_bill", "refund"]


def test_flow_style_examples_are_located_too(capsys, write_manifest):
    text = "\n".join([
        "apiVersion: flowreg.dev/v1alpha1", "kind: FlowRegistry",
        "metadata: {name: bot}", "spec:", "  agentId: a", "  flows:",
        "  - {name: refund, description: Card refund, "
        "examples: [card refund, a card refund please]}",
        "  - name: pay_bill",
        "    description: Pay a utility bill from the current account to a saved payee",
        '    examples: ["pay the electricity bill for this month to the energy company",',
        '               "card refund"]',
        ""])
    path = write_manifest(text)
    assert main(["lint", "-f", str(path), "-o", "json", "--margin", "0"]) == 0
    [c] = json.loads(capsys.readouterr().out)["registries"][0]["confusable"]
    assert c["line"] == 11  # over two lines: the scan is unsure, the located reader knows


def test_fail_on_sets_exit_8_only_for_the_kinds_named(capsys, write_manifest):
    path = str(write_manifest(registry_doc(CLASH)))
    assert main(["lint", "-f", path, "--margin", "0", "--fail-on", "duplicate"]) == 0
    assert main(["lint", "-f", path, "--margin", "0", "--fail-on", "duplicate,confusable"]) \
        == ExitCode.LINT_FINDINGS == 8
    assert main(["lint", "-f", path, "--fail-on", "duplicate", "--fail-on", "thin"]) == 8
    captured = capsys.readouterr()
    assert "LintFindings: duplicate, thin found in default/bot" in captured.err
    assert "confusable: example 'card refund' of pay_bill " \
           "selects refund" in captured.out
    assert f"{path}:" in captured.out


def test_unknown_fail_on_kind_and_bad_thresholds_are_usage_problems(capsys, write_manifest):
    path = str(write_manifest(registry_doc(CLASH)))
    assert main(["lint", "-f", path, "--fail-on", "typo"]) == ExitCode.INVALID_INPUT
    assert "unknown kind 'typo'" in capsys.readouterr().err
    assert main(["lint", "-f", path, "--margin", "-1"]) == ExitCode.INVALID_INPUT
    assert 'field "--margin"' in capsys.readouterr().err


def test_invalid_manifests_fail_like_validate(capsys, write_manifest):
    doc = registry_doc([{"name": "x", "description": "d", "examples": "not a list"}])
    path = write_manifest(doc)
    assert main(["lint", "-f", str(path)]) == ExitCode.INVALID_INPUT
    err = capsys.readouterr().err
    assert f"{path}:" in err and 'flow "x"' in err and "examples" in err


@pytest.mark.parametrize("embedder", ["wordllama"])
def test_the_example_registry_with_a_semantic_model(capsys, embedder):
    pytest.importorskip("wordllama")
    from tests.support.builders import EXAMPLE

    assert main(["lint", "-f", str(EXAMPLE), "--embedder", embedder, "-o", "json"]) == 0
    [reg] = json.loads(capsys.readouterr().out)["registries"]
    pairs = {tuple(p["flows"]) for p in reg["pairs"]}
    assert ("process_payment", "refund") in pairs and reg["duplicates"] == []


def test_an_openai_endpoint_embeds_flows_and_examples_in_few_calls(capsys, monkeypatch):
    from tests.support.builders import EXAMPLE
    from tests.support.embedding_server import EmbeddingServer

    monkeypatch.setenv("LINT_TEST_KEY", "k")
    with EmbeddingServer(dimension=16) as server:
        assert main(["lint", "-f", str(EXAMPLE), "-o", "json", "--embedder", "openai",
                     "--embedding-url", server.base_url, "--embedding-model", "m",
                     "--embedding-dimension", "16",
                     "--embedding-api-key-env", "LINT_TEST_KEY"]) == 0
        texts, requests = server.texts, server.requests
    out = json.loads(capsys.readouterr().out)
    assert out["embedder"] == "openai:m/16"
    assert texts == 6 + 17  # each flow's text and each example, once
    assert requests <= 2  # flows, then examples (the endpoint's own batches aside)


def test_lint_is_offline_and_help_loads_no_numpy():
    from tests.support.builders import EXAMPLE
    from tests.support.imports import HEAVY, imported_by

    loaded = imported_by("lint", "-f", str(EXAMPLE))
    assert "numpy" in loaded and not loaded & set(HEAVY), loaded & set(HEAVY)
    assert "numpy" not in imported_by("--help")


def test_validate_reads_the_selection_lint_mode_from_the_crd(capsys, write_manifest):
    ok = write_manifest(registry_doc(CLASH, selectionLint="Block"))
    assert main(["validate", "-f", str(ok)]) == 0
    # YAML 1.1 (kubectl's, and ours) reads a plain Off as false: not a mode
    plain_off = write_manifest("apiVersion: flowreg.dev/v1alpha1\nkind: FlowRegistry\n"
                               "metadata: {name: bot}\nspec:\n  agentId: a\n"
                               "  selectionLint: Off\n  flows: []\n")
    assert main(["validate", "-f", str(plain_off)]) == ExitCode.INVALID_INPUT
    err = capsys.readouterr().err
    assert f"{plain_off}:6" in err and "selectionLint" in err
