"""The Kubernetes operator: a kopf shell over the sync engine."""
