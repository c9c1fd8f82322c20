"""Memory: how much the server's resident set grows while a 1 GB recording is uploaded.

The body is generated on the fly (a WAV header, then one random MiB repeated) and sent with
its Content-Length; nothing holds it. A sampler reads the server's VmRSS every 5 ms; growth is
the peak minus the resident set just before the upload. The same upload goes to the bare
streaming endpoint, measured the same way. For the product, the growth while the call then
goes through its stages (spooling 1 GB out of PostgreSQL, sending it to the AI) is reported
too.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from bench_common import RssSampler, log, streamed_wav_multipart

SIZE = 1_000_000_000


def _upload(url: str, headers: dict[str, str]) -> tuple[float, str]:
    gen, length, ctype = streamed_wav_multipart(SIZE)
    started = time.monotonic()
    response = httpx.post(
        url,
        content=gen,
        headers={"Content-Type": ctype, "Content-Length": str(length), **headers},
        timeout=600,
    )
    took = time.monotonic() - started
    if response.status_code != 202:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
    return took, str(response.json()["id"])


def run(ctx: Any) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {ctx.token}"}
    with RssSampler(ctx.product.pid) as product_upload:
        took_p, call_id = _upload(ctx.product.url + "/api/v1/calls", auth)
    log(
        f"memory: product took the 1 GB upload in {took_p:.1f} s, "
        f"RSS +{product_upload.growth / 1e6:.1f} MB"
    )
    with RssSampler(ctx.product.pid) as downstream:
        ctx.peers.wait_one(call_id, 900)
    log(f"memory: product stages done, RSS +{downstream.growth / 1e6:.1f} MB over the upload's end")
    with RssSampler(ctx.baseline.pid) as baseline_upload:
        took_b, _ = _upload(ctx.baseline.url + "/ingest-raw", {})
    log(
        f"memory: baseline took the 1 GB upload in {took_b:.1f} s, "
        f"RSS +{baseline_upload.growth / 1e6:.1f} MB"
    )
    return {
        "upload_bytes": SIZE,
        "product_rss_growth_mb": product_upload.growth / 1e6,
        "product_rss_before_mb": product_upload.start_rss / 1e6,
        "product_upload_s": took_p,
        "product_stages_rss_growth_mb": (downstream.peak - product_upload.start_rss) / 1e6,
        "baseline_rss_growth_mb": baseline_upload.growth / 1e6,
        "baseline_upload_s": took_b,
        "target_mb": 100,
    }


CALLBACK_BODY_BYTES = 15_000_000
PARALLEL_CALLBACKS = 4


def _json_numbers(size: int) -> bytes:
    """A JSON object of about `size` bytes whose parse costs the most memory: a long list of
    small numbers (each a Python object)."""
    item = b"1234567,"
    count = (size - 20) // len(item)
    return b'{"segments": [' + item * count + b"0]}"


def run_bad_callbacks(ctx: Any) -> dict[str, Any]:
    """Issue 16, item 2: the server tree's RSS growth while PARALLEL_CALLBACKS callbacks with a
    wrong token and a 15 MB JSON body each arrive at once."""
    import concurrent.futures

    body = _json_numbers(CALLBACK_BODY_BYTES)
    url = ctx.product.url + "/api/v1/ai/callback?token=x"

    def post() -> int:
        response = httpx.post(
            url, content=body, headers={"Content-Type": "application/json"}, timeout=300
        )
        return response.status_code

    with (
        RssSampler(ctx.product.pid) as sampler,
        concurrent.futures.ThreadPoolExecutor(PARALLEL_CALLBACKS) as pool,
    ):
        statuses = sorted(pool.map(lambda _: post(), range(PARALLEL_CALLBACKS)))
    log(
        f"bad-token callbacks: {PARALLEL_CALLBACKS} x {len(body) / 1e6:.0f} MB answered "
        f"{statuses}, server tree RSS +{sampler.growth / 1e6:.1f} MB "
        f"(from {sampler.start_rss / 1e6:.1f} MB)"
    )
    return {
        "callbacks": PARALLEL_CALLBACKS,
        "body_bytes": len(body),
        "statuses": statuses,
        "product_rss_before_mb": sampler.start_rss / 1e6,
        "product_rss_growth_mb": sampler.growth / 1e6,
    }
