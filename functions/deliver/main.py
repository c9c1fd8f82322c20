"""deliver (CloudEvent call.processed, delivery.due): signed webhooks to the destinations."""

import functions_framework

from call_downloader.observability import endpoints
from call_downloader.pipeline import deliver as stage

endpoints.install()  # /healthz, /readyz, /metrics on this function's app


@functions_framework.cloud_event
def deliver(cloud_event):
    stage.handle(cloud_event)
