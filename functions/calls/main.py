"""calls (HTTP): the read/admin API behind the operator UI."""

import functions_framework

from call_downloader.api.calls import router


@functions_framework.http
def calls(request):
    return router(request)
