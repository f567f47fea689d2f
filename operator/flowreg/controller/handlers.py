"""kopf handlers: the thin shell that connects the Kubernetes API to the ``Reconciler``.

* create / update / resume: reconcile at once (level-triggered: the handler ignores the diff);
* a timer every ``driftCheckSeconds``: reconcile when the registry's ``spec.interval`` has
  passed (a deep check that also repairs points altered behind the operator's back), or when
  a retry after a transient failure is due;
* delete: a finalizer; ``deletionPolicy: Delete`` removes the registry's points, ``Orphan``
  leaves them.

kopf's last-handled-configuration annotation would hold a copy of the whole spec, and a
2,000-flow spec is far beyond the 256 KiB annotation limit, so the stored essence carries a
digest of ``spec.flows`` instead of the flows themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from flowreg.checksum import sha256_of
from flowreg.controller import runtime
from flowreg.controller.config import load_config
from flowreg.controller.kube import KubeSink, login
from flowreg.controller.metrics import Metrics
from flowreg.controller.reconcile import Reconciler
from flowreg.controller.resource import FlowRegistry
from flowreg.errors import FlowregError
from flowreg.schema import GROUP, PLURAL, VERSION

log = logging.getLogger("flowreg.controller")
PREFIX = GROUP


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff-base annotation with ``spec.flows`` replaced by its SHA-256 digest."""

    def build(self, *, body: kopf.Body,
              extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        essence: Any = super().build(body=body, extra_fields=extra_fields)
        spec = essence.get("spec")
        if isinstance(spec, dict) and "flows" in spec:
            spec["flowsDigest"] = sha256_of(spec.pop("flows"))
        return essence  # type: ignore[no-any-return]


@kopf.on.login()
def authenticate(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf logs in as the status writer does (no Kubernetes client library needed)."""
    return login(settings)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.peering.clusterwide = os.environ.get("FLOWREG_PEERING_CLUSTERWIDE") == "1"
    settings.peering.lifetime = int(os.environ.get("FLOWREG_PEERING_LIFETIME", "60"))
    config = load_config(os.environ.get("FLOWREG_CONFIG"))
    reconciler = runtime.current_reconciler() or Reconciler(config, KubeSink(), Metrics.default())
    runtime.install(reconciler, asyncio.get_running_loop())
    memo["reconciler"] = reconciler


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None and not runtime.keep_open():
        await reconciler.close()
    runtime.uninstall()


@kopf.on.probe(id="stores")
def stores_probe(memo: kopf.Memo, **_: Any) -> dict[str, int]:
    reconciler: Reconciler | None = memo.get("reconciler")
    return {"open_stores": len(reconciler.engines) if reconciler else 0}


@kopf.on.resume(GROUP, VERSION, PLURAL)
async def on_resume(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _reconciler(memo).reconcile(body, trigger="resume")


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _reconciler(memo).reconcile(body, trigger="change")


@kopf.timer(GROUP, VERSION, PLURAL,
            interval=float(os.environ.get("FLOWREG_DRIFT_CHECK_SECONDS", "10")),
            initial_delay=float(os.environ.get("FLOWREG_DRIFT_CHECK_SECONDS", "10")),
            sharp=False)
async def drift_check(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    reconciler = _reconciler(memo)
    if FlowRegistry.of(body).deleting:
        return
    await reconciler.check_drift(body)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def on_delete(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    try:
        deleted = await _reconciler(memo).finalize(body)
    except FlowregError as exc:
        if exc.permanent:
            raise kopf.PermanentError(f"{exc.reason}: {exc}") from exc
        raise kopf.TemporaryError(f"{exc.reason}: {exc}",
                                  delay=min(5 * 2 ** retry, 300)) from exc
    registry = FlowRegistry.of(body)
    log.info("finalized %s/%s (%s, %d point(s) deleted)", registry.namespace, registry.name,
             registry.deletion_policy, deleted)


def _reconciler(memo: Mapping[str, Any]) -> Reconciler:
    reconciler = memo.get("reconciler")
    if not isinstance(reconciler, Reconciler):
        raise kopf.PermanentError("the operator was not configured (startup handler missing)")
    return reconciler
