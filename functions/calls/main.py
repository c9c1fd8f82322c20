"""calls (HTTP): the read/admin API behind the operator UI."""

import functions_framework

from call_downloader.observability import endpoints
from call_downloader.warmup import deferred_module

# Imported in the background (or on first use): the container answers its probes meanwhile.
api = deferred_module("call_downloader.api.calls", warm_cache=True)
endpoints.install()  # /healthz, /readyz, /metrics on this function's app; starts the warm-up


@functions_framework.http
def calls(request):
    return api.router(request)
