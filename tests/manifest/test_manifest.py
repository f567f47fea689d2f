"""Reading manifests: every kind of bad input is a clear error naming file, line, flow, field."""

from __future__ import annotations

import copy

import pytest

from flowreg import manifest
from flowreg.errors import InvalidSpec
from tests.support.builders import EXAMPLE, make_flows, registry_doc


def problems_of(path) -> list[str]:
    with pytest.raises(InvalidSpec) as err:
        manifest.load([path])
    return [str(p) for p in err.value.problems]


def test_example_registry_is_valid_and_has_realistic_flows():
    [decl] = manifest.load([EXAMPLE])
    assert decl.registry.agent_id == "finance_bot_v1"
    assert decl.registry.owner == "default/finance-bot"
    assert len(decl.registry.flows) >= 5
    assert all(f.blueprint and f.examples for f in decl.registry.flows)
    assert all(f.checksum == f.content_checksum for f in decl.registry.flows)


def test_defaults_come_from_the_crd(write_manifest):
    [decl] = manifest.load([write_manifest(registry_doc(make_flows(1)))])
    assert decl.policy.prune is True
    assert decl.deletion_policy == "Delete"
    assert decl.store == "default"
    assert decl.interval == "10m"
    assert decl.policy.max_deletions == 25


def test_malformed_yaml_reports_the_line(write_manifest):
    path = write_manifest("apiVersion: flowreg.dev/v1alpha1\nkind: FlowRegistry\nspec:\n"
                          "  flows:\n    - name: a\n     description: [unclosed\n")
    [problem] = problems_of(path)
    assert f"{path}:6" in problem or f"{path}:5" in problem
    assert "malformed YAML" in problem


def test_duplicate_flow_names_are_rejected_with_both_places(write_manifest):
    flows = make_flows(3)
    flows[2]["name"] = flows[0]["name"]
    [problem] = problems_of(write_manifest(registry_doc(flows)))
    assert 'flow "flow_00000"' in problem
    assert "Duplicate value" in problem and "first at index 0" in problem


def test_wrong_types_name_the_flow_and_field_and_line(write_manifest):
    flows = make_flows(2)
    flows[1]["examples"] = ["ok", 42]
    path = write_manifest(registry_doc(flows))
    [problem] = problems_of(path)
    assert 'flow "flow_00001"' in problem
    assert 'field "examples[1]"' in problem
    assert "expected string, got integer" in problem
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "- 42" in text)
    assert f"{path}:{line}:" in problem


def test_oversized_fields_are_rejected(write_manifest):
    flows = make_flows(1)
    flows[0]["description"] = "x" * 5000
    [problem] = problems_of(write_manifest(registry_doc(flows)))
    assert 'field "description"' in problem and "too long: 5000 characters" in problem


def test_every_problem_is_reported_at_once(write_manifest):
    flows = make_flows(3)
    flows[0]["description"] = ""
    flows[2]["name"] = "9-bad"
    problems = problems_of(write_manifest(registry_doc(flows)))
    assert len(problems) == 2


def test_bad_checksum_names_declared_and_computed_values(write_manifest):
    flows = make_flows(2)
    flows[1]["checksum"] = "sha256:" + "0" * 64
    [problem] = problems_of(write_manifest(registry_doc(flows)))
    [decl] = manifest.load([write_manifest(registry_doc(make_flows(2)))])
    computed = decl.registry.flows[1].content_checksum
    assert 'flow "flow_00001"' in problem and 'field "checksum"' in problem
    assert "sha256:" + "0" * 64 in problem and computed in problem


def test_truncated_checksum_is_rejected_by_the_schema(write_manifest):
    flows = make_flows(1)
    flows[0]["checksum"] = "sha256:0123456789abcdef"
    [problem] = problems_of(write_manifest(registry_doc(flows)))
    assert 'field "checksum"' in problem and "does not match" in problem


def test_blueprint_with_dangling_reference_is_rejected(write_manifest):
    flows = make_flows(1)
    flows[0]["blueprint"] = {"version": 1, "steps": [
        {"id": "a", "handler": "x.a", "next": "b"},
        {"id": "b", "handler": "x.b", "branches": [{"when": "x.p", "to": "nowhere"}]},
    ]}
    [problem] = problems_of(write_manifest(registry_doc(flows)))
    assert 'field "blueprint.steps[1].branches[0].to"' in problem
    assert 'unknown step "nowhere"' in problem


def test_undeclared_fields_are_rejected_not_dropped(write_manifest):
    """A typo would be dropped by the apiserver: offline it is an error naming flow and field."""
    flows = make_flows(2)
    flows[1]["blueprint"] = {"version": 1, "steps": [{"id": "s0", "handler": "h.a",
                                                      "onerror": "s0"}]}
    flows[1]["exmaples"] = ["a typo"]
    problems = problems_of(write_manifest(registry_doc(flows)))
    assert len(problems) == 2
    assert any('flow "flow_00001", field "blueprint.steps[0].onerror": unknown field "onerror"'
               in p for p in problems)
    assert any('field "exmaples": unknown field' in p for p in problems)


def test_blueprint_duplicate_step_ids_are_rejected(write_manifest):
    flows = make_flows(1)
    flows[0]["blueprint"] = {"version": 1, "steps": [
        {"id": "a", "handler": "x.a"}, {"id": "a", "handler": "x.b"}]}
    [problem] = problems_of(write_manifest(registry_doc(flows)))
    assert "Duplicate value" in problem and "blueprint.steps[1]" in problem


def test_duplicate_yaml_keys_are_rejected(write_manifest):
    path = write_manifest("apiVersion: flowreg.dev/v1alpha1\nkind: FlowRegistry\n"
                          "metadata: {name: a}\nspec:\n  agentId: x\n  agentId: y\n")
    [problem] = problems_of(path)
    assert f"{path}:6" in problem and "duplicate key 'agentId'" in problem


def test_wrong_kind_and_missing_agent_are_rejected(write_manifest):
    doc = registry_doc(make_flows(1))
    doc["kind"] = "Other"
    assert "expected apiVersion flowreg.dev/v1alpha1 and kind FlowRegistry" in \
        problems_of(write_manifest(doc))[0]
    doc = registry_doc(make_flows(1))
    del doc["spec"]["agentId"]
    assert "'agentId' is required" in problems_of(write_manifest(doc))[0]


def test_multi_document_files_give_one_declaration_each(write_manifest):
    path = write_manifest([registry_doc(make_flows(2), name="a"),
                           registry_doc(make_flows(3), name="b", agent="other")])
    decls = manifest.load([path])
    assert [(d.name, len(d.registry.flows)) for d in decls] == [("a", 2), ("b", 3)]


def test_the_same_registry_twice_is_rejected(write_manifest):
    path = write_manifest([registry_doc(make_flows(1)), registry_doc(make_flows(2))])
    assert "declared twice" in problems_of(path)[0]


def test_refresh_checksums_keeps_comments_and_fixes_stale_values(write_manifest):
    doc = registry_doc(make_flows(2))
    doc["spec"]["flows"][1]["checksum"] = "sha256:" + "1" * 64
    text = "# keep me\n" + __import__("yaml").safe_dump(doc, sort_keys=False)
    new_text, changed = manifest.refresh_checksums(text, "x.yaml")
    assert changed == ["flow_00000", "flow_00001"]
    assert new_text.startswith("# keep me\n")
    path = write_manifest(new_text)
    [decl] = manifest.load([path])
    assert all(f.checksum == f.content_checksum for f in decl.registry.flows)
    again, changed_again = manifest.refresh_checksums(new_text, "x.yaml")
    assert changed_again == [] and again == new_text


def test_checksum_is_full_sha256_and_ignores_the_name():
    [decl] = manifest.load([EXAMPLE])
    flow = decl.registry.flows[0]
    assert len(flow.content_checksum) == len("sha256:") + 64
    renamed = type(flow)(name="other", description=flow.description, examples=flow.examples,
                         conditions=flow.conditions, blueprint=flow.blueprint)
    assert renamed.content_checksum == flow.content_checksum
    changed = type(flow)(name=flow.name, description=flow.description,
                         examples=flow.examples, conditions=(*flow.conditions, "new"),
                         blueprint=flow.blueprint)
    assert changed.content_checksum != flow.content_checksum
    assert changed.text_checksum == flow.text_checksum


@pytest.mark.parametrize("interval", ["0s", "500ms", "9s"])
def test_an_interval_under_the_crds_minimum_is_rejected(write_manifest, interval):
    path = write_manifest(registry_doc(make_flows(1), interval=interval))
    [problem] = problems_of(path)
    assert 'field "spec.interval": interval must be at least 10s' in problem
    assert f"(got {interval}, minimum 10s)" in problem and f"{path}:" in problem


def test_the_interval_minimum_is_the_crds_cel_rule():
    from flowreg import schema

    [rule] = schema.object_schema()["properties"]["spec"]["properties"]["interval"][
        "x-kubernetes-validations"]
    assert rule["rule"] == "duration(self) >= duration('10s')"
    assert schema.minimum_duration(("spec", "interval")) == 10.0


def test_an_interval_at_the_minimum_is_accepted(write_manifest):
    [decl] = manifest.load([write_manifest(registry_doc(make_flows(1), interval="10s"))])
    assert decl.interval == "10s"


def test_defaults_of_the_model_and_the_python_api_are_the_crds():
    import flowreg
    from flowreg import schema
    from flowreg.flow import SyncPolicy
    from flowreg.manifest import ALLOW_EMPTY_PATH, MAX_DELETIONS_PATH

    crd = (schema.default(MAX_DELETIONS_PATH), schema.default(ALLOW_EMPTY_PATH))
    assert (SyncPolicy().max_deletions, SyncPolicy().allow_empty) == crd
    registry = flowreg.Registry("agent_1", [])
    assert (registry.max_deletions, registry.allow_empty) == crd
    with pytest.raises(KeyError, match=r"spec\.agentId"):
        schema.default(("spec", "agentId"))


def test_an_equal_broken_blueprint_is_reported_for_every_flow_and_file_that_holds_it(
        write_manifest):
    """Equal blueprints are checked once per load; each flow holding one still gets its problem
    at its own file, line, flow and field."""
    broken = {"version": 1, "steps": [{"id": "a", "handler": "x.a", "next": "nowhere"}]}
    paths = []
    for name in ("one", "two"):
        flows = make_flows(3, prefix=name)
        flows[0]["blueprint"], flows[2]["blueprint"] = copy.deepcopy(broken), copy.deepcopy(broken)
        paths.append(write_manifest(registry_doc(flows, name=name)))
    with pytest.raises(InvalidSpec) as err:
        manifest.load(paths)
    problems = [str(p) for p in err.value.problems]
    assert len(problems) == 4
    for path, prefix in zip(paths, ("one", "two"), strict=True):
        lines = [i for i, text in enumerate(path.read_text().splitlines(), 1)
                 if "blueprint:" in text]  # where each flow's blueprint starts
        assert len(lines) == 2
        for line, flow in zip(lines, (f"{prefix}_00000", f"{prefix}_00002"), strict=True):
            assert any(p.startswith(f"{path}:{line}:") and f'flow "{flow}"' in p
                       and 'field "blueprint.steps[0].next"' in p
                       and 'unknown step "nowhere"' in p for p in problems), problems


def test_equal_blueprints_are_held_once_and_declared_checksums_are_kept(write_manifest):
    """Memory: a 50,000-flow registry of a few blueprint shapes holds each shape once."""
    blueprint = {"version": 1, "steps": [{"id": "a", "handler": "x.a"}]}
    paths = []
    for name in ("one", "two"):
        flows = make_flows(3, prefix=name)
        for flow in flows:
            flow["blueprint"] = copy.deepcopy(blueprint)
        flows[2]["blueprint"] = {"steps": [{"handler": "x.a", "id": "a"}], "version": 1}
        [decl] = manifest.load([write_manifest(registry_doc(flows, name=name))])
        for flow, raw in zip(decl.registry.flows, flows, strict=True):
            raw["checksum"] = flow.content_checksum
        paths.append(write_manifest(registry_doc(flows, name=name)))
    decls = manifest.load(paths)
    flows = [f for d in decls for f in d.registry.flows]
    assert all(f.blueprint == blueprint for f in flows)
    assert len({id(f.blueprint) for f in flows}) == 2  # key order differs in the third flows
    assert all(f.content_checksum is f.checksum for f in flows)


def test_checksums_of_known_flows_are_what_earlier_releases_wrote(write_manifest):
    """Existing stores hold these checksums: reading the same manifest must give them again
    (a changed value would rewrite every flow and break every no-op)."""
    [decl] = manifest.load([EXAMPLE])
    known = {f.name: f.content_checksum for f in decl.registry.flows}
    assert known["check_balance"] == (
        "sha256:c41e34abe099383ece5b77763593acf28ef165faa3a883f7b1ba2b76f429fd97")
    assert known["exchange_rate"] == (
        "sha256:f2cbecd4597db810e8c2a04efc1b0dc98d1b15d75bf9e012ccfe5601edcad9f8")
    [decl] = manifest.load([write_manifest(registry_doc(make_flows(2)))])  # no checksum given
    assert [f.content_checksum for f in decl.registry.flows] == [
        "sha256:b5d919dc97cb382c42175b1f00f7ee9bfa75763f42c6def18a7508c2f7bf96bf",
        "sha256:2038ddf1365d900a25b94a3ec07965ac611172c3ba9faaa4f240838bdccbcb34"]


def test_reading_runs_no_garbage_collection_and_leaves_the_collector_as_it_was(write_manifest):
    """Reading makes many acyclic objects; collections while reading found nothing and cost
    about a fifth of reading 50,000 flows."""
    import gc

    path = write_manifest(registry_doc(make_flows(300)))
    started: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(count)
    try:
        assert gc.isenabled()
        [decl] = manifest.load([path])
        assert gc.isenabled()
        gc.disable()
        manifest.load([path])
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.callbacks.remove(count)
    assert len(decl.registry.flows) == 300
    # at most the young generation once, when the collector resumes: what reading made
    assert len(started) <= 1 and 2 not in started, started
