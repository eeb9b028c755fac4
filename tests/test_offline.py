"""The notebooks run offline under nbval: tools/offline_kernel.py takes the network away.

``make test-notebooks`` sets ``PYTHONSTARTUP`` to tools/offline_kernel.py, which every IPython
kernel runs before the first cell. These tests start real kernels (nbclient) on tiny notebooks:
with the variable set, a connection to a public address and a DNS lookup fail at once while
loopback still works; without it, the kernel is a normal one. The unit tests themselves are kept
offline by pytest-socket (tests/conftest.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import pytest_socket

ROOT = Path(__file__).resolve().parents[1]
GUARD = ROOT / "tools" / "offline_kernel.py"

pytest.importorskip("nbclient")


@pytest.fixture
def loopback_only() -> None:
    """Let this process open loopback sockets, which jupyter_client needs to start a kernel."""
    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(["127.0.0.1", "::1"], allow_unix_socket=True)


def _run(cells: list[str], monkeypatch, guarded: bool) -> list[str]:
    """Execute ``cells`` in a fresh python3 kernel; return each cell's stdout or 'ename: evalue'."""
    from nbclient import NotebookClient

    if guarded:
        monkeypatch.setenv("PYTHONSTARTUP", str(GUARD))
    else:
        monkeypatch.delenv("PYTHONSTARTUP", raising=False)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=60, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    results = []
    for cell in notebook.cells:
        texts = [output.get("text", "") if output.output_type == "stream" else
                 f"{output.ename}: {output.evalue}" for output in cell.outputs
                 if output.output_type in ("stream", "error")]
        results.append("".join(texts).strip())
    return results


PROBES = [
    "import socket, time\n"
    "start = time.perf_counter()\n"
    "try:\n"
    "    socket.create_connection(('192.0.2.1', 443), timeout=10)\n"
    "except OSError as error:\n"
    "    print(type(error).__name__, error, time.perf_counter() - start < 2)",
    "try:\n"
    "    socket.getaddrinfo('huggingface.co', 443)\n"
    "except socket.gaierror as error:\n"
    "    print('gaierror', error)",
    "server = socket.create_server(('127.0.0.1', 0))\n"
    "client = socket.create_connection(server.getsockname(), timeout=5)\n"
    "peer, _ = server.accept()\n"
    "client.sendall(b'ping')\n"
    "print('loopback', peer.recv(4))\n"
    "for s in (client, peer, server):\n"
    "    s.close()",
    "print(getattr(socket, '_tlf_offline', False), '_tlf_block_network' in globals())",
    "import urllib.request\n"
    "urllib.request.urlopen('https://huggingface.co', timeout=10)",
]


def test_the_offline_kernel_blocks_the_network_but_not_loopback(loopback_only, monkeypatch):
    """Check that a guarded kernel refuses a public address and a DNS lookup, fast."""
    connect, lookup, loopback, flag, urlopen = _run(PROBES, monkeypatch, guarded=True)
    assert re.fullmatch(r"NetworkBlockedError Network access to \('192.0.2.1', 443\) is blocked: "
                        r"this kernel runs offline .* True", connect), connect
    assert lookup.startswith("gaierror") and "'huggingface.co' is blocked" in lookup, lookup
    assert loopback == "loopback b'ping'"
    assert flag == "True False"  # the guard is on and left no name in the notebook's namespace
    assert urlopen.startswith("URLError: <urlopen error") and "is blocked" in urlopen, urlopen


def test_a_normal_kernel_is_not_affected(loopback_only, monkeypatch):
    """Check that without PYTHONSTARTUP the kernel's socket module is the original one."""
    (flag,) = _run(["import socket\nprint(getattr(socket, '_tlf_offline', False), "
                    "socket.socket.connect is socket._socket.socket.connect)"],
                   monkeypatch, guarded=False)
    assert flag == "False True"


def test_make_test_notebooks_runs_the_kernels_offline():
    """Check that the Makefile's nbval run sets PYTHONSTARTUP to the guard."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ntest-notebooks:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"PYTHONSTARTUP=\$\(CURDIR\)/tools/offline_kernel\.py \$\(BIN\)/pytest --nbval",
                     recipe), recipe
