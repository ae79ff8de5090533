"""Which TCP sockets a process tree listens on, read from /proc (Linux).

``/proc/net/tcp`` and ``/proc/net/tcp6`` list every socket of the network
namespace with its state and inode; ``/proc/<pid>/fd`` links a process to
the inodes it holds. Together they say what this test run (or a child it
started) listens on, without ``ss`` and without other people's sockets.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    """One listening socket: its address, port and inode."""

    host: str
    port: int
    inode: int

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _decode(hex_address: str, family: int) -> tuple[str, int]:
    address, port = hex_address.split(":")
    raw = bytes.fromhex(address)
    if family == socket.AF_INET:
        host = socket.inet_ntop(socket.AF_INET, struct.pack("<I", struct.unpack(">I", raw)[0]))
    else:
        # Four 32-bit words, each in the host's byte order.
        words = struct.unpack("<4I", raw)
        host = socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))
        mapped = ipaddress.IPv6Address(host).ipv4_mapped
        if mapped is not None:
            host = str(mapped)
    return host, int(port, 16)


def all_listeners() -> list[Listener]:
    """Every listening TCP socket of this network namespace."""
    out = []
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != _LISTEN:
                continue
            host, port = _decode(fields[1], family)
            out.append(Listener(host, port, int(fields[9])))
    return out


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found += [int(child) for child in text.split()]
    return found


def process_tree(root: int | None = None) -> set[int]:
    """``root`` (this process by default) and every process below it."""
    todo = [os.getpid() if root is None else root]
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo += _children(pid)
    return seen


def socket_inodes(pids: set[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(int(target[8:-1]))
    return inodes


def listeners_of(pids: set[int] | None = None) -> set[Listener]:
    """The listening sockets held by ``pids`` (this process tree by default)."""
    inodes = socket_inodes(process_tree() if pids is None else pids)
    return {listener for listener in all_listeners() if listener.inode in inodes}
