"""calls (HTTP): the read/admin API behind the operator UI."""

import functions_framework

from call_downloader.api.calls import router
from call_downloader.observability import endpoints

endpoints.install()  # /healthz, /readyz, /metrics on this function's app


@functions_framework.http
def calls(request):
    return router(request)
