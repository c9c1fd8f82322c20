"""The fault-injection points: inert unless configured, and a real SIGKILL at the named hit."""

from __future__ import annotations

import random
import signal
import subprocess
import sys

import pytest

from call_downloader.testing import faults

SCRIPT = """
from call_downloader.testing import faults
for i in range(1, 50):
    faults.point("other.point")
    faults.point("drill.test")
    print(i, flush=True)
"""


def run(env_points: str, tmp_path) -> tuple[int, list[str], str]:
    log = tmp_path / "faults.log"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={"CD_FAULT_POINTS": env_points, "CD_FAULT_LOG": str(log), "CD_FAULT_SEED": "3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout.split(), log.read_text() if log.exists() else ""


def test_unconfigured_points_do_nothing(tmp_path):
    code, printed, log = run("", tmp_path)
    assert code == 0 and printed[-1] == "49" and log == ""


def test_nth_hit_kills_the_process_with_sigkill_and_logs_it(tmp_path):
    code, printed, log = run("drill.test:@5", tmp_path)
    assert code == -signal.SIGKILL
    assert printed == ["1", "2", "3", "4"]  # died at the 5th hit, before printing 5
    (line,) = log.splitlines()
    assert line.split()[2] == "drill.test"


def test_probability_one_kills_at_first_hit(tmp_path):
    code, printed, _ = run("drill.test:1", tmp_path)
    assert code == -signal.SIGKILL and printed == []


def test_range_draws_a_hit_inside_the_range():
    draws = {faults.parse("p:@3-6", random.Random(seed))["p"].at_hit for seed in range(200)}
    assert draws == {3, 4, 5, 6}


@pytest.mark.parametrize(
    "spec", ["p", "p:", ":0.5", "p:1.5", "p:-0.1", "p:@0", "p:@5-2", "p:@x", "p:abc"]
)
def test_bad_configuration_is_refused_clearly(spec):
    with pytest.raises(faults.FaultConfigError):
        faults.parse(spec)


def test_points_placed_in_the_code_are_the_known_ones():
    import re
    from pathlib import Path

    root = Path(faults.__file__).resolve().parents[1]
    placed = set()
    for path in root.rglob("*.py"):
        placed |= set(re.findall(r'faults\.point\("([^"]+)"\)', path.read_text()))
    assert placed == set(faults.KNOWN_POINTS)
