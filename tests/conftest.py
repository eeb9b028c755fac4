"""Shared pytest setup for the companion's tests: no test may touch the network.

Every test runs with Python sockets blocked by pytest-socket (Unix domain sockets stay usable,
for multiprocessing). A test that tries to download weights or data fails with
``SocketBlockedError`` instead of hanging or passing only where the network happens to be up.

The notebook run (``pytest --nbval notebooks/``) does not load this file: nbval talks to its
kernel over ZMQ on the loopback interface, outside the blocked ``socket`` module.
"""

from collections.abc import Iterator

import pytest
import pytest_socket


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    """Block network sockets for the duration of one test."""
    pytest_socket.disable_socket(allow_unix_socket=True)
    yield
    pytest_socket.enable_socket()


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every dataset and feature cache a test writes out of the user's ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("COMPANION_CACHE_DIR", str(tmp_path_factory.mktemp("companion-cache")))
    yield
    patch.undo()
