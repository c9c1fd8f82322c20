"""Fixtures of the network-edge tests: real servers on 127.0.0.1 (see netfixtures.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from netfixtures import ScriptedServer, TlsMaterial, make_tls_material, serve


@pytest.fixture
def http_server() -> Iterator[ScriptedServer]:
    yield from serve(ScriptedServer(), None)


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_server(tls_material: TlsMaterial) -> Iterator[ScriptedServer]:
    yield from serve(ScriptedServer(), tls_material.server_context())


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
