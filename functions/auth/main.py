"""The `auth` function: users, tokens, API keys and the audit log (SPEC 3.6).

Thin glue: the routes live in `call_downloader.security.api`.
"""

import functions_framework

from call_downloader.observability import endpoints
from call_downloader.warmup import deferred_module

# Imported in the background (or on first use): the container answers its probes meanwhile.
api = deferred_module("call_downloader.security.api", warm_cache=True)
endpoints.install()  # /healthz, /readyz, /metrics on this function's app; starts the warm-up


@functions_framework.http
def auth(request):  # type: ignore[no-untyped-def]
    return api.router(request)
