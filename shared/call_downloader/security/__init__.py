"""Security: passwords, access and refresh tokens, API keys, identities and roles, login
throttling and the audit log (SPEC 3.6). Other functions use `security.identity`:

    from call_downloader.security.identity import authenticate, require
    who = require(request, Role.OPERATOR, Role.VIEWER)   # admin is always allowed
"""
