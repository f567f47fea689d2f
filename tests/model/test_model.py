"""The model: point ids, checksums, blueprints and their saved state."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowreg import blueprint
from flowreg.checksum import canonical_json, sha256_of
from flowreg.flow import POINT_NAMESPACE, Flow, point_id

BLUEPRINT = {"version": 1, "steps": [
    {"id": "ask", "handler": "dialog.ask", "next": "pay"},
    {"id": "pay", "handler": "payments.execute",
     "branches": [{"when": "payments.over_limit", "to": "refuse"}], "onError": "refuse"},
    {"id": "refuse", "handler": "dialog.refuse"},
]}


@pytest.mark.parametrize(("agent", "name"), [("a", "b"), ("finance_bot_v1", "refund"),
                                             ("ü-agent", "名前")])
def test_point_id_is_uuid5_of_agent_and_name(agent, name):
    assert point_id(agent, name) == str(uuid.uuid5(POINT_NAMESPACE, f"{agent}\x00{name}"))


def test_canonical_json_ignores_key_order_and_keeps_unicode():
    assert canonical_json({"b": 1, "a": ["é", {"d": 2, "c": 3}]}) == \
        '{"a":["é",{"c":3,"d":2}],"b":1}'
    assert sha256_of({"x": 1, "y": 2}) == sha256_of({"y": 2, "x": 1})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
    | st.dictionaries(st.integers(-(2**70), 2**70), inner, max_size=4),
    max_leaves=12)


@given(JSON)
def test_canonical_json_is_exactly_the_standard_librarys_sorted_compact_form(value):
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        expected.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates are not text
        return
    assert canonical_json(value) == expected


FLOWS = st.builds(Flow, name=st.text(max_size=5), description=st.text(max_size=20),
                  examples=st.lists(st.text(max_size=8), max_size=3).map(tuple),
                  conditions=st.lists(st.text(max_size=8), max_size=2).map(tuple),
                  blueprint=st.none() | st.dictionaries(st.text(max_size=4), JSON, max_size=3))


@given(FLOWS)
def test_content_checksum_is_the_sha256_of_the_canonical_content(flow):
    try:
        expected = sha256_of(flow.content())
    except UnicodeEncodeError:  # lone surrogates are not text
        return
    assert flow.content_checksum == expected


def test_content_checksum_is_stable_across_releases():
    """Stored points carry these checksums: a changed encoding would re-write every flow."""
    flow = Flow("f", "desc", ("ex",), ("cond",),
                {"version": 1, "steps": [{"id": "a", "handler": "h.x"}]})
    assert flow.content_checksum == (
        "sha256:fdf3cd2f3e9af2bd0a25413a3c8c1adaff866d02dbbf4e3674ae08ad1153bc2a")


def test_every_defining_field_changes_the_checksum():
    base = Flow("f", "desc", ("ex",), ("cond",), BLUEPRINT)
    variants = [Flow("f", "desc2", ("ex",), ("cond",), BLUEPRINT),
                Flow("f", "desc", ("ex", "ex2"), ("cond",), BLUEPRINT),
                Flow("f", "desc", ("ex",), (), BLUEPRINT),
                Flow("f", "desc", ("ex",), ("cond",), None)]
    assert len({base.content_checksum, *(v.content_checksum for v in variants)}) == 5


def test_a_valid_blueprint_has_no_problems():
    assert blueprint.check(BLUEPRINT) == []


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"entry": "nowhere"}, "entry", 'refers to unknown step "nowhere"'),
    ({"version": 2}, "version", "unsupported blueprint version 2"),
    ({"steps": [{"id": "a", "handler": "h.a"}, {"id": "b", "handler": "h.b"}]}, "steps[1]",
     'step "b" is unreachable from "a"'),
    ({"steps": [{"id": "end", "handler": "h.a"}]}, "steps[0].id", '"end" is reserved'),
])
def test_blueprint_problems_name_the_field(change, field, message):
    [problem] = blueprint.check({**BLUEPRINT, **change})
    assert (problem.field, problem.message) == (field, message)


_STEP_IDS = st.sampled_from(["a", "b", "c", "d", "end", ""])
_STEPS = st.lists(st.fixed_dictionaries(
    {"id": _STEP_IDS, "handler": st.just("h.x")},
    optional={"next": _STEP_IDS | st.none(), "onError": _STEP_IDS | st.none(),
              "branches": st.lists(st.fixed_dictionaries({"when": st.just("p.q"),
                                                          "to": _STEP_IDS}), max_size=2)}),
    max_size=4)
BLUEPRINTS = st.fixed_dictionaries(
    {"version": st.sampled_from([1, 1, 1, 2]), "steps": _STEPS},
    optional={"entry": _STEP_IDS | st.none()})


@settings(deadline=None)  # a law, not a timing: a busy machine must not fail it
@given(BLUEPRINTS)
def test_the_blueprint_checks_fast_path_agrees_with_the_full_check(bp):
    """``check`` skips the full check for a sound blueprint; it must never hide a problem."""
    assert blueprint.check(bp) == blueprint.problems_of(bp)


def test_a_reports_plain_data_is_what_asdict_gives_and_shares_nothing():
    """``SyncReport.to_dict`` copies name lists without ``asdict``'s per-item walk."""
    from dataclasses import asdict

    from flowreg.report import SyncReport

    report = SyncReport("a", "ns/r", created=["x"], skipped=[f"f{i}" for i in range(60)],
                        renamed=[{"from": "a", "to": "b"}],
                        conflicts=[{"flow": "c", "owner": None}],
                        resumed={"run_id": "r", "done": 1}, collection={"shards": [1, {"n": 2}]},
                        warnings=["w"])
    data = report.to_dict()
    assert data == {**asdict(report), "changes": 2}
    data["skipped"].append("more")
    data["renamed"][0]["to"] = "c"
    data["collection"]["shards"][1]["n"] = 3
    assert len(report.skipped) == 60 and report.renamed[0]["to"] == "b"
    assert report.collection == {"shards": [1, {"n": 2}]}
    cut = report.to_dict(max_names=50)
    assert (len(cut["skipped"]), cut["skippedCount"]) == (50, 60)
