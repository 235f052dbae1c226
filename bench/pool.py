"""Pools: acquire latency, warm runs, throughput against one-shot sessions, density, soak.

Prints JSON (progress on stderr). For each backend (`--backend`, repeatable; default all that
start here), measured in one run so the ratios compare like with like:

    acquire_ms        p50/p99 of `acquire()` with an idle sandbox ready (goal: p50 <= 1 ms),
                      its liveness look included; `liveness_look_us` that look alone
    kernels           open + first cell + close of `InteractiveSandboxSession(pool=...)` on a
                      `kernels=True` pool (a warm kernel) against a one-shot interactive
                      session (`--kernel-samples`, default 3), and the speed-up
    warm_print_ms     p50/p99 of `session.run("print(1)")` in a borrowed sandbox, beside
                      `host_python_ms`, the same interpreter started bare on the host
                      (`python3 -c pass`), and their ratio
    throughput        for each thread count (`--threads`, default 1,4,16): acquire + print(1)
                      + release against a one-shot session (open, print(1), close), runs per
                      second and p99 seconds, and the speed-up
    density           idle pooled sandboxes per GiB of host memory (MemAvailable before and
                      after opening `--density-count` idle sandboxes; an estimate on a shared
                      machine)
    soak              with `--soak N`: N acquire/run/release cycles on 8 threads (after a
                      warm-up of 64 that opens every sandbox's connections), with the
                      counts of bench/soak.py (fds, threads, processes, mounts, cgroups,
                      containers, volumes, pods, RSS) before and after, and what grew

    prev_docker       with `--prev` (and docker among the backends): llm-sandbox 0.3.46's pool
                      on Docker doing the same (installed into bench/containers.py's virtualenv
                      on first use), with our docker pool's speed-up over it

Run: python3 bench/pool.py [--backend local ...] [--threads 1,4,16] [--cycles 16] [--soak 1000]
     [--prev]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Run as a script, this directory comes first on sys.path, and bench/kubernetes.py would stand
# in for the Kubernetes client package.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from llm_sandbox import SandboxSession  # noqa: E402
from llm_sandbox.exceptions import SandboxError  # noqa: E402
from llm_sandbox.pool import (  # noqa: E402
    ContainerPoolManager,
    PoolConfig,
    PooledSandboxSession,
    create_pool_manager,
)

BACKENDS = ("local", "docker", "podman", "docker+runsc", "kubernetes")


def _load(name: str) -> Any:
    """Another script of bench/ (shared, not copied): soak.py's options and leak counts,
    containers.py's virtualenv of the previous generation."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOAK = _load("soak")
options = SOAK.options


def log(message: str) -> None:
    print(f"[pool] {message}", file=sys.stderr, flush=True)


def ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered) * 1000, 3),
        "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 3),
        "n": len(ordered),
    }


def wait_idle(pool: ContainerPoolManager, count: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while pool.get_stats()["state_counts"]["idle"] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pool did not get {count} idle sandboxes: {pool.get_stats()}")
        time.sleep(0.01)


def host_python(samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        subprocess.run(["python3", "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return times


def acquire_latency(pool: ContainerPoolManager, samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        wait_idle(pool, 1)
        started = time.perf_counter()
        container = pool.acquire()
        times.append(time.perf_counter() - started)
        pool.release(container)
    return times


def warm_print(pool: ContainerPoolManager, samples: int) -> list[float]:
    times = []
    with PooledSandboxSession(pool) as session:
        session.run("print(1)")
        for _ in range(samples):
            started = time.perf_counter()
            result = session.run("print(1)")
            times.append(time.perf_counter() - started)
            assert result.stdout == "1\n", result
    return times


def liveness_look(pool: ContainerPoolManager, samples: int) -> dict[str, Any]:
    """The look `acquire()` takes at an idle sandbox (`Sandbox.alive`), in microseconds."""
    wait_idle(pool, len(list(pool.containers())))  # none is being wiped (nor looked at)
    container = next(c for c in pool.containers() if c.prepared is not None)
    assert container.prepared is not None
    sandbox = container.prepared.sandbox
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        alive = sandbox.alive()
        times.append(time.perf_counter() - started)
    ordered = sorted(times)
    return {
        "p50": round(statistics.median(ordered) * 1e6, 1),
        "p99": round(ordered[int(0.99 * len(ordered))] * 1e6, 1),
        "answer": alive,  # None: acquire asks the engine or API instead (Kubernetes)
    }


def kernels(backend: str, samples: int) -> dict[str, Any]:
    """Open an interactive session, run its first cell, close it: borrowing a warm kernel from a
    `kernels=True` pool against a one-shot `InteractiveSandboxSession`."""
    from llm_sandbox import InteractiveSandboxSession

    def first_cell(session: InteractiveSandboxSession) -> float:
        started = time.perf_counter()
        with session:
            assert session.run("print(1)").stdout == "1\n"
        return time.perf_counter() - started

    config = PoolConfig(max_pool_size=2, min_pool_size=2)
    pooled = []
    with create_pool_manager(
        config=config, lang="python", kernels=True, **options(backend)
    ) as pool:
        for _ in range(samples):
            wait_idle(pool, 2)
            pooled.append(first_cell(InteractiveSandboxSession(pool=pool)))
    one_shot = [
        first_cell(InteractiveSandboxSession(lang="python", **options(backend)))
        for _ in range(samples)
    ]
    return {
        "pooled_open_cell_close_ms": ms(pooled),
        "one_shot_open_cell_close_ms": ms(one_shot),
        "speedup": round(statistics.median(one_shot) / statistics.median(pooled), 1),
    }


def in_threads(threads: int, cycles: int, one: Any) -> dict[str, float]:
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(cycles):
            started = time.perf_counter()
            try:
                one()
            except SandboxError as exc:
                with lock:
                    errors.append(type(exc).__name__)
                continue
            with lock:
                times.append(time.perf_counter() - started)

    started = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(times) or [float("nan")]
    return {
        "runs_per_s": round(len(times) / wall, 2),
        "p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 4),
        "errors": len(errors),
    }


def throughput(
    backend: str, pool: ContainerPoolManager, threads: int, cycles: int
) -> dict[str, Any]:
    def pooled() -> None:
        with PooledSandboxSession(pool) as session:
            session.run("print(1)")

    def one_shot() -> None:
        with SandboxSession(lang="python", **options(backend)) as session:
            session.run("print(1)")

    result: dict[str, Any] = {
        "pooled": in_threads(threads, cycles, pooled),
        "one_shot": in_threads(threads, cycles, one_shot),
    }
    one = result["one_shot"]["runs_per_s"]
    result["speedup"] = round(result["pooled"]["runs_per_s"] / one, 1) if one else None
    return result


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def density(backend: str, count: int) -> dict[str, Any]:
    before = mem_available()
    config = PoolConfig(max_pool_size=count, min_pool_size=count)
    with create_pool_manager(config=config, **options(backend)) as pool:
        wait_idle(pool, count)
        time.sleep(1.0)
        after = mem_available()
    per = (before - after) // count
    if per < 2**20:  # less than the noise of a shared machine's MemAvailable
        return {"sandboxes": count, "mib_each": None, "per_gib": None, "note": "below noise"}
    return {"sandboxes": count, "mib_each": round(per / 2**20, 1), "per_gib": round(2**30 / per, 1)}


def soak(backend: str, cycles: int) -> dict[str, Any]:
    snapshot = SOAK.snapshot
    config = PoolConfig(max_pool_size=4, min_pool_size=4)
    with create_pool_manager(config=config, **options(backend)) as pool:
        wait_idle(pool, 4)

        def cycle() -> None:
            with PooledSandboxSession(pool) as session:
                session.run("print(1)")

        in_threads(8, 8, cycle)  # warm-up: every sandbox's connections are open
        wait_idle(pool, 4)
        before = snapshot()
        runs = in_threads(8, max(1, cycles // 8), cycle)
        wait_idle(pool, 4)
        after = snapshot()
        stats = pool.get_stats()
    grew = {k: (before[k], after[k]) for k in before if after[k] > before[k] and k != "rss_mib"}
    if after["rss_mib"] > before["rss_mib"] + 20:
        grew["rss_mib"] = (before["rss_mib"], after["rss_mib"])
    return {"runs": runs, "before": before, "after": after, "grew": grew, "pool": stats}


# Run by the previous generation's venv python: its pool on Docker, the same work as ours.
PREV_POOL_DRIVER = r"""
import json, sys, threading, time
from llm_sandbox import SandboxSession
from llm_sandbox.pool import PoolConfig, create_pool_manager

args = json.loads(sys.argv[1])
pool = create_pool_manager(backend="docker", config=PoolConfig(max_pool_size=4, min_pool_size=2),
                           lang="python", image=args["image"], skip_environment_setup=True)
while pool.get_stats()["state_counts"]["idle"] < 2:
    time.sleep(0.05)
# Our images have no venv: point the path 0.3.46 runs at python3, once in each container.
held = [SandboxSession(pool=pool) for _ in range(4)]
for session in held:
    session.open()
    session.execute_command("mkdir -p /sandbox/.sandbox-venv/bin")
    session.execute_command("ln -sf /usr/bin/python3 /sandbox/.sandbox-venv/bin/python")
for session in held:
    session.close()


def run():
    with SandboxSession(pool=pool) as session:
        result = session.run("print(1)")
        assert result.stdout.strip() == "1", (result.exit_code, result.stdout, result.stderr)


acquire = []
for _ in range(args["samples"]):
    started = time.perf_counter()
    container = pool.acquire()
    acquire.append(time.perf_counter() - started)
    pool.release(container)
out = {"acquire_s": acquire, "throughput": {}}
for threads in args["threads"]:
    cycles = max(1, args["cycles"] // threads)
    times, lock = [], threading.Lock()

    def worker():
        for _ in range(cycles):
            started = time.perf_counter()
            run()
            with lock:
                times.append(time.perf_counter() - started)

    started = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out["throughput"][str(threads)] = {"wall": time.perf_counter() - started, "times": times}
print(json.dumps(out), flush=True)
pool.close()
"""


def previous_generation(args: argparse.Namespace, ours: dict[str, Any]) -> dict[str, Any]:
    """llm-sandbox 0.3.46's pool on Docker (a venv of its own, see bench/containers.py)."""
    containers = _load("containers")
    python, problem = containers.prev_python(args.cache_dir / "prev-venv")
    if python is None:
        return {"error": problem}
    driven = {"image": containers.IMAGE, "samples": args.samples, "threads": args.threads}
    driven["cycles"] = args.cycles
    done = subprocess.run(
        [str(python), "-c", PREV_POOL_DRIVER, json.dumps(driven)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-2000:]}
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    result: dict[str, Any] = {"acquire_ms": ms(raw["acquire_s"]), "throughput": {}}
    for threads, run in raw["throughput"].items():
        ordered = sorted(run["times"])
        rate = round(len(ordered) / run["wall"], 2)
        entry = {"runs_per_s": rate, "p99_s": round(ordered[int(0.99 * (len(ordered) - 1))], 4)}
        mine = ours.get("throughput", {}).get(threads, {}).get("pooled", {}).get("runs_per_s")
        entry["ours_over_prev"] = round(mine / rate, 1) if mine and rate else None
        result["throughput"][threads] = entry
    return result


def bench(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    config = PoolConfig(max_pool_size=4, min_pool_size=2)
    with create_pool_manager(config=config, lang="python", **options(backend)) as pool:
        wait_idle(pool, 2)
        result["acquire_ms"] = ms(acquire_latency(pool, args.samples))
        result["liveness_look_us"] = liveness_look(pool, 1000)
        warm = warm_print(pool, args.samples)
        host = host_python(args.samples)
        result["warm_print_ms"] = ms(warm)
        result["host_python_ms"] = ms(host)
        result["warm_print_vs_host_python"] = round(
            statistics.median(warm) / statistics.median(host), 2
        )
        result["throughput"] = {}
        for threads in args.threads:
            log(f"{backend}: {threads} threads")
            result["throughput"][str(threads)] = throughput(
                backend, pool, threads, max(1, args.cycles // threads)
            )
        result["reset_ms"] = {
            k: (round(v * 1000, 1) if v else v) for k, v in pool.get_stats()["reset_time"].items()
        }
    if args.kernel_samples:
        log(f"{backend}: interactive sessions on warm kernels")
        result["kernels"] = kernels(backend, args.kernel_samples)
    result["density"] = density(backend, args.density_count)
    if args.soak:
        result["soak"] = soak(backend, args.soak)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", action="append", choices=BACKENDS)
    parser.add_argument(
        "--threads", default="1,4,16", type=lambda s: [int(x) for x in s.split(",")]
    )
    parser.add_argument(
        "--cycles", type=int, default=16, help="cycles per thread count (split among threads)"
    )
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--density-count", type=int, default=4)
    parser.add_argument(
        "--kernel-samples", type=int, default=3, help="interactive opens to time (0: none)"
    )
    parser.add_argument(
        "--soak", type=int, default=0, help="acquire/run/release cycles (0: no soak)"
    )
    parser.add_argument(
        "--prev", action="store_true", help="also run llm-sandbox 0.3.46's pool on docker"
    )
    parser.add_argument("--cache-dir", type=Path, default=_load("containers").default_cache())
    args = parser.parse_args()
    if any(b == "kubernetes" for b in args.backend or BACKENDS) and not os.environ.get(
        "KUBECONFIG"
    ):
        sys.path.insert(0, str(HERE.parent / "tests"))
        import conftest  # starts the tests' Kubernetes API emulator

        conftest.kube_cluster()
    out: dict[str, Any] = {"command": " ".join(["python3", "bench/pool.py", *sys.argv[1:]])}
    for backend in args.backend or BACKENDS:
        log(backend)
        try:
            out[backend] = bench(backend, args)
        except (SandboxError, OSError, TimeoutError) as exc:
            out[backend] = {"error": f"{type(exc).__name__}: {exc}"}
    if args.prev and isinstance(out.get("docker"), dict):
        log("llm-sandbox 0.3.46's pool on docker")
        out["prev_docker"] = previous_generation(args, out["docker"])
    print(json.dumps(out, indent=2))
    if "conftest" in sys.modules:
        with contextlib.suppress(Exception):  # the emulator may still be deleting a pod
            sys.modules["conftest"].pytest_sessionfinish(None, 0)


if __name__ == "__main__":
    main()
