"""flowreg: keep an agent's procedural memory in Qdrant in step with declared FlowRegistries.

Layers (enforced by import-linter, see pyproject.toml):
shells (``cli``, ``controller``) -> engine (``sync``) -> parts (``plan``, ``store``, ``embed``,
``manifest``, ``history``) -> ``blueprint``/``schema`` -> ``flow`` -> ``checksum``/``errors``.
"""

__version__ = "0.1.0"
