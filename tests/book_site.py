"""Helpers shared by the tests of the built book: the pages of ``_toc.yml``, a local web server,
and pytest fixtures for a headless chromium and loopback-only sockets.

A test module imports what it needs (``from book_site import browser, loopback_only``: pytest
finds a fixture by its name in the module) and keeps its own ``site`` fixture, because whether a
missing build is skipped or built differs between modules.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_socket

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def toc_files(toc: dict) -> list[str]:
    """Every ``file`` (and the ``root``) of a jupyter-book ``_toc.yml``, in reading order."""
    found = [toc["root"]] if "root" in toc else []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key, []))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # keep the test output readable
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless chromium driven by Playwright (Debian's /usr/bin/chromium, no download)."""
    from playwright import sync_api  # the importing module has already skipped without it

    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture
def loopback_only() -> None:
    """Allow sockets to 127.0.0.1 only, for the server thread (the conftest blocks them all)."""
    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(["127.0.0.1"], allow_unix_socket=True)
