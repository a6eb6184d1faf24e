"""``mailslot bench collab``: collaborative-editing load on mailslot and on ShareDB 7, same run.

Theory of operation. A *cell* is (K clients, D documents, mode, stalled clients); a *target* is a
server speaking ShareDB's protocol at ``ws://127.0.0.1:PORT/ws``. For every cell and target the
harness starts a fresh server process (so that one cell's history, which ShareDB keeps in memory,
does not weigh on the next), runs the Node load generator ``bench/collab_load.js`` against it and
samples the server with psutil at the edges of the generator's measurement window, which the
generator announces on stdout (``measure_start``/``measure_end``): CPU time (user + system, of the
process and its children) and RSS. Then it stops the server.

- ``edits/s``: measured edits acknowledged per second of the window.
- ``p50/p99/max ms``: edit-to-remote-visibility, from an edit being made in one client to each
  other subscriber of its document receiving it (one generator process, one clock); ``ack p99 ms``
  from an edit being made to its author receiving the acknowledgement.
- ``msgs/s``, ``cpu us/msg``: useful frames the generator received from the server in the window
  (acks, ops a client had not seen yet, error replies) per second, and the server's CPU time in
  the window over their number: its cost per outbound message. ``dup/s``: ops a client received
  twice (counted apart, so that wasted sends do not lower the cost per message).
- ``rss +MB``: server RSS growth over the window; with stalled clients (``--stop-reading``, clients
  that stop reading their sockets) it shows whether the server buffers without bound.
- ``x sharedb`` columns: mailslot's figure over ShareDB's in the same cell.

Targets: ``sharedb`` is ``node bench/sharedb_server.js`` (stock ShareDB 7, in-memory);
``mailslot`` is ``python -m mailslot serve --port P --db sqlite:///DIR/collab.db``; ``relay``
(only when asked for) is ``python bench/relay_server.py``, the floor of the Python stack mailslot
serves on: uvicorn and its WebSocket protocol with the same settings, and an ASGI app that gives
each op a version and relays it, with no transformation, store or checks. Its ``cpu x sharedb`` is
what a server on this stack pays per message before doing any work of its own. A target that does
not start or dies is reported as a row with its error; the run goes on.

Limits, said plainly: the generator and the server share the machine (2 cores here); ``gen cpu``
is the generator's busy fraction of one core, and near 1.0 the generator, not the server, may be
what limits a cell. Benchmarks report numbers; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import psutil

from mailslot.bench import Report
from mailslot.errors import ConfigError, TransportError

__all__ = [
    "TARGETS",
    "Cell",
    "LineReader",
    "ServerProcess",
    "Window",
    "add_arguments",
    "add_ratios",
    "cells_for",
    "free_port",
    "node_binary",
    "repo_root",
    "run",
    "start_mailslot",
    "start_relay",
    "start_sharedb",
    "start_target",
    "summarize",
]

TARGETS = ("sharedb", "mailslot", "relay")
COLUMNS = [
    "target",
    "K",
    "D",
    "mode",
    "stalled",
    "edits/s",
    "msgs/s",
    "dup/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "ack p99 ms",
    "missing",
    "errors",
    "cpu us/msg",
    "srv cpu",
    "rss MB",
    "rss +MB",
    "gen cpu",
    "cpu x sharedb",
    "p99 x sharedb",
    "error",
]
START_TIMEOUT = 30.0
ERROR_WIDTH = 100  # an error cell is cut to this many characters


@dataclass(frozen=True)
class Cell:
    """One load configuration."""

    clients: int
    docs: int
    mode: str  # "typing" or "closed"
    stalled: int = 0  # extra clients on every document that stop reading their sockets
    watchers: int = 0  # extra clients on every document that keep reading
    rate: float | None = None  # edits/s per client in typing mode, if not the run's
    duration: float | None = None  # measured seconds, if not the run's

    @property
    def label(self) -> str:
        """The mode, with the rate and reading watchers when they are the cell's own."""
        label = self.mode if self.rate is None else f"{self.mode} {self.rate:g}/s"
        return f"{label} +{self.watchers}w" if self.watchers else label


@dataclass(frozen=True)
class Window:
    """What the harness measured on the server around the generator's window."""

    cpu_s: float
    wall_s: float
    rss_start: int
    rss_end: int


@dataclass(frozen=True)
class ServerProcess:
    """A running target server."""

    name: str
    url: str
    pid: int
    log: Path


def cells_for(
    *,
    quick: bool,
    clients: Sequence[int] | None = None,
    docs: Sequence[int] | None = None,
    modes: Sequence[str] | None = None,
    stop_reading: int = 0,
    stall_rate: float = 50.0,
    stall_duration: float = 30.0,
) -> list[Cell]:
    """The grid of cells to run, in order.

    The full grid is K in (16, 64, 256) x D in (1, 100) x (typing, closed); ``quick`` is K in
    (16, 64) x D in (1, 100) typing plus one closed-loop cell. ``stop_reading`` adds two typing
    cells at K=64 (or the largest K) on 100 documents at ``stall_rate`` edits/s per client for
    ``stall_duration`` seconds, with that many extra clients subscribed to every document: in one
    cell they stop reading, in its twin they keep reading, so that the RSS growth due to stalled
    readers stands apart from the server's own. The high rate is there so that the stalled
    sockets' kernel buffers (a few MB each) fill early in the window.
    """
    if quick:
        ks = list(clients or (16, 64))
        ds = list(docs or (1, 100))
        cells = [Cell(k, d, m) for m in (modes or ("typing",)) for k in ks for d in ds]
        if modes is None:
            cells.append(Cell(max(ks), 1, "closed"))
    else:
        ks = list(clients or (16, 64, 256))
        ds = list(docs or (1, 100))
        cells = [Cell(k, d, m) for m in (modes or ("typing", "closed")) for k in ks for d in ds]
    for cell in cells:
        if cell.mode not in ("typing", "closed"):
            raise ConfigError(f"--modes: unknown mode {cell.mode!r} (typing, closed)")
        if cell.clients < 2 or cell.docs < 1:
            raise ConfigError(f"a cell needs at least 2 clients and 1 document: {cell}")
    if stop_reading:
        if stop_reading < 0:
            raise ConfigError(f"--stop-reading must not be negative: {stop_reading}")
        k = 64 if 64 in ks else max(ks)
        twin = Cell(k, 100, "typing", rate=stall_rate, duration=stall_duration)
        cells.append(replace(twin, watchers=stop_reading))
        cells.append(replace(twin, stalled=stop_reading))
    return cells


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summarize(
    target: str, cell: Cell, result: dict[str, Any], window: Window | None
) -> dict[str, Any]:
    """One table row from the generator's result and the server samples (pure)."""
    row: dict[str, Any] = {
        "target": target,
        "K": cell.clients,
        "D": cell.docs,
        "mode": cell.label,
        "stalled": cell.stalled,
    }
    if "fatal" in result:
        row["error"] = str(result["fatal"])[:ERROR_WIDTH]
        return row
    latency = result.get("latency_ms", {})
    messages = int(result.get("messages_in", 0))
    seconds = float(result.get("duration_s") or 0)
    row.update(
        {
            "edits/s": result.get("committed_per_s"),
            "msgs/s": result.get("messages_in_per_s"),
            "dup/s": _round(result.get("duplicates", 0) / seconds, 1) if seconds else None,
            "p50 ms": latency.get("p50"),
            "p99 ms": latency.get("p99"),
            "max ms": latency.get("max"),
            "ack p99 ms": result.get("ack_ms", {}).get("p99"),
            "missing": int(result.get("missing_deliveries", 0)) + int(result.get("unacked", 0)),
            "errors": int(result.get("errors", 0)),
            "gen cpu": result.get("generator_cpu"),
        }
    )
    if window is not None:
        row["cpu us/msg"] = _round(window.cpu_s * 1e6 / messages) if messages else None
        row["srv cpu"] = _round(window.cpu_s / window.wall_s) if window.wall_s > 0 else None
        row["rss MB"] = _round(window.rss_end / 2**20, 1)
        row["rss +MB"] = _round((window.rss_end - window.rss_start) / 2**20, 1)
    samples = result.get("error_samples") or []
    if samples:
        row["error"] = str(samples[0])[:ERROR_WIDTH]
    return row


def add_ratios(rows: list[dict[str, Any]], *, base: str = "sharedb") -> None:
    """Fill ``cpu x sharedb`` and ``p99 x sharedb``: each row over the ``base`` row of its cell."""
    key = ("K", "D", "mode", "stalled")
    bases = {tuple(r[k] for k in key): r for r in rows if r["target"] == base}
    for row in rows:
        ref = bases.get(tuple(row[k] for k in key))
        if ref is None:
            continue
        for column, ratio in (("cpu us/msg", "cpu x sharedb"), ("p99 ms", "p99 x sharedb")):
            mine, theirs = row.get(column), ref.get(column)
            if isinstance(mine, int | float) and isinstance(theirs, int | float) and theirs > 0:
                row[ratio] = _round(mine / theirs)


# ---------------------------------------------------------------------------------------------
# Processes


def repo_root() -> Path:
    """The source checkout holding ``bench/`` and ``js/`` (``MAILSLOT_REPO`` overrides it)."""
    root = Path(os.environ.get("MAILSLOT_REPO") or Path(__file__).resolve().parents[3])
    if not (root / "bench" / "collab_load.js").is_file():
        raise ConfigError(
            f"bench/collab_load.js not found under {root}; run from a source checkout "
            "or set MAILSLOT_REPO"
        )
    if not (root / "js" / "node_modules" / "sharedb").is_dir():
        raise ConfigError(f"{root / 'js' / 'node_modules'} is missing: run `make js/node_modules`")
    return root


def node_binary() -> str:
    """The ``node`` executable, or a clear error."""
    node = shutil.which("node")
    if node is None:
        raise ConfigError("node is not installed (Node.js 20+ runs ShareDB and the load generator)")
    return node


class LineReader:
    """Lines from a child's stdout with a deadline: ``select`` + ``os.read``, no thread."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._fd = stream.fileno()
        self._buffer = b""
        self._eof = False

    def readline(self, deadline: float) -> str | None:
        """The next line without its newline; ``None`` at end of file.

        Raises:
            TimeoutError: no full line before ``deadline`` (a ``time.monotonic()`` value).
        """
        while b"\n" not in self._buffer:
            if self._eof:
                if not self._buffer:
                    return None
                rest, self._buffer = self._buffer, b""
                return rest.decode("utf-8", "replace")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no line before the deadline")
            ready, _, _ = select.select([self._fd], [], [], left)
            if ready:
                chunk = os.read(self._fd, 65536)
                if chunk:
                    self._buffer += chunk
                else:
                    self._eof = True
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("utf-8", "replace")


def _tail(path: Path, size: int = 600) -> str:
    try:
        data = path.read_bytes()[-size:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip().replace("\n", " | ")


def _stop(popen: subprocess.Popen[bytes]) -> None:
    if popen.stdin is not None:
        popen.stdin.close()
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=5)
    if popen.stdout is not None:
        popen.stdout.close()


@contextmanager
def start_sharedb(
    *, workdir: Path, root: Path | None = None, timeout: float = START_TIMEOUT
) -> Iterator[ServerProcess]:
    """Run ``bench/sharedb_server.js`` on a free port until the block ends.

    Raises:
        TransportError: the server exited or did not announce its port within ``timeout``.
    """
    root = root or repo_root()
    log = workdir / "sharedb.log"
    script = str(root / "bench" / "sharedb_server.js")
    with log.open("wb") as log_file:
        popen = subprocess.Popen(
            [node_binary(), script, "--port", "0", "--stdin-lifeline"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    try:
        assert popen.stdout is not None
        try:
            line = LineReader(popen.stdout).readline(time.monotonic() + timeout)
        except TimeoutError:
            line = None
        if line is None or not line.startswith("LISTENING "):
            raise TransportError(
                f"ShareDB server did not start (status {popen.poll()}, said {line!r}): {_tail(log)}"
            )
        port = int(line.split()[1])
        yield ServerProcess("sharedb", f"ws://127.0.0.1:{port}/ws", popen.pid, log)
    finally:
        _stop(popen)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_port(popen: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    # Polls: the server's output is its own (no agreed "listening" line), so the harness waits
    # for the port to accept connections, every 50 ms, or for the process to exit.
    deadline = time.monotonic() + timeout
    while True:
        if popen.poll() is not None:
            raise TransportError(f"server exited with status {popen.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TransportError(
                f"server did not listen on port {port} in {timeout} s: {_tail(log)}"
            )
        time.sleep(0.05)


@contextmanager
def _start_listening(
    name: str, command: list[str], port: int, *, workdir: Path, timeout: float
) -> Iterator[ServerProcess]:
    """Run ``command``, which is to listen on ``port``, until the block ends."""
    log = workdir / f"{name}.log"
    with log.open("wb") as log_file:
        popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_port(popen, port, log, timeout)
        yield ServerProcess(name, f"ws://127.0.0.1:{port}/ws", popen.pid, log)
    finally:
        _stop(popen)


@contextmanager
def start_mailslot(*, workdir: Path, timeout: float = START_TIMEOUT) -> Iterator[ServerProcess]:
    """Run ``mailslot serve`` with a fresh SQLite database on a free port until the block ends.

    Raises:
        TransportError: the server exited or did not accept connections within ``timeout``.
    """
    port = free_port()
    db = workdir / "collab.db"
    command = [sys.executable, "-m", "mailslot", "serve", "--port", str(port)]
    command += ["--db", f"sqlite:///{db}"]
    with _start_listening("mailslot", command, port, workdir=workdir, timeout=timeout) as server:
        yield server


@contextmanager
def start_relay(
    *, workdir: Path, root: Path | None = None, timeout: float = START_TIMEOUT
) -> Iterator[ServerProcess]:
    """Run ``bench/relay_server.py`` (the stack's floor: no OT, no store) on a free port.

    Raises:
        TransportError: the server exited or did not accept connections within ``timeout``.
    """
    root = root or repo_root()
    port = free_port()
    command = [sys.executable, str(root / "bench" / "relay_server.py"), "--port", str(port)]
    with _start_listening("relay", command, port, workdir=workdir, timeout=timeout) as server:
        yield server


@contextmanager
def start_target(name: str, *, workdir: Path) -> Iterator[ServerProcess]:
    """Start the target server called ``name`` (one of ``TARGETS``)."""
    if name == "sharedb":
        with start_sharedb(workdir=workdir) as server:
            yield server
    elif name == "mailslot":
        with start_mailslot(workdir=workdir) as server:
            yield server
    elif name == "relay":
        with start_relay(workdir=workdir) as server:
            yield server
    else:
        raise ConfigError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in proc.children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def _rss(proc: psutil.Process) -> int:
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return total


@dataclass(frozen=True)
class LoadOptions:
    rate: float
    duration: float
    warmup: float
    drain: float
    client: str


def _run_load(
    server: ServerProcess, cell: Cell, opts: LoadOptions, root: Path, workdir: Path
) -> tuple[dict[str, Any], Window | None]:
    """Run the generator against ``server``; sample the server around the window."""
    proc = psutil.Process(server.pid)
    duration = cell.duration if cell.duration is not None else opts.duration
    command = [
        node_binary(),
        str(root / "bench" / "collab_load.js"),
        "--url",
        server.url,
        "--clients",
        str(cell.clients),
        "--docs",
        str(cell.docs),
        "--mode",
        cell.mode,
        "--rate",
        str(cell.rate if cell.rate is not None else opts.rate),
        "--duration",
        str(duration),
        "--warmup",
        str(opts.warmup),
        "--drain",
        str(opts.drain),
        "--stop-reading",
        str(cell.stalled),
        "--watchers",
        str(cell.watchers),
        "--client",
        opts.client,
        "--events",
    ]
    log = workdir / "load.log"
    with log.open("wb") as log_file:
        gen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_file)
    deadline = time.monotonic() + opts.warmup + duration + 2 * opts.drain + 90
    start: tuple[float, float, int] | None = None
    window: Window | None = None
    try:
        assert gen.stdout is not None
        reader = LineReader(gen.stdout)
        while True:
            try:
                line = reader.readline(deadline)
            except TimeoutError:
                return {"fatal": "load generator timed out"}, None
            if line is None:
                status = gen.wait()
                return {"fatal": f"load generator exited with status {status}: {_tail(log)}"}, None
            event = json.loads(line)
            kind = event.get("event")
            if kind == "measure_start":
                start = (time.monotonic(), _cpu_seconds(proc), _rss(proc))
            elif kind == "measure_end" and start is not None:
                window = Window(
                    cpu_s=_cpu_seconds(proc) - start[1],
                    wall_s=time.monotonic() - start[0],
                    rss_start=start[2],
                    rss_end=_rss(proc),
                )
            elif kind == "result":
                if "fatal" in event:
                    event["fatal"] = f"load generator: {event['fatal']}"
                return event, window
    except psutil.Error as exc:
        return {"fatal": f"server process vanished: {exc}"}, None
    finally:
        _stop(gen)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this suite."""

    def ints(text: str) -> list[int]:
        try:
            return [int(x) for x in text.split(",") if x]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected numbers like 16,64: {text!r}") from exc

    parser.add_argument(
        "--targets",
        default="sharedb,mailslot",
        help="comma-separated servers to load: sharedb, mailslot, relay (the Python stack's "
        "floor: no OT, no store); default sharedb,mailslot",
    )
    parser.add_argument("--clients", type=ints, help="K values, e.g. 16,64,256")
    parser.add_argument("--docs", type=ints, help="D values, e.g. 1,100")
    parser.add_argument("--modes", help="typing,closed")
    parser.add_argument("--rate", type=float, default=5.0, help="edits/s per client in typing mode")
    parser.add_argument("--duration", type=float, help="measured seconds per cell (10; quick 3)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (2; quick 1)")
    parser.add_argument("--drain", type=float, default=5.0, help="max seconds to wait after")
    parser.add_argument(
        "--stop-reading",
        type=int,
        default=None,
        help="add a cell where this many clients stop reading, and its twin (default 4; quick 0)",
    )
    parser.add_argument(
        "--stall-rate", type=float, default=50.0, help="edits/s per client in the stall cells"
    )
    parser.add_argument(
        "--stall-duration", type=float, default=30.0, help="measured seconds of the stall cells"
    )
    parser.add_argument(
        "--client",
        choices=("raw", "sharedb"),
        default="raw",
        help="load generator clients: bare sockets (raw) or the real sharedb client",
    )


def run(args: argparse.Namespace) -> Report:
    """Run every cell against every target and build the table."""
    targets = [t.strip() for t in str(args.targets).split(",") if t.strip()]
    for t in targets:
        if t not in TARGETS:
            raise ConfigError(f"--targets: unknown target {t!r}; known: {', '.join(TARGETS)}")
    quick = bool(args.quick)
    stop_reading = args.stop_reading if args.stop_reading is not None else (0 if quick else 4)
    modes = [m.strip() for m in args.modes.split(",")] if args.modes else None
    cells = cells_for(
        quick=quick,
        clients=args.clients,
        docs=args.docs,
        modes=modes,
        stop_reading=stop_reading,
        stall_rate=args.stall_rate,
        stall_duration=args.stall_duration,
    )
    opts = LoadOptions(
        rate=args.rate,
        duration=args.duration if args.duration is not None else (3.0 if quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        drain=args.drain,
        client=args.client,
    )
    if opts.duration <= 0 or opts.warmup < 0 or opts.rate <= 0 or opts.drain < 0:
        raise ConfigError("--duration and --rate must be positive, --warmup and --drain >= 0")
    root = repo_root()
    node_binary()

    report = Report("collab", COLUMNS)
    with ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mailslot-collab-")))
        for i, cell in enumerate(cells):
            for target in targets:
                workdir = base / f"{i}-{target}"
                workdir.mkdir()
                try:
                    with start_target(target, workdir=workdir) as server:
                        result, window = _run_load(server, cell, opts, root, workdir)
                    report.add(**summarize(target, cell, result, window))
                except TransportError as exc:
                    report.add(**summarize(target, cell, {"fatal": f"{target}: {exc}"}, None))
    add_ratios(report.rows)
    report.notes.extend(
        [
            f"generator: {opts.client} clients; typing at {opts.rate:g} edits/s per client; "
            f"{opts.warmup:g} s warm-up, {opts.duration:g} s measured per cell, fresh server each",
            "latency = edit made in one client -> seen by each other subscriber; "
            "cpu us/msg = server CPU in the window / acks and first deliveries it sent",
            "each document has >= 2 subscribers: slot j puts client j%K on doc j%D, "
            "max(K, max(2, K//D)*D) slots",
            "srv cpu and gen cpu are busy fractions of one core; both share this machine",
        ]
    )
    report.meta.update(
        {
            "targets": targets,
            "cells": len(cells),
            "rate": opts.rate,
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "client": opts.client,
        }
    )
    return report
