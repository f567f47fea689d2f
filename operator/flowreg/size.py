"""How large a FlowRegistry a Kubernetes cluster stores, and the warning for larger ones.

etcd refuses a request over 1.5 MiB (its default ``--max-request-bytes``), and the object it
stores is larger than the manifest: ``kubectl apply --server-side`` adds managedFields naming
every field of every flow. Measured on a default kube-apiserver + etcd (``bench/size_limit.py``):
1,406 realistic flows (a 15-word description, 3-5 examples, 1-2 conditions, a three-step
blueprint and a declared checksum: 788 bytes each as JSON, 1,082 KiB in all) were stored, 1,437
were refused. ``CLUSTER_BUDGET`` leaves about a tenth of headroom below that.

The CRD cannot bound a registry's bytes (its ``maxItems`` admits many small flows, or few
large ones), so ``flowreg validate``, ``plan`` and ``apply`` warn, before anyone applies a
manifest to a cluster, when its JSON is over the budget; the CLI's embedded and server stores
have no such limit. Split such a registry into several FlowRegistries for the same agent: each
owns its flows, and together they declare the agent's whole memory.
"""

from __future__ import annotations

from typing import Any

import orjson

from flowreg.flow import DeclaredFlows, Flow

CLUSTER_BUDGET = 1_000_000
"""Bytes of compact JSON a FlowRegistry may have and still be stored by a default cluster."""


def manifest_bytes(registry: DeclaredFlows, name: str, namespace: str) -> int:
    """The size of the registry's manifest as compact JSON (what the apiserver receives)."""
    doc = {"apiVersion": "flowreg.dev/v1alpha1", "kind": "FlowRegistry",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"agentId": registry.agent_id,
                    "flows": [_manifest_fields(f) for f in registry.flows]}}
    return len(orjson.dumps(doc))


def _manifest_fields(flow: Flow) -> dict[str, Any]:
    """The fields ``Flow.to_manifest`` writes, without copying them (the same JSON size)."""
    out: dict[str, Any] = {"name": flow.name, "description": flow.description}
    if flow.examples:
        out["examples"] = flow.examples
    if flow.conditions:
        out["conditions"] = flow.conditions
    if flow.blueprint is not None:
        out["blueprint"] = flow.blueprint
    out["checksum"] = flow.content_checksum
    return out



def cluster_size_warning(registry: DeclaredFlows, name: str, namespace: str,
                         source: str = "") -> str | None:
    """A warning naming size, budget and the remedy if the registry is too large for a
    cluster; ``None`` if it fits."""
    size = manifest_bytes(registry, name, namespace)
    if size <= CLUSTER_BUDGET:
        return None
    flows = len(registry.flows)
    parts = -(-size // CLUSTER_BUDGET)
    where = f"{source}: " if source else ""
    return (f"{where}FlowRegistry {namespace}/{name} is {size:,} bytes as JSON ({flows} flows); "
            f"a default Kubernetes cluster stores at most about {CLUSTER_BUDGET:,} "
            f"(etcd's 1.5 MiB request limit, with managedFields). Split it into {parts} or more "
            f"FlowRegistries with the same agentId (about {flows // parts} flows each) to use it "
            "with the operator; the CLI's stores have no such limit")
