"""deliver (CloudEvent call.processed, delivery.due): signed webhooks to the destinations."""

import functions_framework

from call_downloader.observability import endpoints
from call_downloader.warmup import deferred_module

# Imported in the background (or on first use): the container answers its probes meanwhile.
stage = deferred_module("call_downloader.pipeline.deliver")
endpoints.install()  # /healthz, /readyz, /metrics on this function's app; starts the warm-up


@functions_framework.cloud_event
def deliver(cloud_event):
    stage.handle(cloud_event)
