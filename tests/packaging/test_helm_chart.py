"""The Helm chart, checked with a real helm binary: lint, render, values schema, Pod Security
"restricted", least-privilege RBAC, no secrets in manifests, the CRD identical to crds/."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.builders import REPO
from tests.support.controlplane import find_testbin
from tests.support.finalizer_policy import MAP_API

CHART = REPO / "helm" / "flowreg"
HA_VALUES = REPO / "tests" / "data" / "values-ha.yaml"


@pytest.fixture(scope="module")
def helm() -> Path:
    path = find_testbin() / "helm"
    if not os.access(path, os.X_OK):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"helm missing at {path}; .ci/run must build it (hack/testbin.sh)")
        pytest.skip("helm not built: run `bash hack/testbin.sh`")
    return path


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)


def render(helm: Path, *args: str) -> list[dict[str, Any]]:
    result = run_helm(helm, "template", "rel", str(CHART), "-n", "flowreg-system", *args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("values", [None, HA_VALUES], ids=["defaults", "ha"])
def test_lint_passes(helm, values):
    args = ["lint", str(CHART), "--strict"] + (["-f", str(values)] if values else [])
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_defaults_render_a_cluster_wide_operator(helm):
    docs = render(helm)
    assert {d["kind"] for d in docs} == {"ServiceAccount", "ConfigMap", "ClusterRole",
                                        "ClusterRoleBinding", "Service", "Deployment"}
    [deployment] = of_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args and not any(a.startswith("--peering") for a in args)
    [cm] = of_kind(docs, "ConfigMap")
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["stores"]["default"]["location"] == "http://qdrant.qdrant.svc:6333"


def test_ha_values_render_peering_roles_per_namespace_and_extras(helm):
    docs = render(helm, "-f", str(HA_VALUES))
    [deployment] = of_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert "--peering=flowreg-ha" in container["args"]
    assert {"--namespace=team-a", "--namespace=team-b"} <= set(container["args"])
    assert {r["metadata"]["namespace"] for r in of_kind(docs, "Role")} == {"team-a", "team-b"}
    assert {p["metadata"]["namespace"] for p in of_kind(docs, "KopfPeering")} == \
        {"team-a", "team-b"}
    assert len(of_kind(docs, "PodDisruptionBudget")) == 1
    assert len(of_kind(docs, "ServiceMonitor")) == 1
    assert len(of_kind(docs, "NetworkPolicy")) == 1
    [cm] = of_kind(docs, "ConfigMap")
    config = yaml.safe_load(cm["data"]["config.yaml"])
    store = config["stores"]["default"]
    env = {e["name"]: e for e in container["env"]}
    assert env[store["apiKeyEnv"]]["valueFrom"]["secretKeyRef"] == {
        "name": "qdrant-credentials", "key": "api-key"}
    assert env[store["embedder"]["apiKeyEnv"]]["valueFrom"]["secretKeyRef"] == {
        "name": "embedding-credentials", "key": "token"}
    assert store["embedder"] == {**store["embedder"], "kind": "openai", "model": "bge-small-en"}


@pytest.mark.parametrize(("override", "message"), [
    ("stores.default.apiKey=sk-inline-secret", "apiKey"),
    ("replicas=two", "replicas"),
    ("stores.default.embedder.kind=magic", "kind"),
    ("unknownKey=1", "unknownKey"),
])
def test_values_that_violate_the_schema_are_rejected(helm, override, message):
    flag = "--set-string" if override.startswith("stores.default.apiKey") else "--set"
    result = run_helm(helm, "template", "rel", str(CHART), flag, override)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


def test_two_replicas_without_ha_fail_with_a_clear_message(helm):
    result = run_helm(helm, "template", "rel", str(CHART), "--set", "replicas=2")
    assert result.returncode != 0
    assert "replicas > 1 needs ha.enabled: true" in result.stderr


@pytest.mark.parametrize("values", [None, HA_VALUES], ids=["defaults", "ha"])
def test_deployment_meets_the_restricted_pod_security_profile(helm, values):
    docs = render(helm, *(["-f", str(values)] if values else []))
    [deployment] = of_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    assert all("hostPath" not in v for v in pod["volumes"])
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert sc.get("privileged") is not True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any(p.get("hostPort") for p in container.get("ports", []))
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/etc/flowreg", "/tmp"}
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        # The peering identity comes from the pod, not from a passwd entry UID 10001 lacks.
        env = {e["name"]: e for e in container["env"]}
        assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


EXPECTED_RULES = {
    ("flowreg.dev", "flowregistries"): {"get", "list", "watch", "patch", "update"},
    ("flowreg.dev", "flowregistries/status"): {"get", "patch", "update"},
    ("flowreg.dev", "flowregistries/finalizers"): {"update"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert "*" not in rule["apiGroups"] and rule.get("resourceNames") != ["*"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_rbac_is_least_privilege(helm):
    [cluster_role] = of_kind(render(helm), "ClusterRole")
    assert rules_of(cluster_role) == EXPECTED_RULES
    ha = render(helm, "-f", str(HA_VALUES))
    assert not of_kind(ha, "ClusterRole")
    for role in of_kind(ha, "Role"):
        assert rules_of(role) == {**EXPECTED_RULES,
                                  ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"}}
    everything = yaml.safe_dump_all(render(helm) + ha)
    assert "secrets" not in everything.replace("secretKeyRef", "")


def test_no_rendered_manifest_holds_a_secret(helm):
    docs = render(helm, "-f", str(HA_VALUES))
    assert not of_kind(docs, "Secret")
    text = yaml.safe_dump_all(docs)
    assert "apiKey:" not in text  # only apiKeyEnv (the name of a variable)
    [deployment] = of_kind(docs, "Deployment")
    for env in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        assert "value" not in env or not env["name"].endswith("_API_KEY")


def test_chart_crd_is_byte_identical_to_the_source_of_truth():
    assert (CHART / "crds" / "flowregistry.yaml").read_bytes() == \
        (REPO / "crds" / "flowregistry.yaml").read_bytes(), "run hack/sync-crd.sh"


def test_cluster_settings_reach_the_operator_config_and_are_checked(helm):
    from flowreg.controller.config import parse_config

    docs = render(helm, "--set", "stores.default.cluster.shards=3",
                  "--set", "stores.default.cluster.replicationFactor=2",
                  "--set-string", "stores.default.cluster.readConsistency=majority",
                  "--set", "stores.default.cluster.globalIndex=true")
    [cm] = of_kind(docs, "ConfigMap")
    store = parse_config(yaml.safe_load(cm["data"]["config.yaml"])).store("default")
    assert store.cluster is not None
    assert store.cluster.to_dict() == {"shards": 3, "replicationFactor": 2,
                                       "readConsistency": "majority", "globalIndex": True}
    for bad, name in (("shards=0", "shards"), ("globalIndex=yes", "globalIndex")):
        result = run_helm(helm, "template", "rel", str(CHART),
                          "--set-string" if name == "globalIndex" else "--set",
                          f"stores.default.cluster.{bad}")
        assert result.returncode != 0 and name in result.stderr


def finalizer_policy(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    policies = of_kind(docs, "MutatingAdmissionPolicy")
    bindings = of_kind(docs, "MutatingAdmissionPolicyBinding")
    assert len(policies) == len(bindings) <= 1
    return (policies[0], bindings[0]) if policies else None


def test_the_apiserver_adds_the_finalizer_when_enabled_where_it_serves_admission_policies(helm):
    from flowreg.controller.handlers import FINALIZER

    enabled = ("--set", "finalizerPolicy.enabled=true")
    assert finalizer_policy(render(helm, "--api-versions", MAP_API)) is None, "opt-in"
    assert finalizer_policy(render(helm, *enabled)) is None, "rendered without the API"
    found = finalizer_policy(render(helm, "--api-versions", MAP_API, *enabled))
    assert found is not None
    policy, binding = found
    [mutation] = policy["spec"]["mutations"]
    assert f'finalizers: ["{FINALIZER}"]' in mutation["applyConfiguration"]["expression"]
    assert policy["spec"]["failurePolicy"] == "Ignore"
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"], rule["operations"]) == (
        ["flowreg.dev"], ["flowregistries"], ["CREATE"])
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert "matchResources" not in binding["spec"], "all namespaces are watched by default"


def test_the_finalizer_policy_binds_only_the_watched_namespaces(helm):
    found = finalizer_policy(render(helm, "--api-versions", MAP_API, "--set",
                                    "finalizerPolicy.enabled=true", "--set",
                                    "watch.allNamespaces=false", "--set", "watch.namespaces={a,b}"))
    assert found is not None
    [expression] = found[1]["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert expression == {"key": "kubernetes.io/metadata.name", "operator": "In",
                          "values": ["a", "b"]}
