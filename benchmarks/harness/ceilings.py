"""The machine's ceilings: sha256, write + fsync, and the upload and download paths with no
HTTP, measured in the same rounds as the registries."""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.common import MiB

_SENDER = r"""
import os, socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
data = os.urandom(1 << 20) * (size >> 20)
s = socket.create_connection(("127.0.0.1", port))
s.recv(1)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
s.recv(1)
"""

_FILE_SENDER = r"""
import os, socket, sys
port, path = int(sys.argv[1]), sys.argv[2]
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
s = socket.create_connection(("127.0.0.1", port))
s.recv(1)
offset = 0
while offset < size:
    offset += os.sendfile(s.fileno(), fd, offset, size - offset)
s.shutdown(socket.SHUT_WR)
s.recv(1)
"""

# The download client's (and the download ceiling's) receive buffer.
SINK = 1 * MiB


def warm_free_memory(size: int = 1024 * MiB) -> None:
    """Touch and free `size` bytes of memory, so that the next writes into the page cache
    find pages the machine really has. On a VM with free page reporting (as here) the
    guest hands freed pages back to the host after a few seconds, and the first write into
    each costs a fault in the host: a 256 MiB upload then runs at ~270 MiB/s where it runs
    at ~750 into warm pages, whichever program writes. Called before each timed upload
    (each registry's and the ceiling's), so that none of them pays for it by chance."""
    m = mmap.mmap(-1, size)
    try:
        for offset in range(0, size, mmap.PAGESIZE):
            m[offset] = 1
    finally:
        m.close()


def ceiling_sha256(buf: memoryview) -> float:
    start = time.perf_counter()
    hashlib.sha256(buf).digest()
    return len(buf) / MiB / (time.perf_counter() - start)


def ceiling_write_fsync(buf: memoryview, directory: Path) -> float:
    path = directory / "ceiling-write"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        start = time.perf_counter()
        for offset in range(0, len(buf), MiB):
            view = buf[offset : offset + MiB]
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
        seconds = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    return len(buf) / MiB / seconds


def _upload_path_once(size: int, directory: Path, batch: int) -> float:
    path = directory / "ceiling-upload"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        sender = subprocess.Popen([sys.executable, "-c", _SENDER, str(port), str(size)])
        try:
            conn, _ = listener.accept()
            with conn:
                # A few batches in flight: large ones fall out of the CPU caches between
                # the receive, the hash and the write, and the path gets slower.
                buffers = [bytearray(batch) for _ in range(max(6, (4 * MiB) // batch))]
                work: queue.Queue[memoryview | None] = queue.Queue(maxsize=len(buffers) - 3)

                def consume() -> None:
                    h = hashlib.sha256()
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    try:
                        while (item := work.get()) is not None:
                            h.update(item)
                            view = item
                            while view:
                                view = view[os.write(fd, view) :]
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    h.hexdigest()

                worker = threading.Thread(target=consume)
                worker.start()
                warm_free_memory()
                start = time.perf_counter()
                conn.sendall(b"g")
                received, i = 0, 0
                while True:
                    buf = memoryview(buffers[i % len(buffers)])
                    filled = 0
                    while filled < batch:
                        n = conn.recv_into(buf[filled:])
                        if n == 0:
                            break
                        filled += n
                    if filled:
                        work.put(buf[:filled])
                        received += filled
                        i += 1
                    if filled < batch:
                        break
                work.put(None)
                worker.join()
                seconds = time.perf_counter() - start
                conn.sendall(b"k")
        finally:
            sender.wait(timeout=60)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if received != size:
        raise RuntimeError(f"ceiling upload received {received} of {size} bytes")
    return size / MiB / seconds


def ceiling_upload_path(size: int, directory: Path) -> float:
    """socket -> sha256 -> write -> fsync with no HTTP, pipelined as a server would (one
    thread receives while another hashes and writes), from a sender in another process;
    the better of 256 KiB and 1 MiB batches."""
    return max(_upload_path_once(size, directory, b) for b in (256 * 1024, MiB))


def ceiling_download_path(path: Path) -> float:
    """A file in the page cache, sendfile() to a loopback socket, received into the download
    client's buffer: a download with no HTTP."""
    size = path.stat().st_size
    sink = memoryview(bytearray(SINK))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        sender = subprocess.Popen([sys.executable, "-c", _FILE_SENDER, str(port), str(path)])
        try:
            conn, _ = listener.accept()
            with conn:
                start = time.perf_counter()
                conn.sendall(b"g")
                got = 0
                while n := conn.recv_into(sink):
                    got += n
                seconds = time.perf_counter() - start
                conn.sendall(b"k")
        finally:
            sender.wait(timeout=60)
    if got != size:
        raise RuntimeError(f"ceiling download received {got} of {size} bytes")
    return size / MiB / seconds
