"""Multiprocess mode: what gunicorn's workers record is summed by the scrape of any of them.

Real processes (prometheus-client picks its value store at import, from
PROMETHEUS_MULTIPROC_DIR): two workers write, a third process scrapes through `render()`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

WORKER = textwrap.dedent(
    """
    import sys
    from call_downloader.observability import metrics
    n = int(sys.argv[1])
    for _ in range(n):
        metrics.m().http_requests.labels("ingest", "/api/v1/calls", "POST", "202").inc()
        metrics.m().http_duration.labels("ingest", "/api/v1/calls", "POST").observe(0.2)
        metrics.m().bytes_ingested.labels("upload").inc(1000)
    # A request still in progress when this worker exits (it "crashes" mid-request).
    metrics.m().http_in_progress.labels("ingest").inc(int(sys.argv[2]))
    """
)

SCRAPER = textwrap.dedent(
    """
    import sys
    from call_downloader.observability import metrics
    if len(sys.argv) > 1:  # this process has a request in progress while it scrapes
        metrics.m().http_in_progress.labels("ingest").inc(int(sys.argv[1]))
    sys.stdout.write(metrics.render()[0].decode())
    """
)


def run(code: str, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_two_workers_are_summed_by_one_scrape(tmp_path: Path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    run(WORKER, env, "3", "2")
    run(WORKER, env, "4", "0")
    got = samples(run(SCRAPER, env, "1"))

    key = (
        "calldl_http_requests_total",
        (("function", "ingest"), ("method", "POST"), ("route", "/api/v1/calls"), ("status", "202")),
    )
    assert got[key] == 7
    assert got[("calldl_ingested_bytes_total", (("origin", "upload"),))] == 7000
    hist = (("function", "ingest"), ("method", "POST"), ("route", "/api/v1/calls"))
    assert got[("calldl_http_request_duration_seconds_count", hist)] == 7
    bucket = tuple(sorted((*hist, ("le", "0.25"))))
    assert got[("calldl_http_request_duration_seconds_bucket", bucket)] == 7
    assert (
        got[("calldl_http_request_duration_seconds_bucket", tuple(sorted((*hist, ("le", "0.1")))))]
        == 0
    )
    # The exited workers' in-progress requests are forgotten; the scraping process's is not.
    assert got[("calldl_http_requests_in_progress", (("function", "ingest"),))] == 1


def test_without_the_variable_each_process_reports_itself(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    run(WORKER, env, "3", "0")
    got = samples(run(SCRAPER, env))
    key = (
        "calldl_http_requests_total",
        (("function", "ingest"), ("method", "POST"), ("route", "/api/v1/calls"), ("status", "202")),
    )
    assert key not in got  # another process's counts are not visible
