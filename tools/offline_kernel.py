"""Take the network away from a Jupyter kernel: only loopback and Unix sockets stay usable.

An IPython kernel runs the file named by the environment variable ``PYTHONSTARTUP`` before the
first cell (IPython's ``exec_PYTHONSTARTUP``, on by default); nothing else reads it, since only
interactive interpreters do. ``make test-notebooks`` sets it to this file for nbval's kernels,
so a notebook that reaches for the internet (weights from a hub, a data download) fails there as
it would on an offline machine, instead of passing only where the network happens to be up.
Kernels started any other way (JupyterLab, Colab, ``make execute``) never see this file.

What it does, in the kernel only: ``socket.socket.connect``, ``connect_ex``, ``sendto`` and
``sendmsg`` refuse addresses that are not loopback (127.0.0.0/8, ::1, ``localhost``) with
``NetworkBlockedError``, a ``ConnectionError`` (so code that handles an offline machine
gracefully still does), and ``socket.getaddrinfo`` refuses to look up other host names with
``socket.gaierror``, as a machine without DNS does, instead of waiting for a timeout. The
kernel's own ZMQ channels do not use Python's socket module and are unaffected.
``socket._tlf_offline`` is set to True so that a test can see the guard is on.

Usage::

    PYTHONSTARTUP=$PWD/tools/offline_kernel.py pytest --nbval notebooks/01_....ipynb
"""


def _tlf_block_network() -> None:
    """Patch the socket module of this process (idempotent); define no names elsewhere."""
    import ipaddress
    import socket

    if getattr(socket, "_tlf_offline", False):
        return

    class NetworkBlockedError(ConnectionError):
        """A connection to a non-loopback address, refused by tools/offline_kernel.py."""

    def is_local(host: object) -> bool:
        if host is None or not isinstance(host, (str, bytes)):
            return host is None
        host = host.decode() if isinstance(host, bytes) else host
        host = host.split("%", 1)[0]  # an IPv6 zone index
        if host in ("", "localhost", "localhost.localdomain", "ip6-localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def allowed(sock: socket.socket, address: object) -> bool:
        if getattr(socket, "AF_UNIX", None) is not None and sock.family == socket.AF_UNIX:
            return True
        return is_local(address[0] if isinstance(address, tuple) and address else None)

    def blocked(address: object) -> NetworkBlockedError:
        return NetworkBlockedError(
            f"Network access to {address!r} is blocked: this kernel runs offline (tools/"
            "offline_kernel.py, set by make test-notebooks). Only loopback addresses work.")

    true_connect, true_connect_ex = socket.socket.connect, socket.socket.connect_ex
    true_sendto, true_sendmsg = socket.socket.sendto, socket.socket.sendmsg
    true_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if not allowed(self, address):
            raise blocked(address)
        return true_connect(self, address)

    def connect_ex(self, address):
        if not allowed(self, address):
            raise blocked(address)
        return true_connect_ex(self, address)

    def sendto(self, data, *args):
        if not allowed(self, args[-1]):
            raise blocked(args[-1])
        return true_sendto(self, data, *args)

    def sendmsg(self, buffers, ancdata=(), flags=0, address=None):
        if address is not None and not allowed(self, address):
            raise blocked(address)
        if address is None:
            return true_sendmsg(self, buffers, ancdata, flags)
        return true_sendmsg(self, buffers, ancdata, flags, address)

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not is_local(name):
            try:
                ipaddress.ip_address(str(name).split("%", 1)[0])  # a literal address: no lookup
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, f"Looking up {name!r} is blocked: this "
                                      "kernel runs offline (tools/offline_kernel.py).") from None
        return true_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.socket.sendto, socket.socket.sendmsg = sendto, sendmsg
    socket.getaddrinfo = getaddrinfo
    socket.NetworkBlockedError = NetworkBlockedError
    socket._tlf_offline = True


try:
    _tlf_block_network()
finally:
    del _tlf_block_network
