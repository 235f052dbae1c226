"""Latency of the Docker and Podman backends against the engine's floor and llm-sandbox 0.3.46.

Prints JSON (progress goes to stderr). For each engine (`--engine docker|podman|both`), on the
same engine and the same image, one run measures:

    floor            `docker run --rm IMAGE python3 -c pass` (`podman run --rm ...` for podman)
    ours.one_shot    SandboxSession(backend=E) created, opened, run("print(1)"), closed; its
                     phases are recorded too: open (incl. construction), first_run, close
    ours.warm_run    run("print(1)") in a session that stays open
    prev.*           the same with the previous-generation library, llm-sandbox 0.3.46 from PyPI,
                     installed into a virtualenv of its own under the cache directory (created on
                     first use, reused after) and driven by a small script run with that venv's
                     python; it prints its samples as JSON, which this benchmark parses

The floor, our one-shot and our warm run are interleaved in one loop, so machine noise hits
them alike; the previous library interleaves its own one-shot and warm runs in its process.
Medians are reported, with three ratios and their goals:

    ours.one_shot / prev.one_shot   <= 1/30
    ours.one_shot / floor           <= 2
    ours.warm_run / prev.warm_run   <= 1/4

Notes on driving 0.3.46 fairly: it is given `image=IMAGE, skip_environment_setup=True` (no venv
or pip upgrade inside the container) and, for podman, a PodmanClient on the same service socket
that our backend uses. With environment setup skipped it runs code as `python FILE`; images
built from Debian packages only have `python3`, so the driver points that one command at
`python3` (`session.language_handler.config.execution_commands`), changing nothing else. Its
close stops the container (`container.stop()`), which waits out the 10 s stop grace period
whenever the image's pid 1 ignores SIGTERM; its one-shot repetitions are capped by
`--prev-repeat` and `--prev-budget`.

`--timeout-check` runs `while True: pass` with a 2 s timeout in both libraries and then, with the
session still open, samples from the host the CPU time of every process in the container's pid
namespace (/proc/PID/stat over one second) to tell whether the loop is still running.

Run: python3 bench/containers.py [--engine docker|podman|both] [--repeat 30] [--prev-repeat 10]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import SandboxTimeoutError

IMAGE = "localhost/llm-sandbox/python:1"
PREV_VERSION = "0.3.46"
PREV_REQUIREMENT = f"llm-sandbox[docker,podman]=={PREV_VERSION}"
LABEL_PID = "io.llm-sandbox.pid"
GOALS = {
    "ours_one_shot_over_prev_one_shot": 1 / 30,
    "ours_one_shot_over_floor": 2.0,
    "ours_warm_run_over_prev_warm_run": 1 / 4,
}
TIMEOUT_CODE = "while True: pass"
TIMEOUT_SECONDS = 2.0
CPU_SAMPLE_SECONDS = 1.0
BUSY_CPU_FRACTION = 0.5

# Run by the previous library's venv python as `python -c PREV_DRIVER '<json args>'`.
PREV_DRIVER = r"""
import json, sys, time
from llm_sandbox import SandboxSession

args = json.loads(sys.argv[1])


def log(message):
    print(f"[prev {args['engine']}] {message}", file=sys.stderr, flush=True)


def new_session():
    kwargs = {"lang": "python", "image": args["image"], "skip_environment_setup": True,
              "backend": args["engine"]}
    if args["engine"] == "podman":
        from podman import PodmanClient
        kwargs["client"] = PodmanClient(base_url=args["podman_url"])
    session = SandboxSession(**kwargs)
    # skip_environment_setup=True makes it run `python FILE`; the image only has python3.
    session.language_handler.config.execution_commands = ["python3 {file}"]
    return session


def checked_run(session):
    result = session.run("print(1)")
    if result.exit_code != 0 or result.stdout.strip() != "1":
        raise RuntimeError(f"run('print(1)') gave exit {result.exit_code}, "
                           f"stdout {result.stdout!r}, stderr {result.stderr!r}")


def bench():
    samples = {k: [] for k in ("one_shot", "open", "first_run", "close", "warm_run")}
    warm = new_session()
    warm.open()
    try:
        checked_run(warm)
        started = time.monotonic()
        for i in range(max(args["repeat"], args["prev_repeat"])):
            if i < args["repeat"]:
                t0 = time.perf_counter()
                checked_run(warm)
                samples["warm_run"].append(time.perf_counter() - t0)
            within_budget = not samples["one_shot"] or (
                time.monotonic() - started < args["budget"])
            if i < args["prev_repeat"] and within_budget:
                t0 = time.perf_counter()
                session = new_session()
                session.open()
                t1 = time.perf_counter()
                checked_run(session)
                t2 = time.perf_counter()
                session.close()
                t3 = time.perf_counter()
                samples["open"].append(t1 - t0)
                samples["first_run"].append(t2 - t1)
                samples["close"].append(t3 - t2)
                samples["one_shot"].append(t3 - t0)
                log(f"one-shot {len(samples['one_shot'])}: {t3 - t0:.3f} s "
                    f"(close {t3 - t2:.3f} s)")
    finally:
        warm.close()
    print(json.dumps({"samples": samples}), flush=True)


def timeout_check():
    session = new_session()
    session.open()
    try:
        t0 = time.perf_counter()
        try:
            session.run(args["code"], timeout=args["timeout"])
            raised = None
        except Exception as exc:
            raised = type(exc).__name__
        returned = time.perf_counter() - t0
        print(json.dumps({"container": session.container.id, "raised": raised,
                          "returned_after_s": returned}), flush=True)
        sys.stdin.readline()  # the benchmark samples the container, then lets us close
    finally:
        t0 = time.perf_counter()
        session.close()
        print(json.dumps({"close_s": time.perf_counter() - t0}), flush=True)


{"bench": bench, "timeout": timeout_check}[args["mode"]]()
"""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


# --- the engines -------------------------------------------------------------------------------
def podman_url() -> str:
    from llm_sandbox.backends.container.podman import default_socket

    return default_socket()


def engine_problem(engine: str, image: str) -> str | None:
    """Why `engine` cannot be benchmarked here, or None when it can."""
    if shutil.which(engine) is None:
        return f"the {engine} command is not installed (needed for the floor)"
    try:
        if engine == "docker":
            from llm_sandbox.backends.container.docker import engine_reachable
        else:
            from llm_sandbox.backends.container.podman import engine_reachable
    except ImportError as exc:
        return f"the {engine} SDK is not installed ({exc})"
    if not engine_reachable():
        return f"{engine} is not reachable"
    found = subprocess.run(
        [engine, "image", "inspect", image], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        return f"image {image} is not available to {engine}"
    return None


def image_cmd(engine: str, image: str) -> str:
    return subprocess.run(
        [engine, "image", "inspect", "--format", "{{json .Config.Cmd}}", image],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def ours_container(engine: str, session: SandboxSession) -> str:
    """The id of the one container our session (the only one open in this process) runs in.

    Found from the host by the label our backend puts on its containers; failing that, from
    the session's sandbox object.
    """
    listed = subprocess.run(
        [engine, "ps", "-q", "--no-trunc", "--filter", f"label={LABEL_PID}={os.getpid()}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if len(listed) == 1:
        return listed[0]
    container = getattr(getattr(session, "_sandbox", None), "container_id", None)
    if not isinstance(container, str):
        raise RuntimeError(f"cannot tell our container on {engine} (labelled: {listed})")
    return container


def container_cpu(engine: str, container: str) -> dict[str, Any]:
    """CPU use of every process in the container's pid namespace, sampled from the host."""
    init_pid = subprocess.run(
        [engine, "inspect", "--format", "{{.State.Pid}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    namespace = os.readlink(f"/proc/{init_pid}/ns/pid")

    def snapshot() -> dict[int, tuple[int, str]]:
        found: dict[int, tuple[int, str]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "ns/pid") != namespace:
                    continue
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                ticks = int(fields[11]) + int(fields[12])  # utime + stime
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except (OSError, ValueError):
                continue
            found[int(entry.name)] = (ticks, argv[:80])
        return found

    before = snapshot()
    started = time.monotonic()
    time.sleep(CPU_SAMPLE_SECONDS)
    after = snapshot()
    elapsed = time.monotonic() - started
    hertz = os.sysconf("SC_CLK_TCK")
    processes: list[dict[str, Any]] = [
        {
            "host_pid": pid,
            "argv": argv,
            "cpu_fraction": round((ticks - before[pid][0]) / hertz / elapsed, 2),
        }
        for pid, (ticks, argv) in sorted(after.items())
        if pid in before
    ]
    busy = [p for p in processes if p["cpu_fraction"] >= BUSY_CPU_FRACTION]
    return {"loop_still_running": bool(busy), "processes": processes}


# --- ours --------------------------------------------------------------------------------------
def checked_run(session: SandboxSession) -> None:
    result = session.run("print(1)")
    if result.exit_code != 0 or result.stdout.strip() != "1":
        raise RuntimeError(
            f"run('print(1)') gave exit {result.exit_code}, stdout {result.stdout!r}, "
            f"stderr {result.stderr!r}"
        )


def measure_ours(engine: str, image: str, repeat: int) -> dict[str, list[float]]:
    """Floor, our one-shot (with its phases) and our warm run, interleaved."""
    floor_argv = [engine, "run", "--rm", image, "python3", "-c", "pass"]
    samples: dict[str, list[float]] = {
        k: [] for k in ("floor", "one_shot", "open", "first_run", "close", "warm_run")
    }
    with SandboxSession(lang="python", backend=engine, image=image) as warm:
        checked_run(warm)
        subprocess.run(floor_argv, check=True, capture_output=True)
        for i in range(repeat):
            samples["floor"].append(
                timed(lambda: subprocess.run(floor_argv, check=True, capture_output=True))
            )
            t0 = time.perf_counter()
            session = SandboxSession(lang="python", backend=engine, image=image)
            session.open()
            t1 = time.perf_counter()
            try:
                checked_run(session)
            finally:
                t2 = time.perf_counter()
                session.close()
            t3 = time.perf_counter()
            samples["open"].append(t1 - t0)
            samples["first_run"].append(t2 - t1)
            samples["close"].append(t3 - t2)
            samples["one_shot"].append(t3 - t0)
            samples["warm_run"].append(timed(lambda: checked_run(warm)))
            log(
                f"{engine} {i + 1}/{repeat}: floor {samples['floor'][-1]:.3f} s, "
                f"one-shot {samples['one_shot'][-1]:.3f} s, warm {samples['warm_run'][-1]:.4f} s"
            )
    return samples


def timeout_check_ours(engine: str, image: str) -> dict[str, Any]:
    with SandboxSession(lang="python", backend=engine, image=image) as session:
        started = time.perf_counter()
        raised = None
        try:
            session.run(TIMEOUT_CODE, timeout=TIMEOUT_SECONDS)
        except SandboxTimeoutError as exc:
            raised = type(exc).__name__
        returned = time.perf_counter() - started
        report: dict[str, Any] = {"raised": raised, "returned_after_s": round(returned, 3)}
        report.update(container_cpu(engine, ours_container(engine, session)))
    return report


# --- the previous library ----------------------------------------------------------------------
def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llm-sandbox-bench"


def prev_python(venv_dir: Path) -> tuple[Path | None, str | None]:
    """The venv's python with llm-sandbox 0.3.46 installed (installing it if needed)."""
    python = venv_dir / "bin" / "python"
    probe = [
        str(python),
        "-c",
        "import importlib.metadata as m, docker, podman; print(m.version('llm-sandbox'))",
    ]

    def installed() -> bool:
        if not python.exists():
            return False
        found = subprocess.run(probe, capture_output=True, text=True, check=False)
        return found.returncode == 0 and found.stdout.strip() == PREV_VERSION

    if installed():
        return python, None
    log(f"creating {venv_dir} with {PREV_REQUIREMENT}")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PREV_REQUIREMENT],
            check=True,
            timeout=900,
            stdout=sys.stderr,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not install {PREV_REQUIREMENT} into {venv_dir}: {exc}"
    if not installed():
        return None, f"{PREV_REQUIREMENT} did not import from {venv_dir}"
    return python, None


def driver_args(engine: str, image: str, mode: str, **extra: Any) -> str:
    args = {"engine": engine, "image": image, "mode": mode, **extra}
    if engine == "podman":
        args["podman_url"] = podman_url()
    return json.dumps(args)


def measure_prev(
    python: Path, engine: str, args: argparse.Namespace
) -> tuple[dict[str, list[float]] | None, str | None]:
    driven = driver_args(
        engine,
        args.image,
        "bench",
        repeat=args.repeat,
        prev_repeat=args.prev_repeat,
        budget=args.prev_budget,
    )
    # Bounded: each one-shot may wait out a 10 s stop grace period, on top of the budget.
    limit = 120 + args.prev_budget + 15 * args.prev_repeat + 5 * args.repeat
    try:
        done = subprocess.run(
            [str(python), "-c", PREV_DRIVER, driven],
            stdout=subprocess.PIPE,
            text=True,
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"the {PREV_VERSION} driver did not finish within {limit:.0f} s"
    if done.returncode != 0:
        return None, f"the {PREV_VERSION} driver failed (exit {done.returncode}); see stderr"
    return json.loads(done.stdout.strip().splitlines()[-1])["samples"], None


def timeout_check_prev(python: Path, engine: str, image: str) -> dict[str, Any]:
    args = driver_args(engine, image, "timeout", code=TIMEOUT_CODE, timeout=TIMEOUT_SECONDS)
    with subprocess.Popen(
        [str(python), "-c", PREV_DRIVER, args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as driver:
        stdin, stdout = driver.stdin, driver.stdout
        if stdin is None or stdout is None:
            return {"error": "no pipes to the driver"}
        try:
            first = stdout.readline()
            if not first:
                return {"error": f"the {PREV_VERSION} driver exited early; see stderr"}
            ran = json.loads(first)
            report: dict[str, Any] = {
                "raised": ran["raised"],
                "returned_after_s": round(ran["returned_after_s"], 3),
            }
            report.update(container_cpu(engine, ran["container"]))
        finally:
            stdin.write("\n")
            stdin.flush()
        closing = stdout.readline()
        if closing:
            report["close_after_timeout_s"] = round(json.loads(closing)["close_s"], 3)
        driver.wait(timeout=60)
    return report


def guarded(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The measurement's report, or its error: one failure does not lose the rest."""
    try:
        return measure()
    except Exception as exc:
        log(f"failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}


# --- the report --------------------------------------------------------------------------------
def summarize(ours: dict[str, list[float]], prev: dict[str, list[float]] | None) -> dict[str, Any]:
    ours_medians = {k: median(v) for k, v in ours.items() if k != "floor"}
    prev_medians = {k: median(v) for k, v in (prev or {}).items()}
    floor = median(ours["floor"])
    ratios = {
        "ours_one_shot_over_prev_one_shot": ratio(
            ours_medians["one_shot"], prev_medians.get("one_shot")
        ),
        "ours_one_shot_over_floor": ratio(ours_medians["one_shot"], floor),
        "ours_warm_run_over_prev_warm_run": ratio(
            ours_medians["warm_run"], prev_medians.get("warm_run")
        ),
    }
    return {
        "median_seconds": {"floor": floor, "ours": ours_medians, "prev": prev_medians or None},
        "samples": {
            "floor": len(ours["floor"]),
            "ours": len(ours["one_shot"]),
            "prev_one_shot": len((prev or {}).get("one_shot", [])),
            "prev_warm_run": len((prev or {}).get("warm_run", [])),
        },
        "ratios": ratios,
        "goals": {k: round(v, 4) for k, v in GOALS.items()},
        "meets_goal": {
            k: (None if value is None else value <= GOALS[k]) for k, value in ratios.items()
        },
    }


def bench_engine(engine: str, args: argparse.Namespace, python: Path | None) -> dict[str, Any]:
    problem = engine_problem(engine, args.image)
    if problem is not None:
        log(f"skipping {engine}: {problem}")
        return {"skipped": problem}
    notes: list[str] = []
    log(f"{engine}: floor and ours, {args.repeat} rounds")
    ours = measure_ours(engine, args.image, args.repeat)
    prev = None
    if python is not None:
        log(f"{engine}: llm-sandbox {PREV_VERSION}, up to {args.prev_repeat} one-shots")
        prev, problem = measure_prev(python, engine, args)
        if problem is not None:
            notes.append(problem)
        elif prev is not None and len(prev["one_shot"]) < args.prev_repeat:
            notes.append(
                f"{PREV_VERSION} one-shots capped at {len(prev['one_shot'])} by --prev-budget"
            )
    report = summarize(ours, prev)
    prev_close = median((prev or {}).get("close", []))
    if prev_close is not None and prev_close < 5.0:
        notes.append(
            f"{PREV_VERSION}'s close (container.stop) took {prev_close} s, not ~10 s: "
            f"it looks as if pid 1 of {args.image} handles SIGTERM itself "
            f"(Cmd {image_cmd(engine, args.image)}), so no stop grace period is waited out; "
            "the 1/30 one-shot goal assumes that 10 s wait"
        )
    if args.timeout_check:
        log(f"{engine}: timeout check ({TIMEOUT_CODE!r}, timeout {TIMEOUT_SECONDS} s)")
        checks: dict[str, Any] = {"ours": guarded(lambda: timeout_check_ours(engine, args.image))}
        if python is not None:
            checks["prev"] = guarded(lambda: timeout_check_prev(python, engine, args.image))
        checks["method"] = (
            f"after the timeout, with the session still open: CPU time of each process in the "
            f"container's pid namespace over {CPU_SAMPLE_SECONDS} s (/proc/PID/stat); "
            f"still running = some process at >= {BUSY_CPU_FRACTION} CPU"
        )
        report["timeout_check"] = checks
    if notes:
        report["notes"] = notes
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--engine", choices=("docker", "podman", "both"), default="both")
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--repeat", type=int, default=30, help="rounds of everything else")
    parser.add_argument(
        "--prev-repeat", type=int, default=10, help=f"one-shots of {PREV_VERSION} (slow close)"
    )
    parser.add_argument(
        "--prev-budget",
        type=float,
        default=150.0,
        help=f"stop {PREV_VERSION} one-shots after this many seconds (at least one runs)",
    )
    parser.add_argument("--cache-dir", type=Path, default=default_cache())
    parser.add_argument("--skip-prev", action="store_true", help=f"do not measure {PREV_VERSION}")
    parser.add_argument("--timeout-check", action="store_true")
    args = parser.parse_args()

    report: dict[str, Any] = {
        "image": args.image,
        "repeat": args.repeat,
        "prev_repeat": args.prev_repeat,
        "prev_library": None,
        "engines": {},
    }
    python = None
    if not args.skip_prev:
        venv_dir = args.cache_dir / "prev-venv"
        python, problem = prev_python(venv_dir)
        report["prev_library"] = {"requirement": PREV_REQUIREMENT, "venv": str(venv_dir)}
        if problem is not None:
            report["prev_library"]["error"] = problem
    engines = ("docker", "podman") if args.engine == "both" else (args.engine,)
    for engine in engines:
        report["engines"][engine] = guarded(functools.partial(bench_engine, engine, args, python))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
