"""Start the operator process: configuration, logging, metrics, then kopf."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import kopf

from flowreg.controller.config import load_config
from flowreg.controller.metrics import serve


class RedactSecrets(logging.Filter):
    """Replace the values of the configured API-key variables in every log record."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(s in message for s in self.secrets):
                for secret in self.secrets:
                    message = message.replace(secret, "[REDACTED]")
                record.msg, record.args = message, None
        return True


def run(*, config_path: str | None, namespaces: Sequence[str], all_namespaces: bool,
        liveness: str | None, peering: str | None, metrics_port: int | None,
        log_format: str = "json", verbose: bool = False) -> int:
    """Run the operator until it is stopped; returns the process exit code.

    ``peering`` names a KopfPeering object for HA (a second replica stands by); ``None`` runs
    standalone. The configuration file is read once at start (and checked here, before kopf).
    """
    config = load_config(config_path)
    if config_path:
        os.environ["FLOWREG_CONFIG"] = str(config_path)
    os.environ.setdefault("FLOWREG_DRIFT_CHECK_SECONDS", str(config.drift_check_seconds))
    kopf.configure(verbose=verbose,
                   log_format=kopf.LogFormat.JSON if log_format == "json"
                   else kopf.LogFormat.FULL)
    redact = RedactSecrets([s.api_key for s in config.stores.values() if s.api_key])
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    if metrics_port:
        serve(metrics_port)

    import flowreg.controller.handlers  # noqa: F401  (registers the handlers with kopf)

    kopf.run(
        standalone=peering is None,
        peering_name=peering,
        clusterwide=all_namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness,
    )
    return 0
