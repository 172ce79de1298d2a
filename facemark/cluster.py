"""``facemark detect --ray``: landmarks for millions of images on a Ray cluster (Ray Data).

Ray tasks read the files (local paths, or any URI a pyarrow file system reads: ``s3://``,
``gs://``...), a pool of actors each holding one ``FaceLandmarker`` turns the bytes into result
rows (``batch.rows_for_bytes``: a bad image, or a file that cannot be read, is a row with its
``error``, never a failed job), and the driver writes the rows as Parquet shards
(``facemark.shards.arrow_schema``) in ``out_dir``.

Resumable: a shard is written under a temporary name and renamed, so every ``*.parquet`` in
``out_dir`` is complete; a second run skips the paths those shards hold and names its own shards
with a fresh run id, so they never replace earlier ones.
"""
from __future__ import annotations

import gc
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import DEFAULT_MODEL
from .errors import FacemarkError, UsageError
from .imageio import missing_folders, remove_empty
from .inputs import in_hidden_folder, is_image_name
from .quiet import to_stderr

if TYPE_CHECKING:
    import pyarrow as pa

CRASH_ENV = "FACEMARK_RAY_CRASH"  # tests only: "FLAGFILE:MARKER", see Landmarks._maybe_crash
TASK_RETRIES = 3  # a batch whose actor dies is retried this often, then the run stops (never an endless loop)


class RayRunError(FacemarkError):
    """The Ray job stopped (a batch kept killing its actor, the cluster went away...); every shard
    written before is complete, and the same command resumes."""


def _require_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError('--ray needs Ray: pip install "ray[data]>=2.60,<2.64" "pyarrow>=14" (facemark\'s [ray] extra)') from None
    import logging

    # Ray's own INFO/WARNING lines (start-up, execution plans, progress every 10 s) would bury
    # facemark's; its errors still show.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def _scheme(arg: str) -> str:
    """``s3`` for ``s3://bucket/key``; ``""`` for a local path (``file://`` counts as local)."""
    if "://" not in arg:
        return ""
    scheme = arg.split("://", 1)[0].lower()
    return "" if scheme == "file" else scheme


def _input_list(inputs) -> list[str]:
    """The inputs as strings; ``TypeError`` for one string or path on its own, whose letters would
    each have been an input ('/' among them: the whole disk)."""
    if isinstance(inputs, (str, bytes, os.PathLike)) or not hasattr(inputs, "__iter__"):
        raise TypeError(f"inputs must be a list of files, folders or globs (wrap a single one in a list), "
                        f"not {type(inputs).__name__}")
    return [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else a for a in inputs]


def list_inputs(inputs: list[str], log: Callable[[str], None] = to_stderr,
                unreadable: list[str] | None = None, failed: list | None = None,
                done: set[str] = frozenset(), missing: list[str] | None = None) -> tuple[list[str], str]:
    """Every image the run covers, as the path its row will carry: local files as absolute paths
    (what Ray reports, the same from any working folder), remote ones as full URIs. Also returns
    the inputs' URI scheme (``""`` for local): one run reads from one file system. Local links
    that lead nowhere and files that are not regular files are left out, said, and added to
    ``unreadable``, and as (path, why) to ``failed``: they become rows with their error; except
    those ``done`` already (their good row stays the newest: a run that never tried one must not
    hide its result behind an error)."""
    inputs = _input_list(inputs)
    unreadable = [] if unreadable is None else unreadable
    missing = [] if missing is None else missing  # inputs that gave no image (each said), as without --ray
    schemes = {_scheme(a) for a in inputs}
    if len(schemes) > 1:
        raise UsageError("--ray reads from one file system per run: give local and "
                         f"{'/'.join(sorted(s for s in schemes if s))}:// inputs in separate runs")
    scheme = schemes.pop() if schemes else ""
    if not scheme:
        from .inputs import LeftOut, expand, recorded_path, refuse_when_each_failed, shown_name, utf8_name

        local = [a[len("file://"):] if a.lower().startswith("file://") else a for a in inputs]
        left_out = LeftOut()
        images, problems = expand(local, left_out)
        for line in left_out.notes():  # (as without --ray)
            log(line)
        if not images:
            refuse_when_each_failed(problems, local, log)  # (each reason in one line, as without --ray)
        for m in problems:
            log(f"error: {m}")
        missing += problems  # (an input that gave no image fails the run, as without --ray)
        from .imageio import ImageError, check_regular_file

        for im in images:  # what Ray's listing or reading would fail on, ending the job: said and counted
            if done and recorded_path(im.path) in done:
                continue
            why = None
            if not os.path.exists(im.path):
                why = f"{im.path}: a broken symbolic link (its target is missing, or it links to itself)"
            elif "\n" in str(im.path):
                why = f"{str(im.path)!r}: a line break in the name, which Ray's file listing cannot read"
            elif utf8_name(str(im.path)) is None or not os.path.isabs(recorded_path(im.path)):
                why = (f"{shown_name(os.path.abspath(im.path))}: its path is not valid UTF-8, which a Parquet row "
                       f"cannot hold; rename it, or run it without --ray (--format json)")
            else:
                try:
                    check_regular_file(im.path)  # a FIFO would block a read task forever
                except ImageError as e:
                    why = str(e)
            if why is not None:
                shown = shown_name(os.path.abspath(im.path))
                # A name that is not UTF-8, \xNN spelled out, can be another file's name: no row that would hide its result.
                other = shown != os.path.abspath(im.path) and os.path.lexists(shown)
                log(f"failed: {why}" + (f" (no error row written: its escaped spelling {shown} names another file, "
                                        f"whose result it would replace)" if other else ""))
                unreadable.append(str(im.path))
                if failed is not None and not other:
                    failed.append((shown, why))
        gone = set(unreadable)  # (recorded as runs without --ray record them: a rerun of either finds them)
        return [recorded_path(im.path) for im in images if str(im.path) not in gone], ""
    from pyarrow import fs as pafs

    found: list[str] = []
    for uri in inputs:
        try:
            filesystem, base = pafs.FileSystem.from_uri(uri)
            info = filesystem.get_file_info(base)
            if info.type == pafs.FileType.Directory:
                infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
                found += sorted(f"{scheme}://{i.path}" for i in infos
                                if i.type == pafs.FileType.File and is_image_name(i.base_name)
                                and not in_hidden_folder(i.path[len(base):]))
            elif info.type == pafs.FileType.File:
                found.append(f"{scheme}://{info.path}")
            else:
                log(f"error: {uri}: no such file or folder")
                missing.append(uri)
        except (OSError, ValueError) as e:  # pyarrow: ArrowInvalid is a ValueError, ArrowIOError an OSError
            log(f"error: {uri}: {e}")
            missing.append(uri)
    return list(dict.fromkeys(found)), scheme


def model_label(model: str, device: str = "cpu") -> str | None:
    """The ``model`` value the actors' rows will carry (a file given by path: ``NAME@digest`` of
    the file they load on ``device``: the .onnx on a CPU, the .pt on a GPU); None where this
    machine cannot tell (a .pt without PyTorch here), and then resume goes by path only."""
    from .backends import SHIPPED, OnnxModel, resolve, runs_on_onnxruntime, weights_label

    path = resolve(model, ".onnx" if runs_on_onnxruntime(model, device) else ".pt")
    if path.suffix == ".onnx":  # (a shipped one by its name: retrained weights exported over it carry their digest)
        return weights_label(model if model in SHIPPED else OnnxModel(path).name, path)
    try:
        from .models import load_state

        net, meta = load_state(path)
    except ImportError:
        return None
    return weights_label(model if model in SHIPPED else meta.get("name") or net.family, path, meta)  # (as TorchModel)


def done_paths(out_dir: Path, model: str | None = None) -> set[str]:
    """Paths done without error in ``out_dir``'s Parquet shards (by ``model``'s weights, if given:
    rows of other weights are done again). Only complete shards have a ``.parquet`` name
    (temporaries start with a dot), so one that cannot be read is not facemark's: stop."""
    from .shards import parquet_outcomes

    done: set[str] = set()
    for p in sorted(out_dir.glob("*.parquet")):
        if p.name.startswith("."):
            continue
        try:  # (failures, and rows that read() would skip, are tried again)
            done.update(path for path, m, error in parquet_outcomes(p) if error is None and (model is None or m == model))
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise UsageError(f"{p} is not a readable facemark shard ({e}); move it out of {out_dir}") from None
    return done


def write_shard(table, path: Path) -> None:
    """One Parquet shard, complete or absent: written to a dot-file, then renamed."""
    from .imageio import atomic_write
    from .shards import write_parquet

    atomic_write(path, lambda tmp: write_parquet(table, tmp))


def read_files(batch: "pa.Table") -> "pa.Table":
    """The read stage (Ray tasks): ``{"path"}`` -> ``{"path", "bytes", "error"}``. A file that
    cannot be read (deleted after the run listed it, unreadable, a remote object gone) is its
    error, carried to its row: with Ray Data's own reader it failed the whole job, every batch
    in flight lost."""
    import pyarrow as pa

    paths = batch.column("path").to_pylist()
    data, errors = [], []
    for p in paths:
        try:
            data.append(_read(p))
            errors.append(None)
        except FileNotFoundError:
            data.append(None)
            errors.append(f"{p}: no such file (gone since the run listed it?)")
        except (OSError, pa.ArrowInvalid) as e:  # (pyarrow's ArrowIOError is an OSError; ArrowInvalid: a path it cannot take)
            data.append(None)
            errors.append(f"{p}: cannot read it: {getattr(e, 'strerror', None) or e}")
    return pa.table({"path": paths, "bytes": pa.array(data, pa.binary()), "error": pa.array(errors, pa.string())})


_FILE_SYSTEMS: dict = {}  # scheme://bucket -> pyarrow file system, made once per read process


def _read(path: str) -> bytes:
    """A local file's or a URI's bytes."""
    if "://" not in path:
        with open(path, "rb") as f:
            return f.read()
    scheme, rest = path.split("://", 1)
    # (list_inputs writes a remote file as scheme:// and its path in that file system; the file
    # system comes from the bucket alone: a key with a space or '?' is no URI pyarrow parses)
    key = f"{scheme}://{rest.split('/', 1)[0]}"
    if key not in _FILE_SYSTEMS:
        _FILE_SYSTEMS[key] = _file_system(key)
    with _FILE_SYSTEMS[key].open_input_stream(rest) as f:
        return f.readall()


def _file_system(uri: str):
    from pyarrow import fs as pafs

    return pafs.FileSystem.from_uri(uri)[0]


class Landmarks:
    """The ``map_batches`` callable: one ``FaceLandmarker`` per actor, loaded once, then batches of
    ``{"path", "bytes", "error"}`` (``read_files``) -> Arrow tables of result rows."""

    def __init__(self, model: str, device: str, threshold: float, min_face: float | None,
                 threads: int | None, crash: str | None = None):
        from .landmarker import FaceLandmarker

        self.fl = FaceLandmarker(model=model, device=device, threshold=threshold, min_face=min_face,
                                 threads=threads)
        self.crash = crash

    def __call__(self, batch):
        import pyarrow as pa

        from .batch import rows_for_bytes
        from .shards import arrow_schema, row

        paths = batch.column("path").to_pylist()
        if self.crash:
            self._maybe_crash(paths)
        errors = batch.column("error").to_pylist()
        read = [k for k, e in enumerate(errors) if e is None]
        data = batch.column("bytes").to_pylist()
        rows: list = [row(p, None, None, self.fl.model_name, error=e) if e is not None else None
                      for p, e in zip(paths, errors)]
        for k, r in zip(read, rows_for_bytes(self.fl, [(paths[k], data[k]) for k in read])):
            rows[k] = r
        return pa.Table.from_pylist(rows, schema=arrow_schema())

    def _maybe_crash(self, paths: list[str]) -> None:
        """Tests: end this actor's process, as a segfault or a lost node would, on a batch holding
        MARKER: once (the first to create FLAGFILE) or, with no FLAGFILE, every time."""
        flag, marker = self.crash.rsplit(":", 1)
        if any(marker in p for p in paths):
            if flag:
                try:
                    os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return
            os._exit(1)


def check_options(model: str, device: str, threshold: float, min_face: float | None) -> None:
    """What every actor would refuse, refused here first: one line, not a dead actor pool. A model
    file must exist at the same path on this machine and on every node."""
    from .backends import ModelError, resolve, runs_on_onnxruntime
    from .landmarker import bad_option

    if bad := bad_option(device, threshold, min_face):
        raise UsageError(f"--{bad[0].replace('_', '-')} must be {bad[1]}")
    try:
        resolve(model, ".onnx" if runs_on_onnxruntime(model, device) else ".pt")
    except ModelError as e:
        raise UsageError(str(e)) from None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A cluster address that nothing answers on is one line in seconds; Ray itself would retry
    for minutes, logging as it goes."""
    import socket

    saved = None
    if address == "auto":  # (Ray's saved address of the cluster last started here: a stale one hung for minutes)
        saved = _saved_address()
        if saved is None:
            return  # (none saved: Ray says at once that no cluster runs here)
        address = saved
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UsageError(f"--ray {address!r}: give local, auto or HOST:PORT (the head's GCS port, 6379 by default); "
                         f"for a private local Ray put --ray after the inputs, or write --ray local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        if saved is not None:
            raise UsageError(f"--ray auto: no Ray head answers at {hostport}, the cluster this machine last joined "
                             f"(RAY_ADDRESS, or Ray's ray_current_cluster file) ({why}): run `ray start --head`, "
                             f"or `ray stop` to forget it, or give --ray local") from None
        raise UsageError(f"no Ray head answers at {hostport} ({why}): run `ray start --head` there, "
                         f"or check the address") from None


def _saved_address() -> str | None:
    """The address ``ray.init("auto")`` would connect to (RAY_ADDRESS, else the file ``ray start``
    leaves in Ray's temp folder), or None where there is none (or this Ray cannot tell)."""
    try:
        from ray._private.services import get_ray_address_from_environment

        found = get_ray_address_from_environment("auto", None)
    except Exception:  # noqa: BLE001 - none saved (ConnectionError), or a Ray without this private helper
        return None
    return found if isinstance(found, str) and found not in ("", "auto", "local") else None


def _init(ray, address: str | None) -> bool:
    """Use the Ray this process already runs, or connect to ``address`` (``auto``: the cluster
    ``ray start`` runs on this machine), or start a private local one (``address="local"``, so a
    stale or running ``ray start`` here is not picked up). True when this call connected (and the
    run should disconnect)."""
    if ray.is_initialized():
        return False
    with _keeping_sigterm():
        _connect(ray, address)
    return True


def _shutdown(ray) -> None:
    """``ray.shutdown()``, this process's SIGTERM handler kept (see ``_keeping_sigterm``)."""
    with _keeping_sigterm():
        ray.shutdown()


@contextmanager
def _keeping_sigterm():
    """This process's SIGTERM handler (the CLI's: stop as Ctrl-C does, exit 143) back after the
    block. Ray's core worker puts its crash handler on SIGTERM when it starts (a scheduler's polite
    stop, SLURM's or Kubernetes', read as a crash: a native stack, then death), and the default
    back when it shuts down (a polite kill between the last shard and the summary: exit 143, no
    line)."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    polite = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and polite is not None:
            signal.signal(signal.SIGTERM, polite)


def _connect(ray, address: str | None) -> None:
    from .quiet import quiet_stderr

    if address:
        _check_reachable(address)
        said: list[bytes] = []
        try:
            with quiet_stderr(said):  # Ray logs every retry; the failure is one line below
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)  # (see below)
        except Exception as e:  # noqa: BLE001 - Ray raises many kinds here (connection, auth token, version)
            if b"InvalidAuthToken" in b"".join(said) or "InvalidAuthToken" in str(e):
                # (Ray then raises a bare ConnectionError, the reason only in the lines it logged)
                raise UsageError(f"cannot join the Ray cluster at {address}: it refused this machine's "
                                 f"authentication token (InvalidAuthToken): the head and every machine that joins "
                                 f"need the same RAY_AUTH_MODE and token (RAY_AUTH_TOKEN, or ~/.ray/auth_token; "
                                 f"`ray get-auth-token` on the head prints its own)") from None
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            first = f"{type(e).__name__}: {first}" if type(e).__name__ not in first else first
            raise UsageError(f"cannot join the Ray cluster at {address}: {first} (is it a Ray head's GCS "
                             f"address, and the same Ray version {ray.__version__}?)") from None
    else:
        from .workers import cpu_cores

        cpus = cpu_cores()
        # The actors' and raylet's own lines stay in Ray's session logs (/tmp/ray/session_latest/logs):
        # a killed actor printed paragraphs in colour codes about retries that then succeeded;
        # what fails the run is facemark's one line.
        try:
            with quiet_stderr():  # (a Ray that cannot start logs paragraphs: the failure is one line below)
                ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="ERROR",
                         log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - Ray raises many kinds here (timeouts, dead raylets, limits)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            try:  # (what did start, a GCS or a raylet, is stopped)
                with quiet_stderr():
                    ray.shutdown()
            except Exception:  # noqa: BLE001,S110 - the failure to start is what is said
                pass
            raise RayRunError(f"cannot start a local Ray here: {type(e).__name__}: {first} (its logs: "
                              f"/tmp/ray/session_latest/logs; too few open files allowed? `ulimit -n`)") from None


def pool_size(ray, device: str, actors: int | None) -> tuple[int, float, float]:
    """(actors, CPUs per actor, GPUs per actor). CPU: one actor per CPU, less an eighth of the
    CPUs (at least one) kept for the read tasks: an actor pool holding every CPU deadlocks them.
    More actors than that share those CPUs. CUDA: one actor per GPU."""
    res = ray.cluster_resources()
    cpus = float(res.get("CPU", 1))
    budget = max(cpus - max(1.0, cpus // 8), cpus / 2)  # CPUs the actors may hold together
    if device != "cpu":
        gpus = int(res.get("GPU", 0))
        if gpus < 1:
            raise UsageError("--device cuda with --ray: the Ray cluster has no GPU")
        n = actors or gpus
        return n, min(1.0, budget / n), 1.0
    n = actors or max(1, int(budget))
    return n, min(1.0, budget / n), 0.0


def dataset(ray, paths: list[str], options: dict, batch_size: int, n: int, cpus: float, gpus: float):
    """The paths -> ``read_files`` tasks -> a fixed pool of ``n`` ``Landmarks`` actors -> Arrow
    tables of rows."""
    # Ray shows each GPU actor its own GPU as cuda:0.
    options = {**options, "device": "cpu" if options["device"] == "cpu" else "cuda"}
    # (from_items splits the paths into many blocks, so the reads run in several tasks: from_arrow
    # of one table was one block, one task reading every file in turn)
    ds = ray.data.from_items([{"path": p} for p in paths]).map_batches(read_files, batch_size=batch_size,
                                                                       batch_format="pyarrow")
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for max_restarts / max_task_retries and warns that
        # **ray_remote_args goes in 2.64 (tests/test_ray.py notices the day they stop working).
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        return ds.map_batches(
            Landmarks, batch_size=batch_size, batch_format="pyarrow",
            fn_constructor_kwargs=dict(**options, threads=1,  # parallel across actors, not threads
                                       crash=os.environ.get(CRASH_ENV) or None),
            compute=ray.data.ActorPoolStrategy(size=n), num_cpus=cpus, num_gpus=gpus,
            # A dead actor is restarted and its batch retried, but not forever: Ray Data's default
            # (max_task_retries=-1) loops on an image that kills the process every time.
            max_restarts=-1, max_task_retries=TASK_RETRIES)


def summary_line(summary: dict, unreadable: int, out: Path) -> str:
    """The run's last line, in the words of a run without Ray: done of all, faces, no face, failed."""
    total, missing = summary["images"] + unreadable, summary.get("missing", 0)
    failed = summary["failed"] - missing
    parts = [f"{total - failed} of {total} image(s) done", f"{summary['faces']} face(s)"]
    if summary["no_face"]:
        parts.append(f"{summary['no_face']} image(s) with no face")
    if failed:
        parts.append(f"{failed} failed (named above)")
    if missing:
        parts.append(f"{missing} input(s) gave no image (named above)")
    return (f"facemark: {', '.join(parts)}; {len(summary['shards'])} shard(s) in {out} "
            f"({summary['seconds']:.1f} s)")


def write_error_rows(failed: list[tuple[str, str]], out: Path, model: str) -> None:
    """One shard of rows for images that never reached the actors (``(path, why)``)."""
    import pyarrow as pa

    from .shards import arrow_schema, row, run_name

    rows = [row(path, None, None, model, error=why) for path, why in failed]
    write_shard(pa.Table.from_pylist(rows, schema=arrow_schema()), out / f"{run_name('ray')}-listing.parquet")


SHARD_STEP = 64  # rows taken from the pipeline at a time (a shard closes on time, and a stopped run keeps what it took)


def write_shards(ds, out: Path, rows_per_shard: int, summary: dict, log: Callable[[str], None] = to_stderr,
                 max_seconds: float | None = None) -> None:
    """The rows as ``ray-<run id>-NNNNN.parquet`` shards, each renamed into place when complete:
    at ``rows_per_shard`` rows, once its first row is ``max_seconds`` old (``SHARD_SECONDS``, as
    ``--format parquet`` closes its shards), and with the rows done so far when the run stops
    (Ctrl-C, a Ray error): a stopped run kept only full shards, none before the first 10,000 rows.
    ``summary`` counts what is on disk so far; each failed image is named through ``log``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .shards import SHARD_SECONDS, arrow_schema, run_name

    schema = arrow_schema()
    run = run_name("ray")
    limit = SHARD_SECONDS if max_seconds is None else max_seconds
    held: list = []  # tables of the shard being filled
    opened = 0.0

    def close(rows: int) -> None:
        nonlocal held
        whole = pa.concat_tables(held)
        table, rest = whole.slice(0, rows), whole.slice(rows)
        held = [rest] if len(rest) else []
        path = out / f"{run}-{len(summary['shards']):05d}.parquet"
        write_shard(table, path)
        summary["images"] += len(table)
        summary["failed"] += len(table) - table.column("error").null_count
        for path_, error in zip(table.column("path").to_pylist(), table.column("error").to_pylist()):
            if error is not None:
                log(f"failed: {error if path_ in error else f'{path_}: {error}'}")
        counts = pc.list_value_length(table.column("faces"))
        summary["faces"] += pc.sum(counts).as_py() or 0
        summary["no_face"] += pc.sum(pc.and_(pc.is_null(table.column("error")), pc.equal(counts, 0))).as_py() or 0
        summary["shards"].append(str(path))

    def rows() -> int:
        return sum(len(t) for t in held)

    try:
        for table in ds.iter_batches(batch_size=min(rows_per_shard, SHARD_STEP), batch_format="pyarrow"):
            if not held:
                opened = time.monotonic()
            held.append(table.select(schema.names).cast(schema))
            while rows() >= rows_per_shard:
                close(rows_per_shard)
                opened = time.monotonic()
            if held and time.monotonic() - opened >= limit:
                close(rows())
    except BaseException:  # stopped (Ctrl-C, a Ray error): the rows done so far, as a complete shard
        if rows():
            try:
                close(rows())
            except OSError:  # (what stopped the run is what is said)
                pass
        raise
    if rows():
        close(rows())


def run_ray(inputs: list[str], out_dir: str, address: str | None = None, model: str = DEFAULT_MODEL,
            device: str = "cpu", threshold: float = 0.6, min_face: float | None = None, batch_size: int = 16,
            actors: int | None = None, rows_per_shard: int = 1000, log: Callable[[str], None] = to_stderr) -> dict:
    """Landmarks for every image in ``inputs`` with Ray Data; rows in Parquet shards in ``out_dir``
    (``ray-<run id>-NNNNN.parquet``). Images already in ``out_dir``'s shards are skipped.

    Returns ``{"images", "failed", "missing", "faces", "no_face", "skipped", "shards", "seconds"}`` for
    this run (``images``: rows written, failed ones included; ``failed`` includes the ``missing``
    inputs, which gave no image).
    ``address=None`` (or ``"local"``) uses (or starts) a local Ray; ``"HOST:6379"`` joins that cluster, whose
    nodes must all have facemark installed and see the inputs (shared or object storage)."""
    inputs = _input_list(inputs)
    address = None if address == "local" else address  # (the CLI's word for a private local Ray, here too)
    ray = _require_ray()
    check_options(model, device, threshold, min_face)
    for what, v in (("--batch", batch_size), ("--shard-size (rows_per_shard)", rows_per_shard), ("actors", actors)):
        if v is not None and v < 1:
            raise UsageError(f"{what} must be at least 1, not {v}")
    if address:  # (a typo or a head that is down: said before minutes of listing a big input)
        _check_reachable(address)
    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    made = missing_folders(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _run(ray, inputs, out, address, model, device, threshold, min_face, batch_size, actors, rows_per_shard,
                    log, t0)
    except UsageError:  # a request that cannot run (no images, a head nobody answers on): nothing made stays
        remove_empty(made)
        raise


def _run(ray, inputs: list[str], out: Path, address: str | None, model: str, device: str, threshold: float,
         min_face: float | None, batch_size: int, actors: int | None, rows_per_shard: int,
         log: Callable[[str], None], t0: float) -> dict:
    """``run_ray`` once its folder is made (removed again, where still empty, after a usage error)."""
    unreadable: list[str] = []
    missing: list[str] = []
    failed: list[tuple[str, str]] = []
    done = done_paths(out, model_label(model, device))
    paths, _ = list_inputs(inputs, log, unreadable, failed, done, missing)
    if failed:  # images Ray cannot be given are rows with their error too, as every bad file is
        write_error_rows(failed, out, model_label(model, device) or model)
    if not paths:  # (as without --ray: nothing to do is a usage error, each reason said above)
        raise UsageError("no images to process")
    todo = [p for p in paths if p not in done]
    summary = {"images": 0, "failed": len(unreadable) + len(missing), "missing": len(missing), "faces": 0, "no_face": 0,
               "skipped": len(paths) - len(todo), "shards": [], "seconds": 0.0}
    if summary["skipped"]:
        log(f"facemark: {summary['skipped']} image(s) already in {out}; skipped")
    if not todo:
        summary["seconds"] = time.perf_counter() - t0
        return summary

    started, why = _init(ray, address), None
    try:
        n, cpus, gpus = pool_size(ray, device, actors)
        log(f"facemark: {len(todo)} image(s), {n} actor(s) ({cpus:g} CPU, {gpus:g} GPU each), shards in {out}")
        options = dict(model=model, device=device, threshold=threshold, min_face=min_face)
        write_shards(dataset(ray, todo, options, batch_size, n, cpus, gpus), out, rows_per_shard, summary, log)
    except (ray.exceptions.RayError, OSError) as e:  # Ray has already logged its details; an OSError: the pipeline's
        lines = [x.strip() for x in str(e).splitlines() if x.strip()] or [type(e).__name__]  # (a file is a row's error)
        why = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    finally:
        if started:
            _shutdown(ray)
    if why is not None:
        # Raised here, not in the except, then collected: the Ray error's frames hold the failed
        # pool's actors, which Ray restarts after the executor killed them and keeps (with their
        # CPUs) while a handle lives; in a Ray this process keeps, the next run would find them.
        gc.collect()
        raise RayRunError(f"the Ray run stopped after {summary['images']} image(s) ({why}); the "
                          f"{len(summary['shards'])} shard(s) written are complete: run the same command "
                          "again to go on")
    summary["seconds"] = time.perf_counter() - t0
    log(summary_line(summary, len(unreadable), out))
    return summary
