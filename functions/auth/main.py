"""The `auth` function: users, tokens, API keys and the audit log (SPEC 3.6).

Thin glue: the routes live in `call_downloader.security.api`.
"""

import functions_framework

from call_downloader.observability import endpoints
from call_downloader.security.api import router

endpoints.install()  # /healthz, /readyz, /metrics on this function's app


@functions_framework.http
def auth(request):  # type: ignore[no-untyped-def]
    return router(request)
