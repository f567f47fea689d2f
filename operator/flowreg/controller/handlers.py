"""kopf handlers: the thin shell that connects the Kubernetes API to the ``Reconciler``.

* create / update: sync at once, through the operator's ``SyncQueue`` (level-triggered: the
  handler ignores the diff; it returns when the sync that covered the change has ended);
* an object this process has not seen yet (just created, or there before the operator
  started): sync at once only if its status is out of step (a new object's is); the others get
  their first periodic re-sync spread out;
* periodic re-syncs at ``spec.interval`` (a digest comparison; a deep check when due) and
  retries after transient failures come from the queue's one timer, not from kopf: kopf
  keeps no timer, task or copy of the object per registry;
* delete: a finalizer (``FINALIZER``; kopf patches it in before a new registry's first sync,
  unless the chart's opt-in finalizer policy had the apiserver add it at creation);
  ``deletionPolicy: Delete`` removes the registry's points, ``Orphan`` leaves them.

kopf compares each object with its last handled essence to tell a change from a status write.
That essence is kept in the operator's memory (``MemoryDiffBase``), with a digest of
``spec.flows`` instead of the flows, and so is kopf's record of each handler's attempts
(``MemoryProgress``), not in annotations on the object: writing them was one apiserver PATCH
per handled change (a quarter of the requests of a fleet's first sync).
What a restarted operator lost is read from the status instead: ``observedGeneration`` and the
conditions say whether a registry's store holds its current generation.

The handlers are registered into a registry by ``register``, and everything they share travels
in kopf's ``memo`` (``operator_memo``): the configuration in, the running ``Reconciler`` and
``SyncQueue`` out. Nothing is read from the environment or kept in module state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from flowreg.checksum import sha256_of
from flowreg.controller.config import OperatorConfig
from flowreg.controller.kube import KubeSink, login
from flowreg.controller.metrics import Metrics
from flowreg.controller.reconcile import Reconciler
from flowreg.controller.resource import FlowRegistry, uid_of
from flowreg.controller.schedule import SMALL_SHARE, SyncQueue
from flowreg.errors import FlowregError
from flowreg.schema import GROUP, PLURAL, VERSION

log = logging.getLogger("flowreg.controller")
PREFIX = GROUP
FINALIZER = f"{PREFIX}/finalizer"
"""The finalizer that holds a deleted registry until its points are removed (or orphaned). The
chart's opt-in MutatingAdmissionPolicy adds it at creation; kopf adds it where it is absent."""
DEFAULT_PEERING_LIFETIME = 60
CONSISTENCY_TIMEOUT = 60.0
ESSENCE_METADATA = frozenset(("labels", "annotations"))
"""The metadata kopf keeps in an object's essence (the rest it drops after copying it)."""


def operator_memo(config: OperatorConfig, *, peering_clusterwide: bool = False,
                  peering_lifetime: int = DEFAULT_PEERING_LIFETIME) -> kopf.Memo:
    """The memo to run the handlers with (``kopf.run(memo=...)``).

    The startup handler adds ``reconciler``, the ``Reconciler`` every other handler uses, and
    ``queue``, the ``SyncQueue`` that runs its syncs; kopf copies the memo for each object only
    after startup, so all of them share those.
    """
    return kopf.Memo(config=config, peering_clusterwide=peering_clusterwide,
                     peering_lifetime=peering_lifetime)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> kopf.OperatorRegistry:
    """Register the operator's handlers into ``registry`` and return it."""
    kopf.on.login(registry=registry)(authenticate)
    kopf.on.startup(registry=registry)(configure)
    kopf.on.cleanup(registry=registry)(shutdown)
    kopf.on.probe(id="stores", registry=registry)(stores_probe)
    kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)(on_change)
    kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)(on_change)
    kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)(on_delete)
    return registry


class MemoryProgress(kopf.AnnotationsProgressStorage):
    """kopf's record of each handler's attempts (retries, delays) kept in memory by object uid
    and handler id. Only the touch kopf writes to wake itself for a delayed retry goes to the
    object. A restarted operator starts counting a handler's retries again."""

    def __init__(self, *, prefix: str) -> None:
        super().__init__(prefix=prefix)
        self._records: dict[tuple[str, str], Any] = {}

    def fetch(self, *, key: Any, body: kopf.Body) -> Any:
        return self._records.get((uid_of(body), str(key)))

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        self._records[(uid_of(body), str(key))] = dict(record)

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        self._records.pop((uid_of(body), str(key)), None)


class MemoryDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base kept in memory by object uid (nothing is written to the object), its
    essence with ``spec.flows`` replaced by their SHA-256 digest."""

    def __init__(self) -> None:
        super().__init__()
        self._essences: dict[str, kopf.BodyEssence] = {}

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self._essences.get(uid_of(body))

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        self._essences[uid_of(body)] = essence

    def forget(self, body: Mapping[str, Any]) -> None:
        """Drop a deleted object's essence."""
        self._essences.pop(uid_of(body), None)

    def build(self, *, body: kopf.Body,
              extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        # kopf deep-copies what it is given: give it the object without its flows, without its
        # status and without the metadata the essence leaves out (managedFields lists every
        # field of every flow), not the whole object, at every event.
        raw = {k: v for k, v in body.items() if k != "status" or extra_fields}
        metadata = raw.get("metadata")
        if isinstance(metadata, Mapping):
            raw["metadata"] = {k: v for k, v in metadata.items() if k in ESSENCE_METADATA}
        spec = raw.get("spec")
        if isinstance(spec, Mapping) and "flows" in spec:
            spec = dict(spec)
            flows = spec.pop("flows")
            spec["flowsDigest"] = sha256_of(flows)
            raw["spec"] = spec
        return super().build(body=kopf.Body(raw), extra_fields=extra_fields)


def authenticate(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf logs in as the status writer does (no Kubernetes client library needed)."""
    return login(settings)


async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Settings, the ``Reconciler`` and its ``SyncQueue`` from the configuration in ``memo``."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = MemoryProgress(prefix=PREFIX)
    essences = MemoryDiffBase()
    settings.persistence.diffbase_storage = essences
    settings.posting.level = logging.WARNING
    # kopf waits this long for its own patch to come back on the watch before it handles the
    # object again; a watch lagging more than kopf's 5 s (a busy apiserver, thousands of
    # objects created at once) made it run the create handler a second time on the old object.
    settings.persistence.consistency_timeout = CONSISTENCY_TIMEOUT
    settings.peering.clusterwide = bool(memo.get("peering_clusterwide"))
    settings.peering.lifetime = int(memo.get("peering_lifetime", DEFAULT_PEERING_LIFETIME))
    config = memo.get("config")
    if not isinstance(config, OperatorConfig):
        raise kopf.PermanentError("the operator was started without a configuration in memo")
    metrics = Metrics.default()
    workers = SMALL_SHARE * config.concurrent_syncs
    # A connection per sync that may write at once: none waits for another's to be free.
    reconciler = Reconciler(config, KubeSink(connections=workers), metrics)
    queue = SyncQueue(reconciler, workers=workers,
                      large=config.concurrent_syncs,
                      tick=config.drift_check_seconds, paused=lambda: metrics.standing_by)
    memo["reconciler"], memo["queue"], memo["essences"] = reconciler, queue, essences
    queue.start()


async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    queue: SyncQueue | None = memo.get("queue")
    if queue is not None:
        await queue.stop()
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:
        await reconciler.close()


def stores_probe(memo: kopf.Memo, **_: Any) -> dict[str, int]:
    reconciler: Reconciler | None = memo.get("reconciler")
    queue: SyncQueue | None = memo.get("queue")
    return {"open_stores": len(reconciler.engines) if reconciler else 0,
            "waiting_syncs": queue.waiting if queue else 0}


async def on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    queue = _queue(memo)
    if queue.knows(body):
        await queue.sync(body, "change")
    else:  # new, or there before this process started: its status says if it is in step
        await queue.resume(body)


async def on_delete(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    _queue(memo).forget(body)
    essences = memo.get("essences")
    if isinstance(essences, MemoryDiffBase):
        essences.forget(body)
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


def _queue(memo: Mapping[str, Any]) -> SyncQueue:
    queue = memo.get("queue")
    if not isinstance(queue, SyncQueue):
        raise kopf.PermanentError("the operator was not configured (startup handler missing)")
    return queue


def _reconciler(memo: Mapping[str, Any]) -> Reconciler:
    reconciler = memo.get("reconciler")
    if not isinstance(reconciler, Reconciler):
        raise kopf.PermanentError("the operator was not configured (startup handler missing)")
    return reconciler
