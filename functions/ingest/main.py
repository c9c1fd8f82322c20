"""ingest (HTTP): POST /api/v1/calls from source applications; POST /api/v1/ai/callback."""

import functions_framework

from call_downloader.api.ingest import router
from call_downloader.observability import endpoints

endpoints.install()  # /healthz, /readyz, /metrics on this function's app


@functions_framework.http
def ingest(request):
    return router(request)
