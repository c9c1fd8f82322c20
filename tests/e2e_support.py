"""tests/e2e/conftest.py's server helpers under a module name of their own: several
conftest.py files exist, so `from conftest import ...` depends on collection order."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "cd_e2e_conftest"


def _load():  # type: ignore[no-untyped-def]
    if _NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            _NAME, Path(__file__).parent / "e2e" / "conftest.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


_e2e = _load()
start_server = _e2e.start_server
stop_server = _e2e.stop_server
wait_for = _e2e.wait_for
