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
