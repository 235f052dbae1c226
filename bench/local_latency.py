"""Latency of the embedded backend against the floor of a bare bubblewrap sandbox.

Prints JSON. All three are measured in one run, interleaved, so machine noise hits them alike;
compare the ratios, not the absolute numbers.

    floor     bwrap --unshare-all <system dirs> python3 -c pass
    one_shot  SandboxSession open + run("print(1)") + close
    warm_run  run("print(1)") in an open session

Goals: one_shot <= 3 x floor, warm_run <= 2 x floor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable

from llm_sandbox import SandboxSession
from llm_sandbox.backends.local.bwrap import HostLayout
from llm_sandbox.backends.local.host import probe
from llm_sandbox.language_handlers.python import host_python_prefix


def floor_argv() -> list[str]:
    host = probe()
    argv = [host.bwrap, "--unshare-all", "--die-with-parent"]
    for path, target in HostLayout.probe().system:
        argv += ["--symlink", target, path] if target else ["--ro-bind", path, path]
    prefix = host_python_prefix()
    if not prefix.startswith("/usr"):
        argv += ["--ro-bind", prefix, prefix]
    return [*argv, "--proc", "/proc", "--dev", "/dev", f"{prefix}/bin/python3", "-c", "pass"]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    argv = floor_argv()
    samples: dict[str, list[float]] = {"floor": [], "one_shot": [], "warm_run": []}

    def one_shot() -> None:
        with SandboxSession(lang="python") as session:
            session.run("print(1)")

    with SandboxSession(lang="python") as warm:
        warm.run("print(1)")
        for _ in range(args.repeat):
            samples["floor"].append(timed(lambda: subprocess.run(argv, check=True)))
            samples["one_shot"].append(timed(one_shot))
            samples["warm_run"].append(timed(lambda: warm.run("print(1)")))

    medians = {name: statistics.median(values) for name, values in samples.items()}
    report = {
        "repeat": args.repeat,
        "median_seconds": {k: round(v, 4) for k, v in medians.items()},
        "ratio_to_floor": {
            "one_shot": round(medians["one_shot"] / medians["floor"], 2),
            "warm_run": round(medians["warm_run"] / medians["floor"], 2),
        },
        "goals": {"one_shot": 3.0, "warm_run": 2.0},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
