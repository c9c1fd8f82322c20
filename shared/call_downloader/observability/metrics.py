"""Prometheus metrics of every function.

Correct under several gunicorn workers: when PROMETHEUS_MULTIPROC_DIR is set (the images set
it), prometheus-client's multiprocess mode aggregates the workers' values at scrape time.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY


def render() -> tuple[bytes, str]:
    """The exposition text of this process (or of all workers in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST
