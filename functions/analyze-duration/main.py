"""analyze-duration (CloudEvent call.received): measure the recording."""

import functions_framework

from call_downloader.pipeline import analyze


@functions_framework.cloud_event
def analyze_duration(cloud_event):
    analyze.handle(cloud_event)
