"""The selection lint's core: confusable examples, near-duplicate flows, thin flows."""

from __future__ import annotations

import pytest

from flowreg.flow import DeclaredFlows, Flow
from flowreg.lint import LintOptions, example_texts, lint


def registry(*flows: Flow) -> DeclaredFlows:
    return DeclaredFlows("agent", "default/bot", flows)


A = Flow("pay", "Pay a bill", ("pay the gas bill", "send money"))
B = Flow("refund", "Refund a charge", ("refund me", "charged twice"))
C = Flow("rate", "Exchange rate", ("euro to dollar",))


def test_an_example_nearer_another_flow_is_confusable_with_both_scores():
    # axes: 0 = pay, 1 = refund, 2 = rate; "send money" (pay's 2nd example) points at refund
    flows = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    examples = [[1, 0, 0], [0.1, 0.9, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]
    report = lint(registry(A, B, C), flows, examples, LintOptions(margin=0.0))
    [c] = report.confusable
    assert (c.flow, c.other, c.example, c.example_index) == ("pay", "refund", "send money", 1)
    assert c.other_score == pytest.approx(0.9 / (0.81 + 0.01) ** 0.5, abs=1e-5)
    assert c.own_score == pytest.approx(0.1 / (0.81 + 0.01) ** 0.5, abs=1e-5)
    assert report.counts == {"confusable": 1, "duplicate": 0, "thin": 1}
    assert [(p.flows, p.kind, p.examples) for p in report.pairs] == [
        (("pay", "refund"), "confusable", 1)]


def test_the_margin_flags_examples_another_flow_comes_close_to():
    flows = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    examples = [[1, 0, 0], [0.6, 0.5, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert lint(registry(A, B, C), flows, examples, LintOptions(margin=0.0)).confusable == []
    [c] = lint(registry(A, B, C), flows, examples, LintOptions(margin=0.15)).confusable
    assert c.example == "send money" and c.gap < 0


def test_confusable_examples_come_worst_first_and_bounded():
    flows = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    examples = [[0.2, 1, 0], [0.4, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]
    report = lint(registry(A, B, C), flows, examples, LintOptions(margin=0.0, limit=1))
    assert report.counts["confusable"] == 2
    assert [c.example for c in report.confusable] == ["pay the gas bill"]


def test_near_duplicate_flows_by_cosine_of_their_point_vectors():
    flows = [[1, 0, 0], [0.95, 0.05, 0], [0, 0, 1]]
    report = lint(registry(A, B, C), flows, None, LintOptions(duplicate=0.9))
    [d] = report.duplicates
    assert (d.flow, d.other) == ("pay", "refund") and d.score > 0.99
    assert not report.examples_checked and report.counts["confusable"] == 0
    assert lint(registry(A, B, C), flows, None, LintOptions(duplicate=0.9999)).duplicates == []


def test_thin_flows_are_those_below_the_minimum():
    report = lint(registry(A, B, C), [[1, 0], [0, 1], [1, 1]], None,
                  LintOptions(min_examples=2))
    assert [(t.flow, t.examples) for t in report.thin] == [("rate", 1)]
    assert lint(registry(A, B, C), [[1, 0], [0, 1], [1, 1]], None,
                LintOptions(min_examples=1)).thin == []


def test_vectors_must_match_the_registry():
    with pytest.raises(ValueError, match="2 flow vectors for 3 flows"):
        lint(registry(A, B, C), [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="1 example vectors for 5 examples"):
        lint(registry(A, B, C), [[1, 0], [0, 1], [1, 1]], [[1, 0]])


def test_flows_without_examples_have_nothing_confusable():
    bare = registry(Flow("a", "x"), Flow("b", "y"))
    report = lint(bare, [[1, 0], [0, 1]], [], LintOptions(min_examples=0))
    assert report.examples_checked and report.counts == {"confusable": 0, "duplicate": 0,
                                                         "thin": 0}


def test_example_texts_follow_the_registry_order():
    assert example_texts(registry(A, B, C)) == [*A.examples, *B.examples, *C.examples]


def test_large_registries_are_scored_in_blocks():
    import numpy as np

    rng = np.random.default_rng(1)
    n = 5000
    flows = tuple(Flow(f"f{i}", f"d{i}", ("x",)) for i in range(n))
    fv = rng.normal(size=(n, 16))
    ev = fv + rng.normal(scale=0.01, size=(n, 16))
    ev[4321] = fv[17]  # the example of f4321 is f17's vector
    report = lint(DeclaredFlows("a", "o", flows), fv, ev, LintOptions(margin=0.0, min_examples=1))
    assert [(c.flow, c.other) for c in report.confusable] == [("f4321", "f17")]


def test_a_registry_of_near_identical_flows_keeps_only_the_closest_pairs():
    import numpy as np

    n = 2000  # 1,999,000 pairs over the threshold: counted, and only the closest 5 kept
    flows = tuple(Flow(f"f{i}", "same", ("x",)) for i in range(n))
    fv = np.ones((n, 8)) + np.random.default_rng(2).normal(scale=1e-3, size=(n, 8))
    report = lint(DeclaredFlows("a", "o", flows), fv, None, LintOptions(limit=5, min_examples=0))
    assert report.counts["duplicate"] == n * (n - 1) // 2
    assert len(report.duplicates) == 5 and len(report.pairs) == 5
    unit = (fv / np.linalg.norm(fv, axis=1, keepdims=True)).astype(np.float32)
    scores = unit @ unit.T
    scores[np.tril_indices(n)] = -1
    best = np.sort(scores, axis=None)[::-1][:5]
    assert [d.score for d in report.duplicates] == pytest.approx(best.tolist(), abs=1e-6)
