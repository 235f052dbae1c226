"""Open a listening TCP socket inside another process's network namespace.

A thread of ours enters the namespace (`setns`, which moves only the calling thread), binds
127.0.0.1:PORT there and ends; the socket stays in that namespace and the gate accepts on it
from the host side. Nothing of ours runs inside the sandbox, so nothing there can be killed,
replaced or read.

Entering a network namespace takes CAP_SYS_ADMIN both over it and in one's own user namespace:
root has both. An unprivileged caller owns the embedded backend's user namespaces, so a short
helper process (`HELPER`) first enters the user namespace that owns the sandbox's network
namespace (found with the NS_GET_USERNS ioctl; there it holds every capability), then the network
namespace, binds there and hands the socket back over a Unix socket (SCM_RIGHTS). It is a process,
not a thread, because only a single-threaded process may change its user namespace. Docker and
Podman containers belong to root; without root they refuse.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys
import threading
import time

from llm_sandbox.exceptions import ControlUnavailableError

CLONE_NEWNET = 0x40000000
BIND_RETRY = 2.0
"""Seconds to wait for the namespace's loopback to come up (bubblewrap raises it just after
reporting the sandbox's pid)."""


def _setns(fd: int, kind: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace `fd` (and close it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        if libc.setns(fd, kind) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        os.close(fd)


def _bind_loopback(port: int) -> socket.socket:
    """Listen on 127.0.0.1:`port` in the calling thread's network namespace."""
    deadline = time.monotonic() + BIND_RETRY
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRNOTAVAIL or time.monotonic() > deadline:
                raise
            time.sleep(0.002)
            continue
        return sock


HELPER = r"""
import ctypes, os, socket, sys, time
pid, port, channel = (int(a) for a in sys.argv[1:4])
import fcntl
libc = ctypes.CDLL(None, use_errno=True)
net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
owner = fcntl.ioctl(net, 0xB701)  # NS_GET_USERNS: the user namespace owning that network one
for fd, kind in ((owner, 0x10000000), (net, 0x40000000)):  # single-threaded: may enter both
    if libc.setns(fd, kind) != 0:
        sys.exit(f"setns {kind:#x}: " + os.strerror(ctypes.get_errno()))
    os.close(fd)
for _ in range(1000):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
        break
    except OSError:  # loopback not up yet
        listener.close()
        time.sleep(0.002)
listener.listen(128)
socket.send_fds(socket.socket(fileno=channel), [b"s"], [listener.fileno()])
"""
"""The helper's program: stdlib only, so it starts fast (`python -S -I`)."""


def _listen_through_helper(pid: int, port: int) -> socket.socket:
    ours, theirs = socket.socketpair()
    try:
        done = subprocess.run(
            [sys.executable, "-S", "-I", "-c", HELPER, str(pid), str(port), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env={},
            capture_output=True,
            timeout=30,
            check=False,
        )
        theirs.close()
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()
            raise OSError(detail[-1] if detail else f"helper exit {done.returncode}")
        _, fds, _, _ = socket.recv_fds(ours, 16, 1)
        if not fds:
            raise OSError("the helper sent no socket")
        return socket.socket(fileno=fds[0])
    finally:
        ours.close()
        theirs.close()


def listen_in(pid: int, port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:`port` in the network namespace of process `pid`."""
    try:
        return _listen_in_thread(pid, port)
    except PermissionError as denied:
        if os.geteuid() == 0:
            raise _unavailable(denied) from denied
        try:
            return _listen_through_helper(pid, port)
        except (OSError, subprocess.SubprocessError) as exc:
            raise _unavailable(exc) from exc
    except OSError as exc:
        raise _unavailable(exc) from exc


def _listen_in_thread(pid: int, port: int) -> socket.socket:
    result: dict[str, object] = {}

    def enter_and_bind() -> None:
        try:
            _setns(os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC))
            result["socket"] = _bind_loopback(port)
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=enter_and_bind, name="llm-sandbox-gate-netns")
    thread.start()
    thread.join()
    error = result.get("error")
    if isinstance(error, BaseException):
        raise error
    sock = result["socket"]
    assert isinstance(sock, socket.socket)
    return sock


def _unavailable(error: BaseException) -> ControlUnavailableError:
    return ControlUnavailableError(
        f"cannot open the egress gate inside the sandbox's network namespace ({error}); "
        "egress policies, and installs in sessions without network=True, need this process "
        "to be allowed to enter it (root for Docker and Podman containers). Run as root, or "
        "open the session with network=True (runs and installs then have the whole network)"
    )
