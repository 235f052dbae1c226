"""What artifact capture costs per run, per backend (JSON, one run; compare as ratios).

For each backend: a trivial Python run in a plain `SandboxSession`, the same run in an
`ArtifactSandboxSession` (hooks placed, directory read back), and a run drawing one matplotlib
figure. Each after one warm-up run; medians of `--repeat` runs.

    python bench/artifacts.py --repeat 10 --backends local docker podman
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

from llm_sandbox import ArtifactSandboxSession, SandboxSession
from llm_sandbox.exceptions import SandboxError

TRIVIAL = "print('hello')"
ONE_PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"


def median_run(session: SandboxSession, code: str, repeat: int) -> float:
    session.run(code)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        session.run(code)
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples), 4)


def measure(backend: str, repeat: int) -> dict[str, object]:
    report: dict[str, object] = {}
    cases: list[tuple[str, Callable[[], SandboxSession], str]] = [
        ("plain_trivial_s", lambda: SandboxSession(backend=backend), TRIVIAL),
        ("artifact_trivial_s", lambda: ArtifactSandboxSession(backend=backend), TRIVIAL),
        ("artifact_one_plot_s", lambda: ArtifactSandboxSession(backend=backend), ONE_PLOT),
    ]
    try:
        for key, make, code in cases:
            with make() as session:
                report[key] = median_run(session, code, repeat)
    except SandboxError as exc:
        report["error"] = str(exc)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--backends", nargs="+", default=["local", "docker", "podman"])
    args = parser.parse_args()
    report = {}
    for backend in args.backends:
        print(f"[bench] artifacts on {backend}", file=sys.stderr, flush=True)
        report[backend] = measure(backend, args.repeat)
    print(json.dumps({"repeat": args.repeat, "per_run": report}, indent=2))


if __name__ == "__main__":
    main()
