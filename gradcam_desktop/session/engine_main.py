"""The engine's side of the connection: ``serve`` an ``Engine`` over a pipe, and the engine process's entry.

``python -m gradcam_desktop.session.engine_main FD OPTIONS_JSON`` (``host.ProcessHost`` starts it;
a frozen app runs its own executable with ``--engine-process FD OPTIONS_JSON``) wraps the inherited
socket ``FD`` as a connection and serves an engine on it until the window says Shutdown or goes away.

Two threads: a reader that takes messages off the pipe at once (so "cancel the download" and
"stop" act while a model loads, and the window's writes never wait for a busy engine), and the
engine's loop, which answers through ``transport.send``.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from gradcam_desktop.session import transport

__all__ = ["CancelDownload", "StopEngine", "main", "serve"]

log = logging.getLogger(__name__)


class CancelDownload:
    """Control message: stop a zoo download now (handled by the reader, not queued)."""


class StopEngine:
    """Control message: leave the loop soon; a step in progress finishes, jobs wind up."""


def serve(connection: Connection, engine_options: dict[str, Any], *, exit_when_orphaned: bool = False) -> None:
    """Run an ``Engine`` whose requests come from ``connection`` and whose events go back on it.

    ``exit_when_orphaned``: when the window's end of the pipe closes without a StopEngine (the window
    crashed), the process ends at once instead of finishing what it was computing for nobody.
    """
    from gradcam_desktop.session.engine import CachedKeys, Engine, Reset

    lock = threading.Lock()

    def emit(name: str, *args: Any) -> None:
        with lock:
            try:
                transport.send(connection, (name, args))
            except (OSError, EOFError):
                log.debug("window gone; dropped %s", name)

    engine = Engine(emit, **engine_options)

    def read() -> None:
        while True:
            try:
                message = transport.receive(connection)
            except (EOFError, OSError):
                if exit_when_orphaned and not engine.stopping.is_set():
                    os._exit(0)
                engine.stop()
                return
            if isinstance(message, CancelDownload):
                engine.cancel_download.set()
            elif isinstance(message, StopEngine):
                engine.stop()
            elif isinstance(message, CachedKeys):  # answered here: a diagnostic must not delay background work
                engine.answer_cached_keys(message)
            elif isinstance(message, Reset):  # the window closed: what it queued is for nobody
                engine.flush_before = max(engine.flush_before, message.id)
                engine.inbox.put(message)
                engine.flush.set()
            else:
                engine.inbox.put(message)

    threading.Thread(target=read, name="engine-reader", daemon=True).start()
    try:
        engine.run()
    finally:
        with lock:
            _hang_up(connection)


def _hang_up(connection: Connection) -> None:
    """Close ``connection`` so that the other end sees the end now. A plain close would not do it
    while the reader thread is blocked in recv on the same socket (the blocked call keeps it open)."""
    try:
        duplicate = socket.fromfd(connection.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
        duplicate.shutdown(socket.SHUT_RDWR)
        duplicate.close()
    except OSError:
        pass
    connection.close()


def main(argv: list[str] | None = None) -> int:  # noqa: RET503 - leaves through os._exit
    """The engine process: ``FD OPTIONS_JSON`` (options: "log_file", "cache_entries", "precompute")."""
    args = sys.argv[1:] if argv is None else argv
    fd, options = int(args[0]), json.loads(args[1]) if len(args) > 1 else {}
    log_file = options.pop("log_file", None)
    _setup_logging(log_file)
    hint = f"; see the log at {log_file}" if log_file else ""
    connection = Connection(fd)
    serve(connection, {"log_hint": hint, **options}, exit_when_orphaned=True)
    # Every file the engine writes is complete by now (atomic writes). A normal interpreter exit
    # would wait on TensorFlow's thread pools and finalizers for many seconds: leave at once.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _setup_logging(path: str | None) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not path:
        logging.basicConfig(level=logging.WARNING)
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=2,
                                                                        encoding="utf-8")
    except OSError:
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s engine %(threadName)s %(name)s: %(message)s"))
    root.addHandler(handler)


if __name__ == "__main__":
    # Run as the importable module, not as __main__: the window pickles CancelDownload/StopEngine
    # under this module's real name, and isinstance must see the same classes.
    from gradcam_desktop.session import engine_main

    engine_main.main()
