"""The per-registry digest: one reserved point that says "this registry is in the store as
declared", so an unchanged registry is recognised with one read instead of a scroll.

What it covers: the agent and the owner, every declared flow in declaration order (name and
content checksum, which covers description, examples, conditions and blueprint), the sync
policy, the embedder's identity and vector size, and the payload format. Any change to any of
them changes the digest, and a sync whose digest differs from the stored one (or finds none)
makes the full comparison.

Where it lives: a point of its own in the same collection (or Edge shard) as the flows, with the
id ``digest_point_id(agent, owner)`` (uuid5 in a namespace of its own, so it never collides
with a flow's id). Its payload has no ``agent_id`` and no ``name``, so no flow listing, count,
export, query or owner deletion sees it: every one of them filters on ``agent_id`` or skips
points without a flow name. It carries a fixed unit vector (collections hold one vector per
point); an agent-filtered search never returns it.

The protocol (``SyncEngine.apply``): read the digest first; if it matches, stop. Otherwise plan
in full; before the first write, delete the stored digest; after the last batch, write the new
one, only if the sync left no conflict. A process killed anywhere in between leaves no digest,
so the next sync compares in full. Points edited, added or deleted behind flowreg's back leave
the digest as it was: the deep check (which ignores the digest) finds them.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from flowreg.flow import DeclaredFlows, DeferredFlows, SyncPolicy

DIGEST_FORMAT = 1
DIGEST_NAMESPACE = uuid.UUID("0b7c9a4e-3f21-4d6a-8e15-7c2f9d4b6a10")
DIGEST_KEY = "flowreg_digest"
"""The payload key that marks a digest point (its value is the digest itself)."""


def digest_point_id(agent_id: str, owner: str) -> str:
    """The id of the digest point of ``owner``'s registry for ``agent_id``."""
    return str(uuid.uuid5(DIGEST_NAMESPACE, f"{agent_id}\x00{owner}"))


def registry_digest(registry: DeclaredFlows | DeferredFlows, policy: SyncPolicy, embedder: str,
                    dimension: int, payload_version: int) -> str:
    """``sha256:<hex>`` over everything a converged sync of ``registry`` depends on."""
    h = hashlib.sha256()
    head = (f"flowreg-digest/{DIGEST_FORMAT}\x00{payload_version}\x00{registry.agent_id}\x00"
            f"{registry.owner}\x00{embedder}\x00{dimension}\x00{int(policy.prune)}\x00"
            f"{policy.max_deletions}\x00{int(policy.allow_empty)}\x00{len(registry.names)}\n")
    h.update(head.encode())
    # In declaration order (reordering flows costs one full comparison, not a sort per sync);
    # names are NUL-free (the schema's pattern), checksums fixed-length.
    h.update("\x00".join(registry.names).encode())
    h.update("".join(registry.content_checksums).encode())
    return "sha256:" + h.hexdigest()


def digest_payload(registry: DeclaredFlows | DeferredFlows, digest: str,
                   kept: list[str]) -> dict[str, Any]:
    """The digest point's payload: the digest, whose it is, and what a matching sync reports
    without reading the flows (``kept``: undeclared flows left in place, pruning off)."""
    return {DIGEST_KEY: digest, "digest_agent": registry.agent_id,
            "digest_owner": registry.owner, "flows": len(registry.names), "kept": list(kept)}


def stored_digest(payload: Mapping[str, Any] | None) -> str | None:
    """The digest a stored digest point holds (None if absent or not a digest point)."""
    if not payload:
        return None
    value = payload.get(DIGEST_KEY)
    return value if isinstance(value, str) else None


def digest_vector(dimension: int) -> list[float]:
    """The fixed vector a digest point carries (never searched: it has no ``agent_id``)."""
    return [1.0] + [0.0] * (dimension - 1)
