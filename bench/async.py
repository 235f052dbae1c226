"""The async API: what it costs, and the measurement that chose its direction.

Prints JSON (progress on stderr). Two parts:

`workload`, per backend (`--backend`, repeatable; default local and docker): `--runs` runs
(200) spread over `--sessions` sessions (50), all at once,

    async         in one event loop (asyncio) through AsyncSandboxSession
    sync          through SandboxSession on a thread pool with one thread per session
    async_switch  the async mode with `sys.setswitchinterval(0.0005)` (see SWITCH_INTERVAL)

each in a fresh interpreter (so threads and memory are its own). Reported for each: runs per
second and p50/p99 latency of a run, the peak and p99 lag of the event loop (a task that
sleeps 5 ms and notes how late it wakes; `idle_peak_loop_lag_ms`: the same loop for 2 s
before any session opened, which is the machine's own noise; the sync mode reports as
`probe_*` the lag of an idle loop in its main thread beside the pool; both report as
`other_process_*` the lag of an idle loop in another process meanwhile, which is what the
machine's load alone does), the peak number of threads, and the process's memory (RSS
before opening, peak during the runs). Sessions are opened (all at once) and closed outside
the timed part; `open_s` is how long opening them took. `ratios` compares async to sync in
the same run.

`direction`, which decided between an async core with a sync face and the sync core with an
async face (the one built): the cost per call of each bridge, and of running a short process
on worker threads against anyio's native async subprocess, with `--concurrency` (50) at once:

    to_thread_call_us    await anyio.to_thread.run_sync(f): the async face over a sync core
    portal_call_us       a sync thread calling into a running loop (BlockingPortal.call): a
                         sync face over an async core
    anyio_run_call_us    anyio.run(f) per call: a sync face with no loop thread
    to_thread_share_of_a_warm_local_run   the first against a warm run on the embedded
                         backend (median of 10, one at a time)
    processes_per_s      /bin/true run `--processes` times (1000), 50 at once, on worker
                         threads (subprocess) vs natively (anyio.run_process), with the loop's
                         peak lag for each

`--quick` shrinks everything (10 sessions, 40 runs, fewer calls) for a smoke run.

Run: python3 bench/async.py [--backend local --backend docker] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

# Run as a script, this directory comes first on sys.path (bench/kubernetes.py would shadow
# the Kubernetes client package).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from llm_sandbox import AsyncSandboxSession, SandboxSession  # noqa: E402

CODE = "print(sum(range(1000)))"
LAG_TICK = 0.005
MODES = ("async", "sync", "async_switch")
SWITCH_INTERVAL = 0.0005
"""`async_switch`: the async mode with the interpreter's thread switch interval at 0.5 ms
(`sys.setswitchinterval`; 5 ms by default), so the loop's thread waits less for the GIL."""
IDLE_SECONDS = 2.0
"""How long the async mode first measures the lag of its idle loop (the machine's share)."""
MiB = 1024 * 1024


def log(message: str) -> None:
    print(f"[async] {message}", file=sys.stderr, flush=True)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Sampler:
    """Peak threads and RSS, sampled every 20 ms on a thread of its own; and the lag of an
    idle event loop in another process meanwhile (`--probe`): what the machine's load alone
    does to a loop, apart from anything this process does."""

    def __init__(self) -> None:
        self.threads = 0
        self.rss = 0.0
        self.other_process: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._probe: subprocess.Popen[str] | None = None

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.threads = max(self.threads, threading.active_count() - 1)  # less ours
            self.rss = max(self.rss, rss_mib())

    def __enter__(self) -> Sampler:
        argv = [sys.executable, __file__, "--probe"]
        self._probe = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._probe is not None:
            out, _ = self._probe.communicate(timeout=60)
            self.other_process = json.loads(out)

    def report(self) -> dict[str, Any]:
        return {
            "peak_threads": self.threads,
            "rss_peak_mib": round(self.rss, 1),
            **{f"other_process_{key}": value for key, value in self.other_process.items()},
        }


def probe() -> None:
    """`--probe`: note an idle loop's lag until stdin ends; print the report."""
    ended = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        ended.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    monitor = LagMonitor()
    anyio.run(monitor.run, ended.is_set)
    print(json.dumps(monitor.report()))


class LagMonitor:
    """How late a task that sleeps LAG_TICK wakes up: the event loop's lag."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    async def run(self, until: Callable[[], bool] = lambda: False) -> None:
        while not until():
            before = time.monotonic()
            await anyio.sleep(LAG_TICK)
            self.lags.append(max(0.0, time.monotonic() - before - LAG_TICK))

    def report(self) -> dict[str, float]:
        return {
            "peak_loop_lag_ms": round(max(self.lags, default=0.0) * 1000, 2),
            "p99_loop_lag_ms": round(percentile(self.lags, 0.99) * 1000, 2),
        }


def options(backend: str) -> dict[str, Any]:
    if backend == "docker+runsc":
        return {"backend": "docker", "runtime_config": {"runtime": "runsc"}}
    return {"backend": backend}


def summary(latencies: list[float], elapsed: float, errors: dict[str, int]) -> dict[str, Any]:
    return {
        "runs": len(latencies),
        "runs_per_s": round(len(latencies) / elapsed, 2) if elapsed else 0.0,
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "errors": errors,
    }


# --- one mode, in a fresh interpreter ----------------------------------------------------------
def async_mode(backend: str, sessions: int, runs: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        rss_before = rss_mib()
        idle = LagMonitor()
        with anyio.move_on_after(IDLE_SECONDS):
            await idle.run()
        made = [AsyncSandboxSession(lang="python", **options(backend)) for _ in range(sessions)]
        latencies: list[float] = []
        errors: dict[str, int] = {}
        opened: list[AsyncSandboxSession] = []

        async def open_one(session: AsyncSandboxSession) -> None:
            try:
                await session.open()
                opened.append(session)
            except Exception as exc:
                note_error(errors, f"open: {type(exc).__name__}", exc)

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for session in made:
                tg.start_soon(open_one, session)
        open_s = time.monotonic() - started
        monitor = LagMonitor()

        async def worker(session: AsyncSandboxSession, count: int) -> None:
            for _ in range(count):
                began = time.monotonic()
                try:
                    result = await session.run(CODE)
                    if result.exit_code != 0:
                        errors["exit"] = errors.get("exit", 0) + 1
                except Exception as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                latencies.append(time.monotonic() - began)

        with Sampler() as sampler:
            async with anyio.create_task_group() as outer:
                outer.start_soon(monitor.run)
                began = time.monotonic()
                async with anyio.create_task_group() as tg:
                    for index, session in enumerate(opened):
                        tg.start_soon(worker, session, share(runs, len(opened), index))
                elapsed = time.monotonic() - began
                outer.cancel_scope.cancel()
        async with anyio.create_task_group() as tg:
            for session in opened:
                tg.start_soon(session.close)
        return {
            **summary(latencies, elapsed, errors),
            **monitor.report(),
            "idle_peak_loop_lag_ms": idle.report()["peak_loop_lag_ms"],
            "open_s": round(open_s, 2),
            "sessions_opened": len(opened),
            "rss_before_mib": round(rss_before, 1),
            **sampler.report(),
        }

    return asyncio.run(main())


def sync_mode(backend: str, sessions: int, runs: int) -> dict[str, Any]:
    rss_before = rss_mib()
    made = [SandboxSession(lang="python", **options(backend)) for _ in range(sessions)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def open_one(session: SandboxSession) -> SandboxSession | None:
        try:
            session.open()
            return session
        except Exception as exc:
            with lock:
                note_error(errors, f"open: {type(exc).__name__}", exc)
            return None

    def worker(session: SandboxSession, count: int) -> None:
        for _ in range(count):
            began = time.monotonic()
            try:
                result = session.run(CODE)
                failed = None if result.exit_code == 0 else "exit"
            except Exception as exc:
                failed = type(exc).__name__
            with lock:
                latencies.append(time.monotonic() - began)
                if failed:
                    errors[failed] = errors.get(failed, 0) + 1

    with concurrent.futures.ThreadPoolExecutor(sessions) as pool:
        started = time.monotonic()
        opened = [s for s in pool.map(open_one, made) if s is not None]
        open_s = time.monotonic() - started
        probe = LagMonitor()
        with Sampler() as sampler:
            began = time.monotonic()
            futures = [
                pool.submit(worker, session, share(runs, len(opened), index))
                for index, session in enumerate(opened)
            ]
            # An event loop in the same process, doing nothing but note its lag.
            anyio.run(probe.run, lambda: all(f.done() for f in futures))
            for future in futures:
                future.result()
            elapsed = time.monotonic() - began
        list(pool.map(lambda s: s.close(), opened))
    return {
        **summary(latencies, elapsed, errors),
        **{f"probe_{key}": value for key, value in probe.report().items()},
        "open_s": round(open_s, 2),
        "sessions_opened": len(opened),
        "rss_before_mib": round(rss_before, 1),
        **sampler.report(),
    }


def note_error(errors: dict[str, int], key: str, exc: Exception) -> None:
    """Count an error (and say it on stderr once per kind)."""
    if key not in errors:
        log(f"{key}: {str(exc)[:300]}")
    errors[key] = errors.get(key, 0) + 1


def share(runs: int, sessions: int, index: int) -> int:
    """Session `index`'s part of `runs`, spread as evenly as they divide."""
    return runs // sessions + (1 if index < runs % sessions else 0)


def in_fresh_interpreter(mode: str, backend: str, sessions: int, runs: int) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--one", mode, "--backend", backend]
    argv += ["--sessions", str(sessions), "--runs", str(runs)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        return {"failed": done.returncode, "stderr": done.stderr[-2000:]}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def workload(backend: str, sessions: int, runs: int) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for mode in ("async", "sync", "async_switch"):
        log(f"{backend}: {runs} runs over {sessions} sessions, {mode}")
        found[mode] = in_fresh_interpreter(mode, backend, sessions, runs)
    a, s = found["async"], found["sync"]
    if "runs_per_s" in a and "runs_per_s" in s and s["runs_per_s"]:
        found["ratios"] = {
            "runs_per_s_async_over_sync": round(a["runs_per_s"] / s["runs_per_s"], 3),
            "p99_async_over_sync": round(a["p99_ms"] / s["p99_ms"], 3) if s["p99_ms"] else None,
            "threads_async_over_sync": round(a["peak_threads"] / s["peak_threads"], 3)
            if s["peak_threads"]
            else None,
            "rss_growth_async_over_sync": round(
                (a["rss_peak_mib"] - a["rss_before_mib"])
                / max(0.1, s["rss_peak_mib"] - s["rss_before_mib"]),
                3,
            ),
        }
    return found


# --- the direction -------------------------------------------------------------------------------
def noop() -> None:
    return None


async def anoop() -> None:
    return None


async def timed_async(calls: int, call: Callable[[], Awaitable[object]]) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - began) / calls * 1e6


def bridge_costs(calls: int) -> dict[str, float]:
    async def to_thread() -> float:
        return await timed_async(calls, lambda: anyio.to_thread.run_sync(noop))

    found = {"to_thread_call_us": round(anyio.run(to_thread), 1)}
    with anyio.from_thread.start_blocking_portal() as portal:
        began = time.perf_counter()
        for _ in range(calls):
            portal.call(anoop)
        found["portal_call_us"] = round((time.perf_counter() - began) / calls * 1e6, 1)
    few = max(1, calls // 10)
    began = time.perf_counter()
    for _ in range(few):
        anyio.run(anoop)
    found["anyio_run_call_us"] = round((time.perf_counter() - began) / few * 1e6, 1)
    return found


def process_costs(processes: int, concurrency: int) -> dict[str, Any]:
    async def run(native: bool) -> dict[str, float]:
        monitor = LagMonitor()
        limiter = anyio.CapacityLimiter(concurrency)

        async def one() -> None:
            if native:
                async with limiter:
                    await anyio.run_process(["/bin/true"])
            else:
                await anyio.to_thread.run_sync(
                    lambda: subprocess.run(["/bin/true"], check=True), limiter=limiter
                )

        async with anyio.create_task_group() as outer:
            outer.start_soon(monitor.run)
            began = time.monotonic()
            async with anyio.create_task_group() as tg:
                for _ in range(processes):
                    tg.start_soon(one)
            elapsed = time.monotonic() - began
            outer.cancel_scope.cancel()
        return {"processes_per_s": round(processes / elapsed, 1), **monitor.report()}

    async def both() -> dict[str, Any]:
        return {"worker_threads": await run(False), "native_async": await run(True)}

    return anyio.run(both)


def warm_run_ms(backend: str, runs: int = 10) -> float:
    """The median of warm runs of CODE, one at a time, through the sync API."""
    with SandboxSession(lang="python", **options(backend)) as session:
        session.run(CODE)
        times = []
        for _ in range(runs):
            began = time.monotonic()
            session.run(CODE)
            times.append(time.monotonic() - began)
    return percentile(times, 0.5) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", action="append")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: everything smaller")
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe()
        return
    if args.one:
        if args.one == "async_switch":
            sys.setswitchinterval(SWITCH_INTERVAL)
        mode = sync_mode if args.one == "sync" else async_mode
        print(json.dumps(mode(args.backend[0], args.sessions, args.runs)))
        return
    if args.quick:
        args.sessions, args.runs, args.processes = 10, 40, 200
    backends = args.backend or ["local", "docker"]
    calls = 2000 if args.quick else 20000
    log("bridges and processes")
    report: dict[str, Any] = {
        "sessions": args.sessions,
        "runs": args.runs,
        "direction": {
            "bridges": bridge_costs(calls),
            "processes": process_costs(args.processes, args.concurrency),
        },
        "workload": {b: workload(b, args.sessions, args.runs) for b in backends},
    }
    if "local" in backends:
        warm = warm_run_ms("local")
        hop = report["direction"]["bridges"]["to_thread_call_us"] / 1000
        report["direction"]["warm_local_run_ms"] = round(warm, 1)
        report["direction"]["to_thread_share_of_a_warm_local_run"] = round(hop / warm, 5)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
