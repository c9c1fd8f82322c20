"""Fault drills: the `drill` marker (the short drill inside `make test`; `make drill` runs the
full one through infra/drill/drill.py)."""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "drill: fault drill against the real services (restarts them; minutes)"
    )
