"""Interactive kernels: start time and cell round trips, per language and backend. Prints JSON.

`subprocess` measures the runners as plain host processes (`SubprocessChannel`, no sandbox):
the floor a backend adds its transport to. Per language:

    start_s         Kernel.start(): launch, handshake, ready (median of --starts)
    trivial_ms      a trivial cell (`x += 1`) round trip, median and p99 of --cells
    dataframe_ms    (python, pandas) a 1000-row DataFrame as the cell's value: HTML + text
    matplotlib_ms   (python, matplotlib) a line plot shown as PNG
    ggplot_ms       (r, ggplot2) a scatter plot as PNG

With --ipykernel PYTHON, the same start and trivial-cell figures for ipykernel driven by
jupyter_client over ZMQ on the same host, from PYTHON's environment (which must have
ipykernel and jupyter_client): the alternative the runners were chosen over.

`backends` measures `InteractiveSandboxSession` (Python) on each backend of --backends
(local, docker, podman, docker+runsc, kubernetes: the last needs a kubeconfig in
$KUBECONFIG, e.g. the test emulator's): `start_s` is session open to the first cell's result
(median of --starts), then the same cells as above. With --oldgen PYTHON (a virtual
environment with llm-sandbox==0.3.46 and docker), the previous generation's
InteractiveSandboxSession on Docker with our default Python image, in the same run:
`ratio_trivial` is its trivial-cell median over ours on docker.

    .venv/bin/python bench/interactive.py [--cells 500] [--ipykernel /path/to/python]
        [--backends local,docker] [--oldgen /tmp/oldgen-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# bench/kubernetes.py would shadow the kubernetes client package: take this directory off.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]

from llm_sandbox.kernels import Kernel, kernel_argv  # noqa: E402
from llm_sandbox.kernels.runners import local_dir  # noqa: E402
from llm_sandbox.kernels.subprocess_channel import SubprocessChannel  # noqa: E402
from llm_sandbox.language_handlers.python import host_python_prefix  # noqa: E402

TRIVIAL = {
    "python": ("x = 0", "x += 1"),
    "javascript": ("let x = 0", "x += 1"),
    "r": ("x <- 0", "x <- x + 1"),
}


def interpreters() -> dict[str, list[str]]:
    found = {}
    python = os.path.join(host_python_prefix(), "bin", "python3")
    probe = subprocess.run([python, "-c", "import IPython"], capture_output=True, check=False)
    if probe.returncode == 0:
        found["python"] = [python]
    for lang, name in (("javascript", "node"), ("r", "Rscript")):
        path = shutil.which(name)
        if path:
            found[lang] = [path]
    return found


def kernel(lang: str, command: list[str]) -> Kernel:
    argv = kernel_argv(lang, runner_dir=local_dir(), interpreter=command)
    return Kernel(SubprocessChannel, argv, language=lang)


def ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "median": round(statistics.median(ordered) * 1000, 3),
        "p99": round(p99 * 1000, 3),
        "n": len(ordered),
    }


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def cells(
    run: Callable[[str], Any], code: str, count: int, check: Callable[[Any], bool]
) -> list[float]:
    """Round trips of `count` runs of `code` through `run` (a kernel's or a session's)."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        result = run(code)
        samples.append(time.perf_counter() - started)
        if not check(result):
            raise RuntimeError(f"unexpected result of {code!r}: {result}")
    return samples


def has_png(result: Any) -> bool:
    return result.error is None and any("image/png" in b for b in result.results)


def measure(lang: str, command: list[str], args: argparse.Namespace) -> dict[str, Any]:
    starts = []
    for _ in range(args.starts):
        k = kernel(lang, command)
        starts.append(timed(k.start))
        k.close()
    out: dict[str, Any] = {"start_s": round(statistics.median(starts), 3)}
    with kernel(lang, command) as k:
        info = k.info
        out["implementation"] = info.implementation if info else ""
        setup, trivial = TRIVIAL[lang]
        k.execute(setup)
        cells(k.execute, trivial, 20, lambda r: r.error is None)  # warm up
        out["trivial_ms"] = ms(cells(k.execute, trivial, args.cells, lambda r: r.error is None))
        if lang == "python":
            if k.execute("import pandas as pd").error is None:
                k.execute(
                    "df = pd.DataFrame({'a': range(1000), 'b': [str(i) for i in range(1000)]})"
                )
                out["dataframe_ms"] = ms(
                    cells(k.execute, "df", args.rich, lambda r: "text/html" in r.results[0])
                )
            if k.execute("import matplotlib.pyplot as plt").error is None:
                plot = "plt.plot(range(100))\nplt.show()"
                out["matplotlib_ms"] = ms(cells(k.execute, plot, args.rich, has_png))
        if lang == "r" and k.execute("library(ggplot2)").error is None:
            plot = "ggplot(data.frame(a = 1:100, b = rnorm(100)), aes(a, b)) + geom_point()"
            out["ggplot_ms"] = ms(cells(k.execute, plot, args.rich, has_png))
    return out


IPYKERNEL = r"""
import json, statistics, sys, time
from jupyter_client.manager import start_new_kernel
cells, starts = int(sys.argv[1]), int(sys.argv[2])
start_times = []
for _ in range(starts):
    t = time.perf_counter()
    km, kc = start_new_kernel(kernel_name="python3")
    start_times.append(time.perf_counter() - t)
    kc.stop_channels(); km.shutdown_kernel(now=True)
km, kc = start_new_kernel(kernel_name="python3")
kc.execute_interactive("x = 0")
samples = []
for i in range(cells + 20):
    t = time.perf_counter()
    reply = kc.execute_interactive("x += 1", output_hook=lambda msg: None)
    if i >= 20:
        samples.append(time.perf_counter() - t)
    assert reply["content"]["status"] == "ok"
kc.stop_channels(); km.shutdown_kernel(now=True)
import ipykernel
print(json.dumps({"start": start_times, "cells": samples, "version": ipykernel.__version__}))
"""


def measure_ipykernel(python: str, args: argparse.Namespace) -> dict[str, Any]:
    done = subprocess.run(
        [python, "-c", IPYKERNEL, str(args.cells), str(args.starts)],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "implementation": f"ipykernel {data['version']} over ZMQ (jupyter_client)",
        "start_s": round(statistics.median(data["start"]), 3),
        "trivial_ms": ms(data["cells"]),
    }


def backend_options(name: str) -> dict[str, Any]:
    if name == "docker+runsc":
        return {"backend": "docker", "runtime_config": {"runtime": "runsc"}}
    return {"backend": name}


def measure_backend(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from llm_sandbox import InteractiveSandboxSession

    starts = []
    for _ in range(args.starts):
        started = time.perf_counter()
        with InteractiveSandboxSession(**backend_options(name)) as session:
            session.run("pass")
            starts.append(time.perf_counter() - started)
    out: dict[str, Any] = {"start_s": round(statistics.median(starts), 3)}
    with InteractiveSandboxSession(**backend_options(name)) as session:
        ok: Callable[[Any], bool] = lambda r: r.error is None  # noqa: E731
        session.run("x = 0")
        cells(session.run, "x += 1", 20, ok)
        out["trivial_ms"] = ms(cells(session.run, "x += 1", args.cells, ok))
        session.run(
            "import pandas as pd\n"
            "df = pd.DataFrame({'a': range(1000), 'b': [str(i) for i in range(1000)]})"
        )
        out["dataframe_ms"] = ms(
            cells(session.run, "df", args.rich, lambda r: "text/html" in r.results[0])
        )
        session.run("import matplotlib.pyplot as plt")
        plot = "plt.plot(range(100))\nplt.show()"
        out["matplotlib_ms"] = ms(cells(session.run, plot, args.rich, has_png))
    return out


OLDGEN = r"""
import json, statistics, sys, time
from llm_sandbox.interactive import InteractiveSandboxSession
cells = int(sys.argv[1])
t = time.perf_counter()
with InteractiveSandboxSession(lang="python", image=sys.argv[2], verbose=False) as s:
    s.run("x = 0")
    start = time.perf_counter() - t
    samples = []
    for i in range(cells):
        t = time.perf_counter()
        r = s.run("x += 1")
        samples.append(time.perf_counter() - t)
        assert r.exit_code == 0, r
print(json.dumps({"start": start, "cells": samples}))
"""


def measure_oldgen(python: str, args: argparse.Namespace) -> dict[str, Any]:
    """The previous generation's interactive session on Docker (its file polling)."""
    done = subprocess.run(
        [python, "-c", OLDGEN, str(args.oldgen_cells), args.oldgen_image],
        capture_output=True,
        text=True,
        check=False,
        # its own package, not ours from PYTHONPATH
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-1000:]}
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "implementation": "llm-sandbox 0.3.46 InteractiveSandboxSession (docker)",
        "start_s": round(data["start"], 3),
        "trivial_ms": ms(data["cells"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=500)
    parser.add_argument("--rich", type=int, default=20)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--ipykernel", metavar="PYTHON")
    parser.add_argument("--backends", default="", help="comma-separated, e.g. local,docker")
    parser.add_argument("--no-subprocess", action="store_true", help="skip the host runners")
    parser.add_argument("--oldgen", metavar="PYTHON")
    parser.add_argument("--oldgen-cells", type=int, default=30)
    parser.add_argument("--oldgen-image", default="localhost/llm-sandbox/python:1")
    args = parser.parse_args()
    report: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    if not args.no_subprocess:
        report["subprocess"] = {
            lang: measure(lang, command, args) for lang, command in interpreters().items()
        }
    if args.ipykernel:
        report["ipykernel"] = measure_ipykernel(args.ipykernel, args)
    backends = [b for b in args.backends.split(",") if b]
    emulator = None
    if "kubernetes" in backends and not os.environ.get("KUBECONFIG"):
        # The Kubernetes API emulator of the tests (pods as Docker containers).
        sys.path.insert(0, str(_here.parent / "tests"))
        from kube_emulator import KubeEmulator

        emulator = KubeEmulator().start()
        config = Path(tempfile.mkdtemp(prefix="kube-emulator-bench-")) / "kubeconfig"
        os.environ["KUBECONFIG"] = str(emulator.write_kubeconfig(config))
    if backends:
        try:
            report["backends"] = {name: measure_backend(name, args) for name in backends}
        finally:
            if emulator is not None:
                try:
                    emulator.stop()
                except Exception as exc:  # the emulator's own clean-up; not a measurement
                    print(f"stopping the Kubernetes emulator: {exc}", file=sys.stderr)
    if args.oldgen:
        old = measure_oldgen(args.oldgen, args)
        report["oldgen"] = old
        ours = report.get("backends", {}).get("docker")
        if ours and "trivial_ms" in old:
            report["ratio_trivial"] = round(
                old["trivial_ms"]["median"] / ours["trivial_ms"]["median"], 1
            )
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
