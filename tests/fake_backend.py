"""A test double backend: tests the session's own logic in milliseconds, without a sandbox.

It isolates nothing and runs no real program. A run's "program" is a tiny script in the code
the session places (the language handler decides where; any language works):

    out TEXT      write TEXT and a newline on stdout        err TEXT    the same on stderr
    bytes N       write N bytes of "x" on stdout             sleep S     wait S seconds
    exit N        end with exit code N (default 0)           hang        never end by itself
    oom           end with exit code 137, killed for memory  compile-error  (compile steps fail)

Commands that are not a run (mkdir, installs, a shell line) succeed silently unless a test
sets `FakeSandbox.next_result`. Every exec, kill and close is recorded on the sandbox so tests
can check what the session asked for. Registered as backend "fake" by the `fake_backend`
fixture (`tests/conftest.py`).
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from llm_sandbox.backends.base import (
    STDERR,
    STDOUT,
    Backend,
    ExecRequest,
    ExitStatus,
    Process,
    Sandbox,
)
from llm_sandbox.config import SessionConfig
from llm_sandbox.language_handlers.base import RuntimeNeeds

FOREVER = float("inf")


@dataclass
class _Step:
    delay: float
    stream: int = 0
    data: bytes = b""


@dataclass
class Script:
    """What a fake program does: output steps with delays, then how it ends."""

    steps: list[_Step] = field(default_factory=list)
    exit_code: int = 0
    out_of_memory: bool = False

    @classmethod
    def parse(cls, text: str) -> Script:
        script = cls()
        delay = 0.0
        for line in text.splitlines():
            word, _, rest = line.strip().partition(" ")
            if word == "out":
                script.steps.append(_Step(delay, STDOUT, rest.encode() + b"\n"))
                delay = 0.0
            elif word == "err":
                script.steps.append(_Step(delay, STDERR, rest.encode() + b"\n"))
                delay = 0.0
            elif word == "bytes":
                script.steps.append(_Step(delay, STDOUT, b"x" * int(rest)))
                delay = 0.0
            elif word == "sleep":
                delay += float(rest)
            elif word == "hang":
                delay = FOREVER
            elif word == "exit":
                script.exit_code = int(rest)
            elif word == "oom":
                script.exit_code, script.out_of_memory = 137, True
        script.steps.append(_Step(delay))  # the end, after the last delay
        return script


class FakeProcess(Process):
    def __init__(self, script: Script, sandbox: FakeSandbox) -> None:
        self._steps: Iterator[_Step] = iter(script.steps)
        self._script = script
        self._sandbox = sandbox
        self._pending: _Step | None = None
        self._due = time.monotonic()
        self._killed = threading.Event()
        self.finished = False

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        if self._pending is None:
            step = next(self._steps, None)
            if step is None:
                self.finished = True
                return 0, b""
            self._pending = step
            self._due = time.monotonic() + step.delay
        wait = self._due - time.monotonic()
        if wait > 0:
            self._killed.wait(min(wait, timeout))
            if self._killed.is_set():
                return None
            if self._due - time.monotonic() > 0:
                return None
        step, self._pending = self._pending, None
        if step.stream == 0:
            self.finished = True
            return 0, b""
        return step.stream, step.data

    def wait(self) -> ExitStatus:
        return ExitStatus(self._script.exit_code, self._script.out_of_memory)

    def kill(self) -> None:
        self._killed.set()
        self._sandbox.kills += 1


class FakeSandbox(Sandbox):
    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.execs: list[ExecRequest] = []
        self.kills = 0
        self.closed = 0
        self.files: dict[str, bytes] = {}
        self.next_result: Script | None = None
        FakeBackend.opened.append(self)

    def exec(self, request: ExecRequest) -> Process:
        self.execs.append(request)
        self.files.update(request.files)
        if self.next_result is not None:
            script, self.next_result = self.next_result, None
            return FakeProcess(script, self)
        sources = [content for path, content in request.files.items() if "/code/" in path]
        if sources:
            code = sources[0].decode()
            compiling = len(request.argv) > 0 and request.argv[0] in ("g++", "javac", "go")
            if compiling:
                failed = "compile-error" in code
                return FakeProcess(
                    Script.parse("err compile error\nexit 1" if failed else ""), self
                )
            return FakeProcess(Script.parse(code), self)
        if request.argv[:2] == ["/bin/sh", "-c"]:
            return FakeProcess(Script.parse(request.argv[2]), self)
        return FakeProcess(Script(), self)

    def put_archive(self, dest_dir: str, data: bytes) -> None:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member)
                if extracted is not None:
                    self.files[f"{dest_dir}/{member.name}"] = extracted.read()

    def get_archive(self, path: str) -> bytes:
        if path not in self.files:
            raise FileNotFoundError(f"{path} does not exist in the sandbox")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            content = self.files[path]
            info = tarfile.TarInfo(path.rsplit("/", 1)[-1])
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        return buffer.getvalue()

    def close(self) -> None:
        self.closed += 1


class FakeBackend(Backend):
    name = "fake"
    opened: list[FakeSandbox] = []  # noqa: RUF012 - the record tests read

    def open(self, config: SessionConfig, runtime: RuntimeNeeds) -> Sandbox:
        return FakeSandbox(config)
