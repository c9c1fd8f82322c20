from __future__ import annotations

from call_downloader.security.audit import REDACTED, scrub


def test_secret_fields_are_redacted_at_any_depth():
    out = scrub({
        "password": "hunter2-hunter2",
        "new_password": "x",
        "refresh_token": "cdr_abc",
        "nested": {"api_key": "cdk_zzz", "ok": 1, "deeper": [{"client_secret": "s"}]},
        "Authorization": "Bearer abc",
        "prefix": "cdk_abcd1234",
        "role": "admin",
    })
    assert out["password"] == REDACTED and out["new_password"] == REDACTED
    assert out["refresh_token"] == REDACTED and out["Authorization"] == REDACTED
    assert out["nested"]["api_key"] == REDACTED and out["nested"]["ok"] == 1
    assert out["nested"]["deeper"][0]["client_secret"] == REDACTED
    assert out["role"] == "admin"
    # a key's 12-character prefix is what lists show: it stays readable
    assert out["prefix"] == "cdk_abcd1234"


def test_credential_shaped_values_and_control_characters():
    out = scrub({"note": "see eyJhbGciOi.eyJzdWIi.sig", "k": "cdk_" + "a" * 43,
                 "r": "text cdr_" + "b" * 43, "t": "a\x00b\x07c"})
    assert out["note"] == REDACTED and out["k"] == REDACTED and out["r"] == REDACTED
    assert out["t"] == "abc"


def test_odd_values_become_json_safe():
    out = scrub({"n": None, "b": True, "f": 1.5, "obj": object(), "long": "x" * 2000})
    assert out["n"] is None and out["b"] is True and out["f"] == 1.5
    assert isinstance(out["obj"], str) and len(out["long"]) == 500
