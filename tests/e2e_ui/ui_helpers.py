"""Helpers shared by the UI tests (a uniquely named module: `conftest` is ambiguous)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _e2e_helpers() -> Any:
    """tests/e2e/conftest.py (start_server, stop_server, wait_for, SECRET) under a name of its
    own: several conftest modules cannot share the name `conftest`."""
    name = "cd_e2e_server_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "e2e" / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


e2e = _e2e_helpers()
