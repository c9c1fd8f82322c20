"""Password policy and bcrypt hashing (passlib).

bcrypt only reads the first 72 bytes of a password, so longer ones are refused with a clear
message instead of being silently truncated (two passwords sharing 72 bytes would match).
"""

from __future__ import annotations

import secrets
import threading

from passlib.context import CryptContext

MIN_LENGTH = 10
MAX_BYTES = 72
BCRYPT_ROUNDS = 12  # hashes below this cost are upgraded at the next successful login

_lock = threading.Lock()
_context: CryptContext | None = None
_dummy_hash: str | None = None


class PasswordPolicyError(ValueError):
    """The password does not meet the policy; the message says why and can be shown as is."""


def _ctx() -> CryptContext:
    # Built on first use (nothing at import). `deprecated="auto"` lets verify_and_update()
    # rehash old hashes when the cost factor is raised later.
    global _context
    if _context is None:
        with _lock:
            if _context is None:
                _context = CryptContext(
                    schemes=["bcrypt"],
                    deprecated="auto",
                    bcrypt__default_rounds=BCRYPT_ROUNDS,
                    bcrypt__min_rounds=BCRYPT_ROUNDS,
                )
    return _context


def validate_password(password: object) -> str:
    """Return the password if it is acceptable, else raise PasswordPolicyError."""
    if not isinstance(password, str):
        raise PasswordPolicyError("password must be a string")
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"password must be at least {MIN_LENGTH} characters long")
    if len(password.encode("utf-8")) > MAX_BYTES:
        raise PasswordPolicyError(
            f"password must be at most {MAX_BYTES} bytes in UTF-8 "
            "(bcrypt ignores anything longer; it is refused rather than truncated)"
        )
    if "\x00" in password:
        raise PasswordPolicyError("password must not contain NUL characters")
    if not password.strip():
        raise PasswordPolicyError("password must not be blank")
    return password


def hash_password(password: str) -> str:
    """Validate against the policy, then hash with bcrypt."""
    return _ctx().hash(validate_password(password))


def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        with _lock:
            if _dummy_hash is None:
                _dummy_hash = _ctx().hash(secrets.token_urlsafe(16))
    return _dummy_hash


def verify_password(password: object, password_hash: str | None) -> tuple[bool, str | None]:
    """Check a password; return (ok, new_hash_or_None).

    Always spends one bcrypt verification, also when there is no hash to check against (unknown
    user, account without password) or the input cannot be valid, so the answer time does not
    tell whether an account exists. A new hash is returned when the stored one should be
    upgraded (e.g. the cost factor was raised).
    """
    candidate = password if isinstance(password, str) else ""
    usable = (
        isinstance(password, str)
        and 0 < len(candidate.encode("utf-8")) <= MAX_BYTES
        and "\x00" not in candidate
        and bool(password_hash)
    )
    if not usable:
        _verify_quietly(candidate if 0 < len(candidate.encode("utf-8")) <= MAX_BYTES else "x",
                        _dummy())
        return False, None
    assert password_hash is not None
    try:
        return _ctx().verify_and_update(candidate, password_hash)
    except (ValueError, TypeError):  # a malformed stored hash is a failed login, not a crash
        return False, None


def _verify_quietly(password: str, password_hash: str) -> None:
    try:
        _ctx().verify(password.replace("\x00", ""), password_hash)
    except (ValueError, TypeError):
        pass
