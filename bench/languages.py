"""Warm-run latency per language on the embedded backend and on Docker (JSON, one run).

For every language a session is opened once, a hello-world runs once to warm caches, then
`--repeat` warm runs are timed. Compiled languages include their compile step in every run
(that is what a user pays). Numbers are for regressions and comparisons within one run.

    python bench/languages.py --repeat 10 --backends local docker
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import SandboxError

HELLO = {
    "python": 'print("hello")',
    "javascript": 'console.log("hello");',
    "java": (
        'public class Main { public static void main(String[] a) { System.out.println("hello"); } }'
    ),
    "cpp": '#include <iostream>\nint main() { std::cout << "hello" << std::endl; }',
    "go": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }',
    "ruby": 'puts "hello"',
    "r": 'cat("hello\\n")',
}


def measure(lang: str, backend: str, repeat: int) -> dict[str, object]:
    try:
        with SandboxSession(lang=lang, backend=backend, execution_timeout=120) as session:
            first = session.run(HELLO[lang])
            if first.stdout != "hello\n":
                return {"error": f"unexpected output: {first.stdout!r} {first.stderr[-300:]!r}"}
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                session.run(HELLO[lang])
                samples.append(time.perf_counter() - started)
    except SandboxError as exc:
        return {"error": str(exc)}
    return {"median_s": round(statistics.median(samples), 4), "min_s": round(min(samples), 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--backends", nargs="+", default=["local", "docker"])
    parser.add_argument("--langs", nargs="+", default=sorted(HELLO))
    args = parser.parse_args()
    report: dict[str, dict[str, object]] = {}
    for lang in args.langs:
        report[lang] = {}
        for backend in args.backends:
            print(f"[bench] {lang} on {backend}", file=sys.stderr, flush=True)
            report[lang][backend] = measure(lang, backend, args.repeat)
    print(json.dumps({"repeat": args.repeat, "warm_run": report}, indent=2))


if __name__ == "__main__":
    main()
