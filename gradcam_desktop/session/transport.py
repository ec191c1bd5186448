"""Messages between the window's process and the engine's: pickled, large arrays beside the pipe.

A message is pickled with protocol 5; every array buffer of at least ``LARGE`` bytes (a map, a
thumbnail strip's pixels) is taken out of band and written to a file in shared memory
(``/dev/shm``, a RAM file system; the temporary folder where there is none), and the pipe carries
only the small pickle and the file names. The reader reads each file once into its own
memory and deletes it. So a 4 MB map crosses the boundary as one copy in and one copy out, not
pushed through a 64 KB socket buffer in pieces while both processes take turns.

Files are named ``gradcam-<pid of the writer>-<n>``: when an engine dies between writing a
file and the window reading it, ``remove_leftovers(pid)`` deletes what it left.
"""

from __future__ import annotations

import itertools
import os
import pickle
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = ["FOLDER", "LARGE", "receive", "remove_leftovers", "send"]

#: Buffers of at least this many bytes cross in a shared-memory file instead of the pipe.
LARGE = 64 * 1024

_counter = itertools.count()


def _folder() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


FOLDER = _folder()


def send(connection: Connection, message: Any) -> None:
    """Pickle ``message`` onto ``connection``; large buffers go through shared-memory files."""
    files: list[str] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.nbytes < LARGE:
            return True  # in band: small buffers are cheaper in the pickle itself
        path = FOLDER / f"gradcam-{os.getpid()}-{next(_counter)}"
        with open(path, "wb") as handle:
            handle.write(view)
        files.append(str(path))
        return False

    try:
        data = pickle.dumps(message, protocol=5, buffer_callback=out_of_band)
        connection.send_bytes(pickle.dumps((data, files), protocol=5))
    except BaseException:
        for name in files:
            Path(name).unlink(missing_ok=True)
        raise


def receive(connection: Connection) -> Any:
    """The next message on ``connection`` (EOFError when the other side is gone)."""
    data, files = pickle.loads(connection.recv_bytes())
    buffers = []
    try:
        for name in files:
            with open(name, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                buffer = bytearray(size)
                handle.readinto(buffer)
            buffers.append(buffer)
    finally:
        for name in files:
            Path(name).unlink(missing_ok=True)
    return pickle.loads(data, buffers=buffers)


def remove_leftovers(pid: int) -> int:
    """Delete the files a dead writer ``pid`` left behind; how many there were."""
    removed = 0
    for path in FOLDER.glob(f"gradcam-{int(pid)}-*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed
