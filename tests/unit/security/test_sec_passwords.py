from __future__ import annotations

import pytest

from call_downloader.security.passwords import (
    MAX_BYTES,
    PasswordPolicyError,
    hash_password,
    validate_password,
    verify_password,
)


@pytest.mark.parametrize("bad", ["", "short", "123456789", None, 1234567890, b"bytes-long-enough"])
def test_too_short_or_not_a_string(bad):
    with pytest.raises(PasswordPolicyError):
        validate_password(bad)


def test_ten_characters_is_enough():
    assert validate_password("abcdefghij") == "abcdefghij"


def test_72_bytes_accepted_73_refused_with_a_clear_message():
    validate_password("a" * MAX_BYTES)
    with pytest.raises(PasswordPolicyError, match="72 bytes"):
        validate_password("a" * (MAX_BYTES + 1))


def test_limit_is_in_bytes_not_characters():
    validate_password("é" * 36)  # 72 bytes
    with pytest.raises(PasswordPolicyError, match="72 bytes"):
        validate_password("é" * 37)  # 37 characters, 74 bytes
    with pytest.raises(PasswordPolicyError):
        validate_password("🔑" * 19)  # 76 bytes


def test_nul_and_blank_refused():
    with pytest.raises(PasswordPolicyError):
        validate_password("abcde\x00fghijk")
    with pytest.raises(PasswordPolicyError):
        validate_password(" " * 12)


def test_hash_and_verify():
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$2b$") and "correct" not in hashed
    assert verify_password("correct horse battery", hashed) == (True, None)
    assert verify_password("correct horse batterY", hashed)[0] is False
    assert hash_password("correct horse battery") != hashed  # salted


def test_hash_refuses_policy_violations():
    with pytest.raises(PasswordPolicyError):
        hash_password("short")
    with pytest.raises(PasswordPolicyError):
        hash_password("x" * 100)


def test_no_silent_truncation_at_verify():
    base = "p" * MAX_BYTES
    hashed = hash_password(base)
    # bcrypt alone would accept this (it only reads 72 bytes): we do not.
    assert verify_password(base + "anything", hashed)[0] is False
    assert verify_password(base, hashed)[0] is True


@pytest.mark.parametrize("stored", [None, "", "not-a-hash", "$2b$12$short"])
def test_verify_against_missing_or_malformed_hash_is_false(stored):
    assert verify_password("whatever-password", stored) == (False, None)


@pytest.mark.parametrize("candidate", [None, 123, "", "x\x00y-long-enough"])
def test_verify_odd_candidates_is_false(candidate):
    hashed = hash_password("a-valid-password")
    assert verify_password(candidate, hashed)[0] is False


def test_old_cost_hash_is_upgraded_on_verify():
    from passlib.hash import bcrypt

    weak = bcrypt.using(rounds=4).hash("upgrade-me-please")
    ok, new_hash = verify_password("upgrade-me-please", weak)
    assert ok is True
    assert new_hash is not None and new_hash != weak
    assert verify_password("upgrade-me-please", new_hash) == (True, None)
