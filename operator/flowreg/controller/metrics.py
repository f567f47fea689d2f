"""Prometheus metrics of the operator (a no-op when prometheus-client is not installed)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from flowreg.report import SyncReport
from flowreg.store import StoreStats

try:
    import prometheus_client as prom
except ImportError:  # pragma: no cover - the operator extra installs it
    prom = None


class Metrics:
    """``flowreg_syncs_total{result}``, ``flowreg_store_operations_total{operation}``,
    ``flowreg_embedded_texts_total``, ``flowreg_sync_duration_seconds``, ``flowreg_standby``.

    One instance per registry of collectors; pass ``registry`` to keep tests isolated.
    """

    def __init__(self, registry: Any = None) -> None:
        self.standing_by = False
        """Whether this replica stands by (then it starts no periodic re-sync)."""
        self.enabled = prom is not None
        if not self.enabled:
            return
        kw: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self.syncs = prom.Counter("flowreg_syncs", "Syncs of FlowRegistries, by result",
                                  ["result"], **kw)
        self.ops = prom.Counter("flowreg_store_operations",
                                "Calls made to Qdrant, by operation", ["operation"], **kw)
        self.texts = prom.Counter("flowreg_embedded_texts", "Texts sent to the embedder", **kw)
        self.changes = prom.Counter("flowreg_flow_changes", "Flows changed, by action",
                                    ["action"], **kw)
        self.duration = prom.Histogram("flowreg_sync_duration_seconds",
                                       "Wall time of one sync", **kw)
        self.standby = prom.Gauge("flowreg_standby",
                                  "1 while this replica stands by for another (HA peering)",
                                  **kw)

    @classmethod
    def default(cls) -> Metrics:
        """The process-wide instance on prometheus-client's default registry."""
        global _default
        if _default is None:
            _default = cls()
        return _default

    def set_standby(self, standing_by: bool) -> None:
        self.standing_by = standing_by
        if self.enabled:
            self.standby.set(1 if standing_by else 0)

    def sync_finished(self, result: str, seconds: float, report: SyncReport | None) -> None:
        if not self.enabled:
            return
        self.syncs.labels(result=result).inc()
        self.duration.observe(seconds)
        if report is not None:
            self.texts.inc(report.embedded_texts)
            for action, names in (("create", report.created), ("update", report.updated),
                                  ("delete", report.deleted)):
                if names:
                    self.changes.labels(action=action).inc(len(names))

    def operations_since(self, stats: StoreStats, before: Counter[str]) -> None:
        if not self.enabled:
            return
        for name, count in stats.calls.items():
            delta = count - before.get(name, 0)
            if delta > 0:
                self.ops.labels(operation=name).inc(delta)


_default: Metrics | None = None


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Expose the default registry on ``http://address:port/metrics``."""
    if prom is not None:
        prom.start_http_server(port, addr=address)
