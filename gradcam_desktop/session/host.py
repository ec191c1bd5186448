"""Where the engine runs, seen from the window: a process of its own (``ProcessHost``) or a thread.

``ProcessHost`` starts ``engine_main`` as a new Python process (never a fork of the window: Qt's and,
in tests, TensorFlow's threads do not survive one) with one end of a socket pair; the window keeps
the other end. The window's process never imports TensorFlow, Keras or ONNX Runtime, and an abort,
segfault or out-of-memory kill in a model's code ends only the engine: ``ended()`` then says how.

``ThreadHost`` serves the same engine over the same kind of pipe on a thread of the window's
process: for tests that hand the engine stand-in modules (a slow download, a failing engine),
which cannot cross to another process, and for platforms without inheritable sockets (Windows,
until it is tested there). Both speak the same messages (``transport``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

from gradcam_desktop.session import transport

__all__ = ["EngineHost", "ProcessHost", "ThreadHost", "adopt", "describe_exit", "park", "process_supported",
           "reuse_enabled"]

#: Engine processes parked by a closed window for the next one (``park``/``adopt``).
_PARKED: list[ProcessHost] = []


def reuse_enabled() -> bool:
    """``GRADCAM_DESKTOP_REUSE_ENGINE=1``: a closed window parks its engine for the next window of
    the same process. The test suite sets it (dozens of windows, one TensorFlow import); the app,
    which has one window for its life, does not."""
    return os.environ.get("GRADCAM_DESKTOP_REUSE_ENGINE") == "1"


def park(host: ProcessHost) -> None:
    """Keep ``host`` (idle, reset) for the next window; at most one is kept."""
    while _PARKED:
        old = _PARKED.pop()
        old.kill()
        old.close()
    _PARKED.append(host)


def adopt() -> ProcessHost | None:
    """A parked engine that still runs, or None."""
    while _PARKED:
        host = _PARKED.pop()
        if host.ended() is None:
            return host
        host.close()
    return None


def process_supported() -> bool:
    """Whether the engine can run in its own process here (an inheritable socket pair: POSIX)."""
    return os.name == "posix"


class EngineHost:
    """One running engine: its ``connection``, whether it still runs, how it ended, how to end it."""

    connection: Connection
    pid: int | None = None

    def ended(self) -> str | None:
        """None while it runs; else how it ended, in words ("killed by signal 9 (SIGKILL)", …)."""
        raise NotImplementedError

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the engine to end; True if it has."""
        raise NotImplementedError

    def kill(self) -> None:
        """End the engine now (a stuck engine at shutdown)."""
        raise NotImplementedError

    def close(self) -> None:
        try:
            self.connection.close()
        except OSError:
            pass


class ProcessHost(EngineHost):
    """``engine_main`` in a child process; ``options`` go to its ``Engine`` (log_file, cache_entries, …)."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(_command(theirs.fileno(), options or {}), pass_fds=(theirs.fileno(),),
                                            stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
        self.pid = self.process.pid
        self.connection = Connection(ours.detach())

    def ended(self) -> str | None:
        code = self.process.poll()
        return None if code is None else describe_exit(code)

    def wait(self, timeout: float) -> bool:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        super().close()
        if self.process.poll() is not None and self.pid is not None:
            transport.remove_leftovers(self.pid)


class ThreadHost(EngineHost):
    """The engine on a daemon thread of this process, over an in-process pipe."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        from gradcam_desktop.session.engine_main import serve

        self.connection, theirs = Pipe(duplex=True)
        self._thread = threading.Thread(target=serve, args=(theirs, dict(options or {})), name="GradCamEngine",
                                        daemon=True)
        self._thread.start()

    def ended(self) -> str | None:
        return None if self._thread.is_alive() else "stopped"

    def wait(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def kill(self) -> None:
        """A thread cannot be killed: closing its pipe makes it leave after the step it is in."""
        self.close()


def _command(fd: int, options: dict[str, Any]) -> list[str]:
    arguments = [str(fd), json.dumps(options)]
    if getattr(sys, "frozen", False):  # a PyInstaller app: its own executable knows --engine-process
        return [sys.executable, "--engine-process", *arguments]
    return [sys.executable, "-m", "gradcam_desktop.session.engine_main", *arguments]


def describe_exit(code: int) -> str:
    """A process's return code in words: a signal by name (SIGKILL is usually the out-of-memory killer)."""
    if code >= 0:
        return "stopped" if code == 0 else f"exited with code {code}"
    number = -code
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    what = {"SIGKILL": "was killed (SIGKILL — out of memory, or ended by the system)",
            "SIGSEGV": "crashed (segmentation fault)", "SIGABRT": "aborted (SIGABRT)",
            "SIGBUS": "crashed (bus error)", "SIGFPE": "crashed (arithmetic fault)",
            "SIGILL": "crashed (illegal instruction)", "SIGTERM": "was terminated (SIGTERM)"}
    return what.get(name, f"was ended by {name}")
