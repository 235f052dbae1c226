"""Soak: many sessions opened, run and closed from many threads; does anything grow?

Prints JSON (progress goes to stderr). For each backend (`--backend`, repeatable; default all
that start here), `--sessions` sessions (1,000) are opened, run once (`print(1)`) and closed
by `--threads` threads (8) sharing the work. Before (after a warm-up of one session per
thread) and after, it counts what a leak would leave:

    fds, threads      this process's open file descriptors and threads
    rss_mib           this process's resident memory
    host_processes    processes on the host (and the names that grew most, `process_growth`)
    mounts            mounts in the host's mount namespace (`our_mounts`: those naming
                      llm-sandbox, such as the library volumes)
    cgroups           run cgroups of this process anywhere under /sys/fs/cgroup
    containers        docker and podman containers labelled as this process's
    volumes           docker and podman volumes labelled as this process's
    pods              pods labelled as this process's (Kubernetes; the emulator unless
                      KUBECONFIG is set)
    state_dirs        the embedded backend's private directories this process owns

and reports `grew`: every count of ours that is higher after than before (RSS: by more than
`--rss-slack` MiB, the allocator keeps some), and `host_grew` for the host-wide counts (other
processes on the machine change those; `process_growth` names what grew). Each step's p50/p99
(open, run, close) and the errors (by type; none expected) are reported too. With
`--settle-seconds`, the counts are taken once more that long after the end (`settled`):
Podman keeps a conmon process per finished exec for its exit delay (300 s by default).
`--max-seconds` bounds each backend's run.

Run: python3 bench/soak.py [--backend docker ...] [--sessions 1000] [--threads 8]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Run as a script, this directory comes first on sys.path, and bench/kubernetes.py would stand
# in for the Kubernetes client package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from llm_sandbox import SandboxSession  # noqa: E402
from llm_sandbox.layout import PID_LABEL  # noqa: E402

BACKENDS = ("local", "docker", "podman", "docker+runsc", "kubernetes")
MiB = 1024 * 1024


def log(message: str) -> None:
    print(f"[soak] {message}", file=sys.stderr, flush=True)


def options(backend: str) -> dict[str, Any]:
    if backend == "docker+runsc":
        return {"backend": "docker", "runtime_config": {"runtime": "runsc"}}
    return {"backend": backend}


def _count_lines(argv: list[str]) -> int:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return -1
    return len(done.stdout.split()) if done.returncode == 0 else -1


def _cgroups() -> int:
    """The embedded backend's run cgroups of this process (`llm-sandbox-<pid>-...`)."""
    mine = f"llm-sandbox-{os.getpid()}-"
    found = 0
    for _, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += sum(1 for d in dirs if d.startswith(mine))
    return found


def _state_dirs() -> int:
    """The embedded backend's private directories of this process (they hold its pid)."""
    found = 0
    for path in Path(tempfile.gettempdir()).glob("llm-sandbox-*"):
        try:
            found += (path / "owner").read_text().strip() == str(os.getpid())
        except OSError:
            continue
    return found


def _pods() -> int:
    try:
        from llm_sandbox.backends.kubernetes.client import default_client

        core, _ = default_client()
    except Exception:
        return -1
    try:
        selector = f"{PID_LABEL}={os.getpid()}"
        return len(core.list_pod_for_all_namespaces(label_selector=selector).items)
    except Exception:
        return -1
    finally:
        core.api_client.close()


HOST_WIDE = ("host_processes", "mounts")


def process_names() -> collections.Counter[str]:
    names: collections.Counter[str] = collections.Counter()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                names[Path(f"/proc/{pid}/comm").read_text().strip()] += 1
            except OSError:
                continue
    return names


def snapshot() -> dict[str, float]:
    pods = _pods()  # first: it may import the Kubernetes client, which RSS must include
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    label = f"label={PID_LABEL}={os.getpid()}"
    mounts = Path("/proc/1/mountinfo").read_text().splitlines()
    counts: dict[str, float] = {
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": int(fields["Threads"]),
        "rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "host_processes": sum(1 for p in os.listdir("/proc") if p.isdigit()),
        "mounts": len(mounts),
        "our_mounts": sum(1 for line in mounts if "llm-sandbox" in line),
        "cgroups": _cgroups(),
        "state_dirs": _state_dirs(),
        "pods": pods,
    }
    for engine in ("docker", "podman"):
        counts[f"{engine}_containers"] = _count_lines([engine, "ps", "-aq", "--filter", label])
        volumes = [engine, "volume", "ls", "-q", "--filter", label]
        counts[f"{engine}_volumes"] = _count_lines(volumes)
    return counts


def one_session(
    backend: str, timings: dict[str, list[float]], errors: collections.Counter[str]
) -> None:
    session = SandboxSession(lang="python", **options(backend))
    started = time.monotonic()
    try:
        session.open()
        opened = time.monotonic()
        result = session.run("print(1)")
        ran = time.monotonic()
        if result.stdout != "1\n":
            errors["wrong output"] += 1
    except Exception as exc:  # counted, reported; the soak goes on
        errors[type(exc).__name__] += 1
        session.close()
        return
    session.close()
    closed = time.monotonic()
    timings["open"].append(opened - started)
    timings["run"].append(ran - opened)
    timings["close"].append(closed - ran)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 4), "p99": round(p99, 4)}


def soak(
    backend: str,
    sessions: int,
    threads: int,
    *,
    max_seconds: float,
    rss_slack: float,
    settle_seconds: float,
) -> dict[str, Any]:
    timings: dict[str, list[float]] = collections.defaultdict(list)
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    left = [sessions]
    deadline = [0.0]

    def worker() -> None:
        one_session(backend, collections.defaultdict(list), collections.Counter())  # warm-up
        warm.wait()
        while True:
            with lock:
                if left[0] <= 0 or time.monotonic() > deadline[0]:
                    return
                left[0] -= 1
            local_t: dict[str, list[float]] = collections.defaultdict(list)
            local_e: collections.Counter[str] = collections.Counter()
            one_session(backend, local_t, local_e)
            with lock:
                for step, values in local_t.items():
                    timings[step] += values
                errors.update(local_e)
                done = sessions - left[0]
                if done % 100 == 0:
                    log(f"{backend}: {done} sessions")

    before: dict[str, float] = {}
    names_before: collections.Counter[str] = collections.Counter()
    started = [0.0]

    def measure_before() -> None:
        before.update(snapshot())
        names_before.update(process_names())
        started[0] = time.monotonic()
        deadline[0] = started[0] + max_seconds

    warm = threading.Barrier(threads, action=measure_before)
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.monotonic() - started[0]
    time.sleep(2.0)  # engines reap asynchronously
    after = snapshot()
    growth = process_names()
    growth.subtract(names_before)

    def grown(now: dict[str, float], keys: list[str]) -> list[str]:
        slack = {"rss_mib": rss_slack}
        return [k for k in keys if before[k] >= 0 and now[k] > before[k] + slack.get(k, 0)]

    ours = [k for k in before if k not in HOST_WIDE]
    report: dict[str, Any] = {
        "backend": backend,
        "sessions": len(timings["close"]),
        "threads": threads,
        "seconds": round(elapsed, 1),
        "steps": {step: percentiles(timings[step]) for step in ("open", "run", "close")},
        "errors": dict(errors),
        "before": before,
        "after": after,
        "grew": grown(after, ours),
        "host_grew": grown(after, list(HOST_WIDE)),
        "process_growth": dict(growth.most_common(3)),
    }
    if settle_seconds > 0:
        time.sleep(settle_seconds)
        settled = snapshot()
        report["settled"] = {
            "after_seconds": settle_seconds,
            "counts": settled,
            "grew": grown(settled, ours),
            "host_grew": grown(settled, list(HOST_WIDE)),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=BACKENDS)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--rss-slack", type=float, default=16.0)
    parser.add_argument("--settle-seconds", type=float, default=0.0)
    args = parser.parse_args()
    backends = args.backend or list(BACKENDS)
    if "kubernetes" in backends and not os.environ.get("KUBECONFIG"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from kube_emulator import KubeEmulator

        emulator = KubeEmulator().start()
        path = Path(tempfile.mkdtemp(prefix="kube-emulator-")) / "kubeconfig"
        emulator.write_kubeconfig(path, namespace="default")
        os.environ["KUBECONFIG"] = str(path)
    reports = []
    for backend in backends:
        log(f"{backend}: {args.sessions} sessions on {args.threads} threads")
        reports.append(
            soak(
                backend,
                args.sessions,
                args.threads,
                max_seconds=args.max_seconds,
                rss_slack=args.rss_slack,
                settle_seconds=args.settle_seconds,
            )
        )
        log(json.dumps(reports[-1]))
    print(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
