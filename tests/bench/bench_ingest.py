"""Ingest: MB/s of 20 MB uploads through POST /api/v1/calls against the bare streaming endpoint.

Both servers are werkzeug's threaded WSGI server in their own process and both write the body
into PostgreSQL as 1 MiB rows in one transaction; the product also parses the multipart body,
authenticates, hashes, sniffs the format and commits the call with its outbox event. Uploads
alternate product / baseline, and each product call is left to finish its pipeline before the
next upload, so neither side is measured while the other (or a downstream stage) works.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from bench_common import log, median, multipart, ratio, wav_bytes

SIZE = 20_000_000  # "20 MB": MB/s below are 10^6 bytes per second


def _post(client: httpx.Client, url: str, body: bytes, ctype: str, headers: dict[str, str]):
    started = time.monotonic()
    response = client.post(url, content=body, headers={"Content-Type": ctype, **headers})
    took = time.monotonic() - started
    if response.status_code != 202:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return took, response.json()["id"]


def run(ctx: Any, rounds: int = 5) -> dict[str, Any]:
    body, ctype = multipart({}, wav_bytes(SIZE - 600, seed=20))
    auth = {"Authorization": f"Bearer {ctx.token}"}
    product_mbps, baseline_mbps = [], []
    with httpx.Client(timeout=300) as client:
        # One of each first, unmeasured: connection pools and caches warm on both sides.
        _, call_id = _post(client, ctx.product.url + "/api/v1/calls", body, ctype, auth)
        ctx.peers.wait_one(call_id, 300)
        _post(client, ctx.baseline.url + "/ingest-raw", body, ctype, {})
        for i in range(rounds):
            took, call_id = _post(client, ctx.product.url + "/api/v1/calls", body, ctype, auth)
            product_mbps.append(len(body) / 1e6 / took)
            ctx.peers.wait_one(call_id, 300)  # downstream stages finish before the next upload
            took, _ = _post(client, ctx.baseline.url + "/ingest-raw", body, ctype, {})
            baseline_mbps.append(len(body) / 1e6 / took)
            log(
                f"ingest round {i + 1}: product {product_mbps[-1]:.1f} MB/s, "
                f"baseline {baseline_mbps[-1]:.1f} MB/s"
            )
    p, b = median(product_mbps), median(baseline_mbps)
    return {
        "upload_bytes": len(body),
        "rounds": rounds,
        "product_mb_s": p,
        "baseline_mb_s": b,
        "ratio": ratio(p, b),
        "target_ratio": 0.8,
        "product_samples": product_mbps,
        "baseline_samples": baseline_mbps,
    }
