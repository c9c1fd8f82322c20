"""call-ai (CloudEvent call.analyzed, ai.retry): have the AI service analyse the recording."""

import functions_framework

from call_downloader.observability import endpoints
from call_downloader.pipeline import call_ai as stage

endpoints.install()  # /healthz, /readyz, /metrics on this function's app


@functions_framework.cloud_event
def call_ai(cloud_event):
    stage.handle(cloud_event)
