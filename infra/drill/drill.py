#!/usr/bin/env python3
"""`make drill`: the fault drill against the real system (see tests/drills/drill_runner.py and
docs/reliability.md). Arguments go through: `--calls 500 --servers 2 --faults kill,rabbitmq`."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "drills"))
sys.path.insert(0, str(ROOT / "tests"))

from drill_runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
