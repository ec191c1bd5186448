"""Folders beyond one machine: ``gradcam triage|patterns --ray`` on Ray Data (issue 19, docs/SCALING.md).

The local loops (core/triage.py's ``triage``, core/folder_patterns.py's ``PatternsRun``) run on
one machine. With ``--ray`` the same steps run on an actor pool of a Ray cluster, or of a local
Ray instance this process starts::

    driver (this process)                      Ray workers: an actor per CPU (CPUS_PER_ACTOR)
    read_labels, the model opened once   →     each actor opens the model itself, once
    (class names, checks, mistake maps)        (WorkerModel.open: load_model does every check)
    groups of pictures → ray.data.from_items   per group: read + decode + predict (triage_batch)
                                               and, for patterns, the maps (map_group)
    rows streamed back (iter_batches)    ←     one row a picture: numbers, the 32 × 32 grid
    sorted by index → the local rows / Analysis

A Ray row is one *group*: the pictures one step of the local loop takes (``BATCH`` for triage,
``GROUP`` for patterns), so every actor makes exactly the local run's forward passes and batched
maps, and the rows and files are the local run's (up to the last bits of floats computed in
another process). The pictures are read by the workers, from the paths of the labels: on a
cluster they must be readable on every node (a shared file system); relative paths mean the
driver's folder on this machine (each actor works in it when it exists).

Each actor reserves ``CPUS_PER_ACTOR`` CPU and runs TensorFlow with that many threads: as many
actors as CPUs, each one thread, instead of every actor spawning a thread per core.

Ray prints a lot; the commands promise one line per message. ``connected`` starts Ray with its
logs in its session folder, Ray Data without progress bars and console logs, and native stderr
(file descriptor 2: Ray's C++ core prints warnings there) pointed at /dev/null while Ray runs —
Python's ``sys.stderr`` keeps writing to the terminal. ``quiet=False`` (``--debug``) leaves all
of it alone.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import cams, patterns
from .errors import GradCamError
from .folder_patterns import GROUP, Analysis, Mapped, cluster_analysis, map_group
from .inside_share import Box
from .triage import BATCH, LabelledPicture, TriageRow, triage_batch

__all__ = ["CPUS_PER_ACTOR", "LOCAL", "RAY_MISSING", "ClusterError", "Piece", "WorkerModel", "analysis", "check",
           "connected", "map_folder", "triage_rows"]

#: ``--ray`` without an address: start a local Ray instance (Ray's own word for it).
LOCAL = "local"
#: CPUs each actor reserves, and TensorFlow's threads in it.
CPUS_PER_ACTOR = 1
#: Pictures a Ray block holds at most (whole groups): the unit of work an actor takes and of the progress bar.
PICTURES_PER_BLOCK = 256
#: Blocks per actor at least, when the folder allows: a small folder is shared by every actor too.
BLOCKS_PER_ACTOR = 4
#: Seconds to wait for an address to answer before saying it does not (Ray itself retries for minutes).
CONNECT_TIMEOUT = 5.0
RAY_MISSING = '--ray needs Ray Data: pip install "gradcam-desktop[ray]".'
_ADDRESS_FORMS = ("give host:port (the head's GCS port, 6379 unless changed), auto (the cluster this machine "
                  "belongs to), or no address for a local Ray instance")
#: Columns of a TriageRow in the rows the actors return (predicted_index −1 = None).
_ROW_COLUMNS = ("image", "true_index", "true_name", "predicted_index", "predicted_name", "probability",
                "true_probability", "correct", "margin", "error")


class ClusterError(GradCamError):
    """Ray Data is missing, the address does not answer, or a worker could not do its part."""


@dataclass(frozen=True)
class WorkerModel:
    """What a worker needs to open the model itself: plain values, pickled to every actor.

    ``output``: --output, the output of a several-output model to explain (None: load_model's default);
    ``cwd``: the driver's folder, where relative model and picture paths start (on this machine).
    """

    model: str
    trust: bool = False
    preprocess: str = "auto"
    custom_objects: str | None = None
    output: str | int | None = None
    cwd: str = field(default_factory=os.getcwd)

    def open(self, threads: int = CPUS_PER_ACTOR) -> Any:
        """``GradCam(load_model(...))`` in this process, TensorFlow limited to ``threads`` threads first.
        The model's checks are load_model's (and --custom-objects' load_for_model's), as on the driver."""
        if os.path.isdir(self.cwd):
            os.chdir(self.cwd)
        _limit_threads(threads)
        from .gradcam import GradCam
        from .models import load_model

        if self.custom_objects:
            from .custom_objects import load_for_model

            load_for_model(self.custom_objects, self.model, trust=self.trust)
        return GradCam(load_model(self.model, trust=self.trust, preprocess=self.preprocess, output=self.output))


def _limit_threads(threads: int) -> None:
    """TensorFlow's and OpenCV's thread pools of this process at ``threads`` (before TensorFlow runs an op)."""
    from .runtime import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow already ran in this process: its pools are fixed, and still work
    import cv2

    cv2.setNumThreads(threads)


# ------------------------------------------------------------------------------------- connecting
def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the extra: ray[data] (pandas, pyarrow)
    except ImportError:
        raise ClusterError(RAY_MISSING) from None
    return ray


def check(address: str) -> None:
    """Before the model opens: Ray Data is installed, and ``address`` has a form Ray takes and answers
    (a TCP connection within CONNECT_TIMEOUT; Ray itself would retry an address that does not answer
    for minutes). ``LOCAL`` and ``auto`` are left to ``ray.init``."""
    _ray()
    if address in (LOCAL, "auto"):
        return
    if address.startswith("ray://"):
        raise ClusterError(f"--ray {address}: Ray Data does not run over Ray Client (ray://). Run gradcam on a node "
                           "of the cluster with --ray auto, or give the head's host:port (docs/SCALING.md).")
    host, colon, port = address.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in address:
        raise ClusterError(f"--ray {address} is not an address Ray takes: {_ADDRESS_FORMS}.")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise ClusterError(f"Cannot reach Ray at {address}: {reason.lower()}. Start the cluster's head with "
                           "`ray start --head` there, or check the address and port.") from None


@contextmanager
def connected(address: str = LOCAL, *, quiet: bool = True) -> Iterator[None]:
    """Ray ready for ``map_folder`` and ``triage_rows`` inside the block: a new local instance
    (``LOCAL``) or the cluster at ``address``, shut down again when the block ends. When this
    process is already connected (a script, the tests), that connection is used, whatever ``address``.
    ``quiet``: Ray's logs stay in its session folder (see the module's docstring)."""
    ray = _ray()
    with _quiet(quiet):
        started = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=not quiet,
                         logging_level=logging.ERROR if quiet else logging.INFO)
            except (ConnectionError, ValueError, RuntimeError, TimeoutError) as error:
                raise ClusterError(f"Cannot connect to Ray at {address}: {_connect_reason(error, address)}") from None
            started = True
        try:
            yield
        finally:
            if started:
                ray.shutdown()


@contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """Ray Data's progress bars and console logs off, file descriptor 2 to /dev/null; ``sys.stderr``
    kept on the terminal (a copy of the descriptor) when it writes to descriptor 2."""
    if not quiet:
        yield
        return
    context = _ray().data.DataContext.get_current()
    bars = context.enable_progress_bars
    context.enable_progress_bars = False
    consoles = [h for h in logging.getLogger("ray.data").handlers if type(h) is not logging.FileHandler
                and isinstance(h, logging.StreamHandler)]
    levels = [h.level for h in consoles]
    for handler in consoles:
        handler.setLevel(logging.CRITICAL + 1)
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        if _descriptor(python_stderr) == 2:
            sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=python_stderr.encoding,
                                   errors=python_stderr.errors)
        yield
    finally:
        if sys.stderr is not python_stderr:
            sys.stderr.close()
            sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)
        for handler, level in zip(consoles, levels):
            handler.setLevel(level)
        context.enable_progress_bars = bars


def _descriptor(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # pytest's capsys, a closed stream
        return None


def _connect_reason(error: BaseException, address: str) -> str:
    """Why ``ray.init`` failed, in one sentence: the cluster's token missing, no cluster for ``auto``, or Ray's words."""
    chain = [error]
    while len(chain) < 10 and (chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
    if any(type(e).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(e) for e in chain):
        return ("the cluster asks for its token. Set RAY_AUTH_MODE=token and put the cluster's token in "
                "~/.ray/auth_token or RAY_AUTH_TOKEN (docs/SCALING.md).")
    if address == "auto" and isinstance(error, ConnectionError):
        return "no Ray cluster runs on this machine. Start one with `ray start --head`, or set RAY_ADDRESS."
    return _last_line(error)


def _last_line(error: BaseException) -> str:
    """The last line of a (Ray: multi-line, traceback-holding) error message that says something."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


# ------------------------------------------------------------------------------------- the actors
def _group_rows(engine: Any, paths: Sequence[str], true_indices: Sequence[int], errors: Sequence[str],
                batch: int) -> list[TriageRow]:
    """The triage rows of one group, as the local ``triage`` makes them: a picture that carries an
    error (a class folder that could not be listed) is its error row; the others go through
    ``triage_batch`` together, in one forward pass of ``batch`` rows (the group is at most that)."""
    readable = [i for i, error in enumerate(errors) if not error]
    computed = iter(triage_batch(engine, [paths[i] for i in readable], [true_indices[i] for i in readable], batch=batch))
    names = engine.class_names
    nan = math.nan
    return [TriageRow(str(path), int(true), names[int(true)], None, "", nan, nan, False, nan, str(error)) if error
            else next(computed) for path, true, error in zip(paths, true_indices, errors)]


def _failed_rows(paths: Sequence[str], true_indices: Sequence[int], failure: str) -> list[TriageRow]:
    nan = math.nan
    return [TriageRow(str(p), int(t), "", None, "", nan, nan, False, nan, failure) for p, t in zip(paths, true_indices)]


def _columns(rows: Sequence[TriageRow], indices: Sequence[int], failure: str) -> dict[str, np.ndarray]:
    """TriageRows as the columns of a Ray batch (``predicted_index`` −1 = None), with each row's
    index in the folder and the worker's ``failure`` (one line; empty when it opened the model)."""
    text = {"image", "true_name", "predicted_name", "error"}
    out: dict[str, np.ndarray] = {"index": np.asarray(indices, np.int64)}
    for name in _ROW_COLUMNS:
        values = [getattr(row, name) for row in rows]
        if name == "predicted_index":
            values = [-1 if v is None else v for v in values]
        out[name] = np.asarray(values, object if name in text else None)
    out["failure"] = np.asarray([failure] * len(rows), object)
    return out


def _row_of(batch: Mapping[str, np.ndarray], k: int) -> TriageRow:
    predicted = int(batch["predicted_index"][k])
    return TriageRow(str(batch["image"][k]), int(batch["true_index"][k]), str(batch["true_name"][k]),
                     None if predicted < 0 else predicted, str(batch["predicted_name"][k]),
                     float(batch["probability"][k]), float(batch["true_probability"][k]), bool(batch["correct"][k]),
                     float(batch["margin"][k]), str(batch["error"][k]))


class _TriageWorker:
    """Ray Data's callable class for triage: one engine per actor, opened in its worker process.
    A model the worker cannot open is not raised (Ray would retry and print tracebacks): every row
    then carries the one line why, and the driver stops with it."""

    def __init__(self, model: WorkerModel, batch: int) -> None:
        self.batch = batch
        self.failure = ""
        self.engine: Any = None
        try:
            self.engine = model.open()
        except GradCamError as error:
            self.failure = f"A Ray worker could not open the model: {error}"

    def rows(self, group: Mapping[str, Any]) -> list[TriageRow]:
        paths, trues = list(group["paths"]), list(group["trues"])
        if self.failure:
            return _failed_rows(paths, trues, self.failure)
        return _group_rows(self.engine, paths, trues, list(group["errors"]), self.batch)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows: list[TriageRow] = []
        indices: list[int] = []
        for k in range(len(batch["start"])):
            group = {name: batch[name][k] for name in ("paths", "trues", "errors")}
            made = self.rows(group)
            rows += made
            indices += range(int(batch["start"][k]), int(batch["start"][k]) + len(made))
        return _columns(rows, indices, self.failure)


class _PatternsWorker(_TriageWorker):
    """Ray Data's callable class for patterns: a group's triage rows, then the maps of the class
    each picture is explained for (``map_group``, as ``PatternsRun.step``), one row a picture with
    its SpRAy grid (zeros when it was not mapped) and, on the group's first row, the lines the
    local run would have said."""

    def __init__(self, model: WorkerModel, batch: int, method: str, layer: str | None, by: str,
                 masks_dir: str | None, boxes: Mapping[str, Sequence[Box]] | None) -> None:
        super().__init__(model, batch)
        self.options: dict[str, Any] = {"method": cams.method(method), "layer": layer, "masks_dir": masks_dir,
                                        "boxes": boxes}
        self.by = by

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows: list[TriageRow] = []
        indices: list[int] = []
        mapped: list[Mapped | None] = []
        notes: list[str] = []
        for k in range(len(batch["start"])):
            group = {name: batch[name][k] for name in ("paths", "trues", "errors")}
            made = self.rows(group)
            lines: list[str] = []
            waiting = []
            for row in made:
                if row.error:
                    lines.append(f"Skipped: {row.error}")
                else:
                    chosen = row.true_index if self.by == "true" else row.predicted_index
                    if chosen is not None:
                        waiting.append((row.image, int(chosen)))
            done: list[Mapped] = []
            if waiting and not self.failure:
                done, _skipped = map_group(self.engine, waiting, say=lines.append, **self.options)
            mapped += _matched(made, done, self.by)
            notes += [json.dumps(lines) if lines else ""] + [""] * (len(made) - 1)
            rows += made
            indices += range(int(batch["start"][k]), int(batch["start"][k]) + len(made))
        out = _columns(rows, indices, self.failure)
        cells = patterns.GRID ** 2
        out["mapped"] = np.asarray([m is not None for m in mapped], bool)
        out["class_index"] = np.asarray([-1 if m is None else m.class_index for m in mapped], np.int64)
        out["share"] = np.asarray([math.nan if m is None else m.share for m in mapped], np.float64)
        out["features"] = np.stack([np.zeros(cells) if m is None else np.asarray(m.features, np.float64).reshape(cells)
                                    for m in mapped]) if mapped else np.zeros((0, cells))
        out["notes"] = np.asarray(notes, object)
        return out


def _matched(rows: Sequence[TriageRow], done: Sequence[Mapped], by: str) -> list[Mapped | None]:
    """Each row's Mapped (None: not mapped). ``done`` is map_group's output: in order, a subsequence
    of the rows that were waiting, so each one goes to the first row left with its path and class."""
    out: list[Mapped | None] = []
    j = 0
    for row in rows:
        chosen = row.true_index if by == "true" else row.predicted_index
        if (not row.error and j < len(done) and done[j].image == row.image and chosen is not None
                and done[j].class_index == chosen):
            out.append(done[j])
            j += 1
        else:
            out.append(None)
    return out


# ------------------------------------------------------------------------------------- the driver
@dataclass
class Piece:
    """One picture back from the workers: its index in the folder, its triage row, what was kept of
    its map (None: not mapped) and the lines to say (on a group's first picture)."""

    index: int
    row: TriageRow
    mapped: Mapped | None = None
    notes: list[str] = field(default_factory=list)


def _groups(pictures: Sequence[LabelledPicture], size: int) -> list[dict[str, Any]]:
    return [{"start": start, "paths": [p.path for p in chunk], "trues": [p.true_index for p in chunk],
             "errors": [p.error for p in chunk]}
            for start in range(0, len(pictures), size) for chunk in [pictures[start:start + size]]]


def _run(pictures: Sequence[LabelledPicture], worker: type, arguments: tuple, size: int,
         actors: int | None) -> Iterator[dict[str, np.ndarray]]:
    """The workers' output batches (one per block of groups, in the order they finish); ClusterError when
    a worker cannot open the model or Ray stops."""
    ray = _ray()
    if not pictures:
        return
    groups = _groups(pictures, size)
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", CPUS_PER_ACTOR) // CPUS_PER_ACTOR))
    per_block = max(1, min(PICTURES_PER_BLOCK // size, math.ceil(len(groups) / (BLOCKS_PER_ACTOR * actors))))
    blocks = math.ceil(len(groups) / per_block)
    dataset = ray.data.from_items(groups, override_num_blocks=blocks)
    out = dataset.map_batches(worker, fn_constructor_args=arguments, batch_size=per_block, batch_format="numpy",
                              compute=ray.data.ActorPoolStrategy(size=min(actors, blocks)), num_cpus=CPUS_PER_ACTOR)
    try:
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            failures = [str(f) for f in batch["failure"] if f]
            if failures:
                raise ClusterError(failures[0])
            yield batch
    except ray.exceptions.RayError as error:
        raise ClusterError(f"Ray stopped: {_last_line(error)}") from None


def triage_rows(pictures: Sequence[LabelledPicture], model: WorkerModel, *, batch: int = BATCH,
                actors: int | None = None) -> Iterator[tuple[int, TriageRow]]:
    """(index in ``pictures``, its TriageRow) of every picture, computed by an actor pool (one actor a
    CPU unless ``actors``), as the actors finish: sort by index for the local ``triage``'s order.
    Inside ``connected``."""
    for out in _run(pictures, _TriageWorker, (model, batch), batch, actors):
        for k in range(len(out["index"])):
            yield int(out["index"][k]), _row_of(out, k)


def map_folder(pictures: Sequence[LabelledPicture], model: WorkerModel, *, method: str, layer: str | None = None,
               by: str = "predicted", masks_dir: str | None = None, boxes: Mapping[str, Sequence[Box]] | None = None,
               group: int = GROUP, actors: int | None = None) -> Iterator[Piece]:
    """Every picture predicted and mapped as ``PatternsRun`` does it, by an actor pool: a ``Piece``
    each, as the actors finish (``analysis`` puts them in order and clusters them). Inside ``connected``."""
    if by not in ("predicted", "true"):
        raise ValueError(f"by must be 'predicted' or 'true', not {by!r}")
    arguments = (model, group, method, layer, by, masks_dir, boxes)
    for out in _run(pictures, _PatternsWorker, arguments, group, actors):
        for k in range(len(out["index"])):
            row = _row_of(out, k)
            mapped = (Mapped(row.image, int(out["class_index"][k]), np.array(out["features"][k], np.float64),
                             float(out["share"][k])) if out["mapped"][k] else None)
            notes = json.loads(str(out["notes"][k])) if out["notes"][k] else []
            yield Piece(int(out["index"][k]), row, mapped, notes)


def analysis(pieces: Sequence[Piece], *, method: cams.Method, names: Sequence[str], total: int, by: str = "predicted",
             clusters: int | None = None, seed: int = 0, interrupted: bool = False) -> Analysis:
    """The ``Analysis`` of ``map_folder``'s pieces: in the folder's order, the local run's triage rows
    and Mapped list, clustered by ``cluster_analysis`` (so ``commands/patterns`` writes the same files)."""
    ordered = sorted(pieces, key=lambda piece: piece.index)
    rows = [piece.row for piece in ordered]
    done = [piece.mapped for piece in ordered if piece.mapped is not None]
    return cluster_analysis(done, method=method, names=names, triage_rows=rows, skipped=len(rows) - len(done),
                            interrupted=interrupted, total=total, by=by, clusters=clusters, seed=seed,
                            view=False)  # the commands show no 2-D view: no t-SNE
