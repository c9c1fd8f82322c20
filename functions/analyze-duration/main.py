"""analyze-duration (CloudEvent call.received): measure the recording."""

import functions_framework

from call_downloader.observability import endpoints
from call_downloader.pipeline import analyze

endpoints.install()  # /healthz, /readyz, /metrics on this function's app


@functions_framework.cloud_event
def analyze_duration(cloud_event):
    analyze.handle(cloud_event)
