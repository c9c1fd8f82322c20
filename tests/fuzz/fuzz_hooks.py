"""Schemathesis hooks of the fuzz run (`test_fuzz_api.py`), loaded by the `schemathesis` process
through SCHEMATHESIS_HOOKS. Tokens come from the environment the test sets:

- FUZZ_ADMIN_TOKEN: every request is made as the admin;
- FUZZ_LOGOUT_TOKENS: sessions of their own for `POST /api/v1/auth/logout`, one per call,
  so that logging out never ends the admin's session the rest of the run depends on;
- FUZZ_ROLE_TOKENS: a JSON object role -> token (operator, viewer, source).

And one check of our own, `role_is_enforced`: every operation whose `x-roles` leave a role
out is sent again, as it was, with that role's token; the answer must be 403.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import schemathesis

ADMIN_TOKEN = os.environ["FUZZ_ADMIN_TOKEN"]
ROLE_TOKENS: dict[str, str] = json.loads(os.environ["FUZZ_ROLE_TOKENS"])
LOGOUT = "/api/v1/auth/logout"
# The roles tried, least privileged first: the first one an operation leaves out is used.
TRIED_ROLES = ("source", "viewer", "operator")

_lock = threading.Lock()
_logout_tokens = [t for t in os.environ.get("FUZZ_LOGOUT_TOKENS", "").split(",") if t]


def _logout_token() -> str:
    """A session nobody else uses (the last one again once they are spent: it is revoked
    by then, and a revoked token is answered 401 like any other)."""
    with _lock:
        return _logout_tokens.pop() if len(_logout_tokens) > 1 else _logout_tokens[0]


@schemathesis.auth()
class FuzzAuth:
    def get(self, case: Any, context: Any) -> str:
        return ADMIN_TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        token = _logout_token() if case.operation.path == LOGOUT else data
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {token}"


def roles_of(case: Any) -> list[str] | None:
    """The operation's `x-roles` (None: not an operation that needs a role)."""
    roles = case.operation.definition.raw.get("x-roles")
    return list(roles) if roles else None


def role_left_out(case: Any) -> str | None:
    roles = roles_of(case)
    if roles is None:
        return None
    return next((r for r in TRIED_ROLES if r not in roles), None)


@schemathesis.check
def role_is_enforced(ctx: Any, response: Any, case: Any) -> bool | None:
    role = role_left_out(case)
    if role is None or response.status_code in (401, 405):
        return None  # open to every role, no valid credentials in the case, or another method
    if case.method.upper() != case.operation.method.upper():
        return None
    answer = case.call(headers={"Authorization": f"Bearer {ROLE_TOKENS[role]}"})
    if answer.status_code != 403:
        raise AssertionError(
            f"{case.method} {case.path} needs one of {roles_of(case)}, yet a {role} "
            f"was answered {answer.status_code} (expected 403)"
        )
    return None


# The accounts the run signs in with (the admin and the role accounts): the fuzzer learns ids
# from answers and reuses them, and resetting such an account's password, demoting,
# deactivating or deleting it would end the sessions the rest of the run depends on. Their
# ids are swapped for one that does not exist; every operation is still exercised.
PROTECTED = frozenset(u for u in os.environ.get("FUZZ_PROTECTED_USERS", "").split(",") if u)
NOBODY = "00000000-0000-4000-8000-000000000000"


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    params = case.path_parameters or {}
    if str(params.get("user_id", "")).lower() in PROTECTED:
        params["user_id"] = NOBODY
