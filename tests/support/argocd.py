"""The Argo CD health check (docs/argocd-health.lua), run by a real Lua interpreter."""

from __future__ import annotations

from typing import Any

from lupa import LuaRuntime

from tests.support.builders import REPO

SCRIPT = (REPO / "docs" / "argocd-health.lua").read_text()


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = LuaRuntime(unpack_returned_tuples=True)

    def table(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: table(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([table(v) for v in value])
        return value

    lua.globals().obj = table(obj)
    result = lua.execute(SCRIPT)
    return result["status"], result["message"]
