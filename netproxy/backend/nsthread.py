"""Run a Python function inside a network namespace, in a thread of this process.

``setns(CLONE_NEWNET)`` switches only the calling thread, so a short-lived thread enters the
namespace, runs the function and ends; the rest of the process never leaves the host's
namespace. Used by the python-iptables backend, whose libiptc calls use the calling thread's
namespace.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from netproxy.backend import netns
from netproxy.errors import BackendError

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def run_in_netns(name: str, func: Callable[[], T]) -> T:
    """``func()`` evaluated inside namespace ``name``; exceptions are re-raised here."""
    box: dict[str, object] = {}

    def body() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns.path(name), os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise BackendError(f"cannot enter network namespace {name!r}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = func()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=body, name=f"netns-{name}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
