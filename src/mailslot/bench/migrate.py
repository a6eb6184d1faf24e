"""``mailslot bench migrate``: the actor engine and the old mutex engine, head to head.

One run drives the same WebSocket workload (:mod:`mailslot.bench._wsload`: K clients typing into D
documents, one op in flight each) against ``mailslot serve`` started once per engine and setting, in
a process of its own, with a fresh SQLite file: ``--engine cutover`` with the flags at 100% (every
document on the actor engine) or at their default (every document on the old engine), so both
engines sit behind the same gateway, router and store, and differ only in the engine. Contention
rises with K/D, the editors per document.

Each row: acked ops per second, p50/p99 ack latency, the server process's CPU (all its threads) and
CPU per op, errors and timeouts the clients saw, and stalls (requests stuck longer than the stall
timeout: the old engine's watchdog restarts the engine on each; for the actor engine, the router
counts them). The main matrix runs the old engine as a competent team wrote it. A second pass, at
the highest client count, turns on the old engine's planted lock-order bug (``--plant-deadlock``)
and runs each server under ``mailslot lockprof --watchdog``: the deadlocks column counts the
distinct wait-for cycles between threads that the profiler's watchdog found (the engine's own
watchdog restarts the old engine after each, so one run can see several).

Targets from the issue, at the highest contention: the actor engine's p99 at least 40% below the old
engine's, its throughput at least 2x, and no deadlock. ``--plot PATH`` draws p99 against the
number of clients for each document count (the README links ``docs/bench-migrate.png``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import median
from typing import Any

from mailslot.bench import Report, percentile
from mailslot.bench._wsload import create_documents, run_load
from mailslot.errors import ConfigError

__all__ = ["TARGETS", "add_arguments", "run"]

TARGETS = {"p99_below": 0.40, "throughput": 2.0}
_FLAGS = {"actor": '{"enabled": true, "percentage": 100}', "legacy": "{}"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, action="append", help="K (repeatable; 16 64 256)")
    parser.add_argument("--docs", type=int, action="append", help="D (repeatable; 1 10 1000)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (8; quick 3)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (1; quick 0.5)")
    parser.add_argument("--legacy-workers", type=int, default=32, help="old engine threads (32)")
    parser.add_argument("--stall-timeout", type=float, default=2.0, help="stall after (2 s)")
    parser.add_argument("--no-deadlock-pass", action="store_true", help="skip the planted-bug pass")
    parser.add_argument("--plot", type=Path, help="write a PNG of p99 against contention")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat every run, interleaved; report medians (1)"
    )


def run(args: argparse.Namespace) -> Report:
    clients = args.clients or ([16, 64] if args.quick else [16, 64, 256])
    docs = args.docs or ([1, 1000] if args.quick else [1, 10, 1000])
    duration = args.duration or (3.0 if args.quick else 8.0)
    warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    if min(clients) < 1 or min(docs) < 1 or duration <= 0 or warmup < 0:
        raise ConfigError("--clients, --docs and --duration must be positive")
    report = Report(
        suite="migrate",
        columns=[
            "engine", "bug", "K", "D", "K/D", "ops/s", "p50 ms", "p99 ms", "cpu %",
            "cpu us/op", "errors", "timeouts", "stalls", "deadlocks",
        ],
    )  # fmt: skip
    settings = {
        "duration": duration,
        "warmup": warmup,
        "workers": args.legacy_workers,
        "stall": args.stall_timeout,
    }
    rounds = args.rounds
    if rounds < 1:
        raise ConfigError("--rounds must be at least 1")
    runs: list[tuple[str, int, int, bool]] = [
        (engine, k, d, False) for k in clients for d in docs for engine in ("legacy", "actor")
    ]
    if not args.no_deadlock_pass:
        runs += [
            (engine, max(clients), d, True)
            for d in (docs if not args.quick else docs[:1])
            for engine in ("legacy", "actor")
        ]
    results: dict[tuple[str, int, int, bool], list[dict[str, Any]]] = {r: [] for r in runs}
    for _ in range(rounds):  # interleaved, so that a slow spell of the machine hits both engines
        for engine, k, d, bug in runs:
            results[(engine, k, d, bug)].append(_one(engine, k, d, bug=bug, **settings))
    for run_ in runs:
        report.add(**_median(results[run_]))
    if rounds > 1:
        report.notes.append(
            f"{rounds} rounds: medians of the rates and latencies, sums of the counts"
        )
    report.notes.extend(_verdict(report.rows, max(clients), min(docs)))
    report.notes.append(
        "stalls: times an engine answered nothing for the stall timeout while requests waited "
        "(the old engine's watchdog then restarts it); deadlocks: wait-for cycles between threads "
        "found by `mailslot lockprof --watchdog` (bug-on rows, where the server runs under it)"
    )
    if args.plot is not None:
        _plot(report.rows, args.plot)
        report.notes.append(f"plot: {args.plot}")
    return report


def _one(
    engine: str, k: int, d: int, *, bug: bool, duration: float, warmup: float, workers: int,
    stall: float,
) -> dict[str, Any]:  # fmt: skip
    import psutil

    with tempfile.TemporaryDirectory(prefix="mailslot-bench-") as tmp:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        profile = Path(tmp) / "locks.json"
        lockprof = [
            "lockprof", "--watchdog", str(stall), "--json", "-o", str(profile), "--", "-m",
            "mailslot.cli",
        ]  # fmt: skip
        cmd = [
            sys.executable, "-m", "mailslot.cli", *(lockprof if bug else []), "serve",
            "--port", str(port),
            "--db", f"sqlite:///{tmp}/bench.db", "--engine", "cutover",
            "--flags", _FLAGS[engine], "--no-shadow", "--log-level", "error",
            "--log-format", "console", "--legacy-workers", str(workers),
            "--stall-timeout", str(stall),
            *(["--plant-deadlock"] if bug and engine == "legacy" else []),
        ]  # fmt: skip
        with open(Path(tmp) / "server.log", "wb") as errors:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors)
            try:
                _wait_ready(base, proc)
                server = psutil.Process(proc.pid)
                marks: dict[str, tuple[float, float]] = {}

                def on_window(edge: str) -> None:
                    cpu = server.cpu_times()
                    marks[edge] = (time.perf_counter(), cpu.user + cpu.system)

                names = [f"b{j}" for j in range(d)]

                async def go() -> Any:
                    ws = base.replace("http", "ws", 1) + "/ws"
                    await create_documents(ws, names)
                    return await run_load(
                        ws, names, clients=k, duration=duration, warmup=warmup,
                        on_window=on_window,
                    )  # fmt: skip

                result = _asyncio_run(go())
                stats = _get_json(base + "/api/cutover")
            finally:
                _stop(proc, gently=bug)
        deadlocks = _deadlocks(profile) if bug else None
    (t0, c0), (t1, c1) = marks["start"], marks["end"]
    lat = sorted(result.latencies)
    stalls = int(stats["engines"][engine]["stalls"])
    if engine == "legacy":
        stalls = max(stalls, int(stats["legacy"]["stalls"]))
    acks = result.acks
    return {
        "engine": engine,
        "bug": "on" if bug else "",
        "K": k,
        "D": d,
        "K/D": round(k / d, 3),
        "ops/s": round(acks / result.seconds, 1),
        "p50 ms": round(percentile(lat, 50) * 1000, 2) if lat else None,
        "p99 ms": round(percentile(lat, 99) * 1000, 2) if lat else None,
        "cpu %": round(100 * (c1 - c0) / (t1 - t0), 1),
        "cpu us/op": round(1e6 * (c1 - c0) / acks, 1) if acks else None,
        "errors": result.errors,
        "timeouts": result.timeouts,
        "stalls": stalls,
        "deadlocks": deadlocks,
    }


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several rounds of the same run: medians of the figures, sums of the counts."""
    out = dict(rows[0])
    for key in ("ops/s", "p50 ms", "p99 ms", "cpu %", "cpu us/op"):
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = median(values) if values else None
    for key in ("errors", "timeouts", "stalls", "deadlocks"):
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = sum(values) if values else None
    return out


def _stop(proc: subprocess.Popen[bytes], *, gently: bool) -> None:
    """Kill the server; under lockprof, interrupt it so that the profiler writes its report."""
    if gently and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _deadlocks(report: Path) -> int | None:
    """Distinct wait-for cycles the lock profiler's watchdog found (``None``: no report)."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return None
    return len({frozenset(s["deadlock"]) for s in data.get("stalls", ()) if s.get("deadlock")})


def _verdict(rows: list[dict[str, Any]], k: int, d: int) -> list[str]:
    """The targets, checked at the highest contention (most clients on fewest documents)."""
    pick = {r["engine"]: r for r in rows if (r["K"], r["D"], r["bug"]) == (k, d, "")}
    if set(pick) != {"actor", "legacy"}:
        return []
    a, legacy = pick["actor"], pick["legacy"]
    if not a["p99 ms"] or not legacy["p99 ms"] or not legacy["ops/s"]:
        return ["the highest-contention runs acked nothing: no verdict"]
    below = 1 - a["p99 ms"] / legacy["p99 ms"]
    speedup = a["ops/s"] / legacy["ops/s"]
    stalls = sum(r["stalls"] for r in rows if r["engine"] == "actor")
    deadlocks = {e: sum(r["deadlocks"] or 0 for r in rows if r["engine"] == e) for e in pick}

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return [
        f"at K={k}, D={d}: actor p99 {below:.0%} below legacy "
        f"(target {TARGETS['p99_below']:.0%}: {met(below >= TARGETS['p99_below'])}); "
        f"throughput {speedup:.2f}x (target {TARGETS['throughput']:.0f}x: "
        f"{met(speedup >= TARGETS['throughput'])})",
        f"deadlocks found by the lock profiler with the planted bug on: old engine "
        f"{deadlocks['legacy']}, actor engine {deadlocks['actor']} (target 0: "
        f"{met(deadlocks['actor'] == 0)}); actor stalls (no answer for the stall timeout) {stalls}",
    ]


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    """p99 (top) and throughput (bottom) against the number of clients, one column per D."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    main = [r for r in rows if not r["bug"]]
    docs = sorted({r["D"] for r in main})
    clients = sorted({r["K"] for r in main})
    fig, axes = plt.subplots(2, len(docs), figsize=(4.2 * len(docs), 6.4), squeeze=False)
    for col, d in enumerate(docs):
        for row, (metric, label) in enumerate((("p99 ms", "p99 ack latency (ms)"),
                                               ("ops/s", "acked ops / s"))):  # fmt: skip
            ax = axes[row][col]
            for engine, style in (("legacy", "o-"), ("actor", "s-")):
                points = sorted(
                    (r["K"], r[metric])
                    for r in main
                    if r["D"] == d and r["engine"] == engine and r[metric]
                )
                if points:
                    ax.plot(*zip(*points, strict=True), style, label=f"{engine} engine")
            ax.set_xscale("log")
            ax.set_xticks(clients)
            if row == 0:
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            else:
                ax.set_ylim(bottom=0)
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_formatter(ScalarFormatter())
                axis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="both", alpha=0.3)
            if row == 0:
                ax.set_title(f"{d} document{'s' if d > 1 else ''}")
            else:
                ax.set_xlabel("clients (K)")
            if col == 0:
                ax.set_ylabel(label)
    axes[0][0].legend()
    fig.suptitle(
        "mailslot bench migrate: the old mutex engine and the actor engine as contention rises"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"mailslot serve exited with status {proc.returncode}")
        with contextlib.suppress(OSError):
            _get_json(base + "/healthz")
            return
        time.sleep(0.05)
    raise ConfigError(f"mailslot serve did not answer on {base} within {timeout:.0f}s")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _asyncio_run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the default extras
        return asyncio.run(coro)
    return uvloop.run(coro)
