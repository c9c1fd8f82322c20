"""Helpers of the probe tests (a uniquely named module, importable from every audio test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from call_downloader.audio import InvalidAudio, probe_file


def tolerance(seconds: float) -> float:
    """The product's bar: within 0.1 s or 0.5 %, whichever is larger."""
    return max(0.1, 0.005 * seconds)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rejected(path: Path) -> str:
    """The reason probe_file gives for refusing `path` (the test fails if it does not)."""
    with pytest.raises(InvalidAudio) as info:
        probe_file(path)
    assert isinstance(info.value.reason, str) and info.value.reason
    return info.value.reason
