"""ingest (HTTP): POST /api/v1/calls from source applications; POST /api/v1/ai/callback."""

import functions_framework

from call_downloader.api.ingest import router


@functions_framework.http
def ingest(request):
    return router(request)
