"""Start the operator process: configuration, logging, metrics, then kopf."""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence

import kopf

from flowreg.collector import tune_for_service
from flowreg.controller.config import ConfigError, load_config, missing_keys, store_lines
from flowreg.controller.handlers import DEFAULT_PEERING_LIFETIME, operator_memo, register
from flowreg.controller.metrics import Metrics, serve
from flowreg.location import redact


class RedactSecrets(logging.Filter):
    """Replace the values of the configured API-key variables, and the userinfo of any URL,
    in every log record."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        message = redact(text)
        for secret in self.secrets:
            message = message.replace(secret, "[REDACTED]")
        if message != text:
            record.msg, record.args = message, None
        return True


def start_priority() -> int:
    """A kopf peering priority that makes the oldest replica the active one.

    kopf pauses every operator that sees a live peer of higher *or equal* priority, so equal
    priorities would pause all replicas. Minus the start time in microseconds is unique in
    practice, and a replica that restarts never preempts the one that took over meanwhile.
    """
    return -time.time_ns() // 1000


def operator_identity() -> str:
    """This replica's name among peers: ``$POD_ID`` (the chart sets the pod's name), else
    ``user@host/<random>``, where a UID with no passwd entry (a container run as an arbitrary
    UID) is named ``uid<N>``. kopf's own default fails for such a UID."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}/{secrets.token_hex(3)}"


class StandbyWatch(logging.Filter):
    """Sets ``flowreg_standby`` from kopf's peering decisions (pause and resume)."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith(("Pausing operations in favour of", "Pausing all operators")):
            self.metrics.set_standby(True)
        elif text.startswith("Resuming operations after the pause"):
            self.metrics.set_standby(False)
        return True


def watch_standby(metrics: Metrics) -> None:
    """kopf starts a peering operator paused, until it has seen that no peer outranks it."""
    metrics.set_standby(True)
    logging.getLogger("kopf._core.engines.peering").addFilter(StandbyWatch(metrics))


def run(*, config_path: str | None, namespaces: Sequence[str], all_namespaces: bool,
        liveness: str | None, peering: str | None, metrics_port: int | None,
        log_format: str = "json", verbose: bool = False,
        peering_lifetime: int = DEFAULT_PEERING_LIFETIME) -> int:
    """Run the operator until it is stopped; returns the process exit code.

    ``peering`` names a KopfPeering object for HA; ``None`` runs standalone. Of the replicas
    peering there, the one started first reconciles and the others stand by
    (``flowreg_standby`` is 1 in their metrics); when it has not renewed its entry for
    ``peering_lifetime`` seconds, the next oldest takes over; ``$FLOWREG_PEERING_CLUSTERWIDE=1``
    (set by the Helm chart) makes the peering object cluster-wide. The configuration file is
    read once at start (and checked here, before kopf), and reaches the handlers in kopf's memo.
    """
    config = load_config(config_path)
    missing = missing_keys(config)
    if missing:
        raise ConfigError("; ".join(missing) + " (an API key is read from the variable the "
                          "setting names; fill it from a Secret, or drop the setting)")
    kopf.configure(verbose=verbose,
                   log_format=kopf.LogFormat.JSON if log_format == "json"
                   else kopf.LogFormat.FULL)
    secrets_filter = RedactSecrets([s.api_key for s in config.stores.values() if s.api_key])
    for handler in logging.getLogger().handlers:
        handler.addFilter(secrets_filter)
    # httpx (Qdrant's REST client) logs a line per request; failures are said by flowreg.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log = logging.getLogger("flowreg")
    for line in store_lines(config):
        (log.warning if ":memory:" in line else log.info)(line)
    if metrics_port:
        serve(metrics_port)

    if peering is not None:
        watch_standby(Metrics.default())
    tune_for_service()
    kopf.run(
        registry=register(kopf.OperatorRegistry(), config),
        memo=operator_memo(
            config, peering_lifetime=peering_lifetime,
            peering_clusterwide=os.environ.get("FLOWREG_PEERING_CLUSTERWIDE") == "1"),
        standalone=peering is None,
        peering_name=peering,
        priority=start_priority(),
        identity=operator_identity(),  # type: ignore[arg-type]  # kopf: NewType("Identity", str)
        clusterwide=all_namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness,
    )
    return 0
