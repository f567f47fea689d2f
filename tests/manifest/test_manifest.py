"""Reading manifests: every kind of bad input is a clear error naming file, line, flow, field."""

from __future__ import annotations

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
