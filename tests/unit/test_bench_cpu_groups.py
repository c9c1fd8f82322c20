"""The benchmark's CPU attribution by process group (tests/bench/bench_common.py): which process
counts where, and how processes that appear or vanish during a round are counted."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_common import (  # noqa: E402
    CPU_GROUPS,
    CpuSampler,
    attribute_cpu,
    cpu_group,
    database_name,
    process_snapshot,
)

DB = "cd_bench_ab12"
PG = "postgres: 15/main: postgres"


def group(pid: int, cmdline: str, **kw: object) -> str:
    args = {"database": DB, "server_pids": {100, 101}, "peers_pid": 200, "client_pid": 300}
    args.update(kw)
    return cpu_group(pid, cmdline, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (f"{PG} {DB} 127.0.0.1(40112) idle", "postgres"),
        (f"{PG} {DB} 127.0.0.1(40112) INSERT", "postgres"),
        (f"{PG} {DB} [local] idle in transaction", "postgres"),
        # Exact token: the baselines' database is not the product's, nor the other way round.
        (f"{PG} {DB}_raw 127.0.0.1(40113) idle", "other"),
        (f"{PG} cd_bench 127.0.0.1(40114) idle", "other"),
        (f"{PG} cd_test_99 127.0.0.1(40115) SELECT", "other"),
        ("postgres: 15/main: checkpointer ", "postgres-shared"),
        ("postgres: 15/main: walwriter", "postgres-shared"),
        ("postgres: 15/main: background writer", "postgres-shared"),
        ("postgres: 15/main: autovacuum launcher", "postgres-shared"),
        (f"postgres: 15/main: autovacuum worker {DB}", "postgres-shared"),
        ("postgres: 15/main: logical replication launcher", "postgres-shared"),
        ("postgres: checkpointer", "postgres-shared"),  # no cluster name
        (
            "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main "
            "-c config_file=/etc/postgresql/15/main/postgresql.conf",
            "postgres-shared",
        ),
        ("/usr/lib/erlang/erts-13.1.5/bin/beam.smp -W w -- -root /usr/lib/erlang", "rabbitmq"),
        ("/usr/lib/erlang/erts-13.1.5/bin/epmd -daemon", "other"),
        ("/usr/bin/redis-server 127.0.0.1:6379", "other"),
        ("", "other"),
    ],
)
def test_group_by_command_line(cmdline: str, expected: str) -> None:
    assert group(5000, cmdline) == expected


def test_group_by_pid_comes_first() -> None:
    # The server's tree, the peers and the client are known by pid, whatever they run.
    assert group(100, "/venv/bin/call-downloader run") == "server"
    assert group(101, "/venv/bin/python -c from multiprocessing.spawn ...") == "server"
    assert group(200, "/venv/bin/python tests/bench/bench_peers.py 4000") == "peers"
    assert group(300, "/venv/bin/python tests/bench/bench_main.py") == "client"
    assert group(5000, "/venv/bin/call-downloader run") == "other"


def test_baseline_database_is_matched_exactly() -> None:
    line = f"{PG} {DB}_raw 127.0.0.1(40113) idle"
    assert group(5000, line, database=f"{DB}_raw") == "postgres"
    assert group(5000, f"{PG} {DB} 127.0.0.1(40112) idle", database=f"{DB}_raw") == "other"


def test_attribution_of_two_snapshots() -> None:
    start = {
        100: ("/venv/bin/call-downloader run", 1000),
        200: ("python bench_peers.py 4000", 50),
        300: ("python bench_main.py", 70),
        400: (f"{PG} {DB} 127.0.0.1(1) idle", 10),
        401: (f"{PG} {DB}_raw 127.0.0.1(2) idle", 5),
        402: ("postgres: 15/main: walwriter", 3),
        403: ("/usr/lib/erlang/erts-13.1.5/bin/beam.smp -W w", 900),
        404: (f"{PG} {DB} 127.0.0.1(3) idle", 40),  # vanishes, never seen again
        500: ("/usr/bin/something-else", 77),
    }
    last = {
        100: ("/venv/bin/call-downloader run", 1300),  # +300
        101: ("python -c dispatcher", 25),  # a new server child: counts from 0
        200: ("python bench_peers.py 4000", 80),  # +30
        300: ("python bench_main.py", 90),  # +20
        400: (f"{PG} {DB} 127.0.0.1(1) INSERT", 110),  # +100
        401: (f"{PG} {DB}_raw 127.0.0.1(2) idle", 9),  # the other database: not postgres
        402: ("postgres: 15/main: walwriter", 7),  # +4
        403: ("/usr/lib/erlang/erts-13.1.5/bin/beam.smp -W w", 960),  # +60
        405: (f"{PG} {DB} 127.0.0.1(4) idle", 12),  # a new backend (pool overflow): +12
        406: ("", 8),  # a zombie/kernel thread, new
        500: ("/usr/bin/something-else", 99),
    }
    ticks = attribute_cpu(
        start,
        last,
        database=DB,
        server_pids={100, 101},
        peers_pid=200,
        client_pid=300,
        busy_ticks=700,
    )
    assert set(ticks) == set(CPU_GROUPS)
    assert ticks["server"] == 325
    assert ticks["postgres"] == 112
    assert ticks["postgres-shared"] == 4
    assert ticks["rabbitmq"] == 60
    assert ticks["peers"] == 30
    assert ticks["client"] == 20
    # Whatever the machine did besides the groups: 700 - 551.
    assert ticks["other"] == 149


def test_vanished_zombie_keeps_its_group_and_other_without_total() -> None:
    # A backend whose command line was already empty at the last look (a zombie) still counts
    # as a backend of the database; without the machine's total, "other" stays 0.
    start = {(7, 1): (f"{PG} {DB} 127.0.0.1(9) idle", 10)}
    last = {(7, 1): ("", 30), (7, 2): ("/usr/bin/reused-pid", 5)}
    ticks = attribute_cpu(start, last, database=DB)
    assert ticks["postgres"] == 20
    assert ticks["other"] == 0
    assert sum(ticks.values()) == 20


def test_database_name_from_url() -> None:
    assert database_name("postgresql://postgres@127.0.0.1:5432/cd_bench_x") == "cd_bench_x"
    assert database_name("postgresql://u@h/cd_bench_x_raw?sslmode=disable") == "cd_bench_x_raw"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sampler_sees_this_process() -> None:
    snap = process_snapshot()
    mine = [key for key in snap if key[0] == os.getpid()]  # type: ignore[index]
    assert len(mine) == 1
    assert "python" in snap[mine[0]][0] or "pytest" in snap[mine[0]][0]
    with CpuSampler(DB, server_pid=os.getpid(), interval=0.05) as sampler:
        sum(i * i for i in range(200_000))
    report = sampler.report(calls=1)
    assert set(report["cpu_ms_per_call"]) == set(CPU_GROUPS)
    # This process is the "server" here (its pid comes before the client's).
    assert report["cpu_ms_per_call"]["client"] == 0
    assert report["cpus"] == os.cpu_count()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_snapshot_rereads_only_titles_postgres_may_change() -> None:
    key = next(k for k in process_snapshot() if k[0] == os.getpid())  # type: ignore[index]
    kept = process_snapshot({key: ("/usr/bin/kept-from-before", 0)})
    assert kept[key][0] == "/usr/bin/kept-from-before"
    reread = process_snapshot({key: ("postgres: 15/main: postgres db [local] idle", 0)})
    assert reread[key][0] != "postgres: 15/main: postgres db [local] idle"
    assert reread[key][1] >= 0
