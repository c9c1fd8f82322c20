"""analyze-duration (CloudEvent call.received): measure the recording."""

import functions_framework

from call_downloader.observability import endpoints
from call_downloader.warmup import deferred_module

# Imported in the background (or on first use): the container answers its probes meanwhile.
stage = deferred_module("call_downloader.pipeline.analyze", warm_cache=True)
endpoints.install()  # /healthz, /readyz, /metrics on this function's app; starts the warm-up


@functions_framework.cloud_event
def analyze_duration(cloud_event):
    stage.handle(cloud_event)
