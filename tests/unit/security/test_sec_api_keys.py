from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from call_downloader.db.models import ApiKey, User
from call_downloader.security.api_keys import (
    KEY_PREFIX,
    PREFIX_LENGTH,
    generate_key,
    hash_key,
    key_to_dict,
    looks_like_key,
)


def test_keys_are_prefixed_random_and_256_bit():
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert looks_like_key(key)
        # 43 url-safe base64 characters = 258 bits of encoding for 256 random bits
        assert len(key) == len(KEY_PREFIX) + 43


def test_hash_is_sha256_of_the_whole_key():
    key = generate_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert hash_key(key) != hash_key(key[:-1] + ("A" if key[-1] != "A" else "B"))


def test_looks_like_key_rejects_near_misses():
    key = generate_key()
    near_misses = ["", key[:-1], key + "x", "cdx_" + key[4:], "cdk_" + "!" * 43,
                   None, 12, key + "\x00", " " + key]
    for bad in near_misses:
        assert not looks_like_key(bad), bad


def test_listing_never_contains_the_key_or_its_hash():
    key = generate_key()
    user = User(id=uuid.uuid4(), username="pbx", role="source", active=True)
    row = ApiKey(id=uuid.uuid4(), user_id=user.id, name="pbx main", prefix=key[:PREFIX_LENGTH],
                 key_hash=hash_key(key), created_at=datetime.now(UTC))
    row.user = user
    shown = key_to_dict(row)
    text = repr(shown)
    assert key not in text and hash_key(key) not in text
    assert shown["prefix"] == key[:PREFIX_LENGTH] and shown["username"] == "pbx"
    assert shown["active"] is True and shown["last_used_at"] is None
