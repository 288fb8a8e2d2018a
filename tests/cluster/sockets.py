"""The TCP ports a tree of processes listens on (``ss``), to check that Ray binds loopback."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

_USER = re.compile(r"pid=(\d+)")


def descendants(roots: set[int]) -> set[int]:
    """``roots`` and every process below them (from /proc's parent pids)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def listening_addresses(pids: set[int]) -> list[str]:
    """Local addresses (host:port) of the TCP sockets these processes listen on."""
    ss = shutil.which("ss")
    assert ss is not None, "the loopback check needs ss (iproute2)"
    out = subprocess.run([ss, "-ltnpH"], capture_output=True, text=True, check=True).stdout
    addresses = []
    for line in out.splitlines():
        owners = {int(p) for p in _USER.findall(line)}
        if owners & pids:
            addresses.append(line.split()[3])
    return addresses
