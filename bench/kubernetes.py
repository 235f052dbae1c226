"""Latency of the kubernetes backend through the API emulator, against the docker backend.

Prints JSON (progress goes to stderr). The emulator (tests/kube_emulator, a test double that
runs pods as Docker containers) serves the API on loopback, so the numbers are for catching
regressions in our code path (client, websocket exec, agent), not predictions for a cluster,
where scheduling and the image pull dominate start-up.

Interleaved in one loop, so machine noise hits them alike:

    kubernetes.one_shot   SandboxSession(backend="kubernetes") opened, run("print(1)"), closed
    docker.one_shot       the same with backend="docker" (same engine, same image)
    kubernetes.warm_run   run("print(1)") in an open session (through the agent)
    docker.warm_run       the same on docker
    kubernetes.exec_per_run  `python3 -c 'print(1)'` as an exec of its own (a fresh websocket):
                          what each run would cost without the long-lived agent

Medians in seconds, and kubernetes/docker ratios.

Run: python3 bench/kubernetes.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# This file is named like the client package: take its directory off the path, add the tests'.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.insert(0, str(_here.parent / "tests"))

from kube_emulator import KubeEmulator  # noqa: E402
from llm_sandbox import SandboxSession  # noqa: E402
from llm_sandbox.backends.base import run_to_completion  # noqa: E402


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def one_shot(backend: str) -> None:
    with SandboxSession(lang="python", backend=backend) as session:
        session.run("print(1)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    emulator = KubeEmulator().start()
    config = Path(tempfile.mkdtemp(prefix="kube-emulator-bench-")) / "kubeconfig"
    os.environ["KUBECONFIG"] = str(emulator.write_kubeconfig(config))
    samples: dict[str, list[float]] = {
        "kubernetes.one_shot": [],
        "docker.one_shot": [],
        "kubernetes.warm_run": [],
        "docker.warm_run": [],
        "kubernetes.exec_per_run": [],
    }
    try:
        one_shot("kubernetes")  # imports and first connections out of the measurements
        with (
            SandboxSession(lang="python", backend="kubernetes") as kube,
            SandboxSession(lang="python", backend="docker") as docker,
        ):
            sandbox: Any = kube._sandbox
            for i in range(args.repeat):
                print(f"round {i + 1}/{args.repeat}", file=sys.stderr)
                for backend in ("kubernetes", "docker"):
                    samples[f"{backend}.one_shot"].append(
                        timed(functools.partial(one_shot, backend))
                    )
                for backend, session in (("kubernetes", kube), ("docker", docker)):
                    samples[f"{backend}.warm_run"].append(
                        timed(functools.partial(session.run, "print(1)"))
                    )
                samples["kubernetes.exec_per_run"].append(
                    timed(
                        lambda: run_to_completion(sandbox._one_off(["python3", "-c", "print(1)"]))
                    )
                )
    finally:
        emulator.stop()
    medians = {name: round(statistics.median(values), 4) for name, values in samples.items()}
    ratios = {
        "one_shot kubernetes/docker": round(
            medians["kubernetes.one_shot"] / medians["docker.one_shot"], 2
        ),
        "warm_run kubernetes/docker": round(
            medians["kubernetes.warm_run"] / medians["docker.warm_run"], 2
        ),
        "exec_per_run/warm_run (kubernetes)": round(
            medians["kubernetes.exec_per_run"] / medians["kubernetes.warm_run"], 2
        ),
    }
    print(json.dumps({"repeat": args.repeat, "median_s": medians, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
