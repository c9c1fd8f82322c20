"""Fault-injection points for the reliability drills (tests/drills, `make drill`).

Code that wants to prove it survives a crash at a precise moment calls `point("name")` there.
A point does nothing (one cached dictionary look-up) unless the environment names it:

    CD_FAULT_POINTS="relay.after_publish_before_mark:0.05,dispatcher.after_work_before_ack:@3-20"

- `name:P` crashes on each hit with probability P (0..1);
- `name:@N` crashes on the Nth hit in this process, `name:@A-B` on a hit drawn between A and B.

A crash is a SIGKILL the process sends itself: no `finally`, no `atexit`, no buffered write,
no transaction commit — what a power cut or the OOM killer does at that line. Before dying it
appends `<unix time> <pid> <name>` to the file named by CD_FAULT_LOG (if set), so a drill can
count the crashes it caused. CD_FAULT_SEED makes the draws repeatable (mixed with the pid).

Nothing is read at import time: the environment is parsed at the first hit.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass

ENV_POINTS = "CD_FAULT_POINTS"
ENV_LOG = "CD_FAULT_LOG"
ENV_SEED = "CD_FAULT_SEED"

# Every point placed in the product, so a drill can check its configuration names real ones.
KNOWN_POINTS = frozenset(
    {
        "ingest.after_commit_before_answer",
        "relay.before_publish",
        "relay.after_publish_before_mark",
        "dispatcher.before_work",
        "dispatcher.after_work_before_ack",
        "analyze.after_probe_before_commit",
        "call_ai.after_answer_before_store",
        "deliver.after_post_before_record",
    }
)


class FaultConfigError(ValueError):
    """CD_FAULT_POINTS is not in the documented form."""


@dataclass
class _Rule:
    probability: float = 0.0
    at_hit: int | None = None
    hits: int = 0


_lock = threading.Lock()
_rules: dict[str, _Rule] | None = None
_rng: random.Random | None = None


def parse(spec: str, rng: random.Random | None = None) -> dict[str, _Rule]:
    """Parse a CD_FAULT_POINTS value; raises FaultConfigError on anything unclear."""
    rng = rng or random.Random()
    rules: dict[str, _Rule] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, value = item.rpartition(":")
        if not sep or not name or not value:
            raise FaultConfigError(f"fault point {item!r} is not 'name:probability' or 'name:@N'")
        try:
            if value.startswith("@"):
                low, _, high = value[1:].partition("-")
                a, b = int(low), int(high or low)
                if a < 1 or b < a:
                    raise ValueError
                rules[name] = _Rule(at_hit=rng.randint(a, b))
            else:
                p = float(value)
                if not 0.0 <= p <= 1.0:
                    raise ValueError
                rules[name] = _Rule(probability=p)
        except ValueError:
            raise FaultConfigError(
                f"fault point {item!r}: use a probability in [0, 1], @N or @A-B (A >= 1)"
            ) from None
    return rules


def _load() -> dict[str, _Rule]:
    global _rules, _rng
    with _lock:
        if _rules is None:
            seed = os.environ.get(ENV_SEED)
            _rng = random.Random(f"{seed}:{os.getpid()}" if seed else None)
            _rules = parse(os.environ.get(ENV_POINTS, ""), _rng)
        return _rules


def reset() -> None:
    """Forget the parsed configuration (tests change the environment)."""
    global _rules, _rng
    with _lock:
        _rules, _rng = None, None


def point(name: str) -> None:
    """Crash here (SIGKILL) when CD_FAULT_POINTS says so; otherwise return at once."""
    rules = _rules if _rules is not None else _load()
    if not rules:
        return
    rule = rules.get(name)
    if rule is None:
        return
    with _lock:
        rule.hits += 1
        if rule.at_hit is not None:
            fire = rule.hits == rule.at_hit
        else:
            assert _rng is not None
            fire = _rng.random() < rule.probability
    if fire:
        crash(name)


def crash(name: str) -> None:
    """Record the crash, then die the way SIGKILL kills (no cleanup of any kind)."""
    log_path = os.environ.get(ENV_LOG)
    if log_path:
        try:
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{time.time():.3f} {os.getpid()} {name}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass  # the crash matters more than its record
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)  # not reached; SIGKILL cannot be caught
