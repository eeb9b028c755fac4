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
import torch


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


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    """Run the tests on one thread: tiny tensors gain nothing from more, and on a busy machine
    OpenMP threads waiting on each other make them up to 10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def fresh_feature_cache(tmp_path, monkeypatch) -> Iterator[None]:
    """An empty in-memory feature cache and a disk cache in the test's own tmp folder."""
    from companion import features

    monkeypatch.setenv("COMPANION_CACHE_DIR", str(tmp_path))
    features.clear_feature_cache()
    yield
    features.clear_feature_cache()
