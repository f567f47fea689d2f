"""Sync an agent's flows from Python at start-up, then see what a user's words select.

    python examples/python_api.py            # into the embedded store .flowreg/qdrant

Then move to GitOps without re-embedding: ``python examples/python_api.py --manifest`` prints
the same registry as a FlowRegistry manifest; ``flowreg apply -f`` of it writes nothing.
"""

from __future__ import annotations

import sys

import flowreg

REGISTRY = flowreg.Registry(
    agent_id="support_bot_v1",
    name="support-bot",
    flows=[
        flowreg.Flow(
            name="reset_password",
            description="Help the user reset a forgotten password by email.",
            examples=("I forgot my password", "I can't log in"),
            conditions=("user has a verified email",),
            blueprint={"version": 1, "steps": [
                {"id": "send-link", "handler": "auth.send_reset_link", "next": "confirm"},
                {"id": "confirm", "handler": "dialog.say_link_sent"}]},
        ),
        flowreg.Flow(
            name="cancel_order",
            description="Cancel an order that has not shipped yet.",
            examples=("Cancel my order", "I don't want it anymore"),
        ),
    ],
)


def main() -> None:
    if "--manifest" in sys.argv:
        sys.stdout.write(REGISTRY.to_yaml())
        return
    report = flowreg.sync_registry_blocking(REGISTRY, store=".flowreg/qdrant")
    print(report.summary())
    import asyncio

    hits = asyncio.run(flowreg.query_flows("support_bot_v1", "my login does not work",
                                     store=".flowreg/qdrant"))
    for hit in hits:
        print(f"{hit.score:.3f}  {hit.payload['name']}")


if __name__ == "__main__":
    main()
