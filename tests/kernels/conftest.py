"""Fixtures of the kernel tests: kernels on real interpreters (see `kernel_support`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from kernel_support import SCRATCH, KernelFactory, interpreter, launcher
from llm_sandbox.kernels import Kernel, kernel_argv
from llm_sandbox.kernels.runners import local_dir


@pytest.fixture(scope="session", autouse=True)
def kernel_scratch() -> Iterator[None]:
    """TMPDIR of every kernel of the run, removed at the end."""
    SCRATCH.append(tempfile.mkdtemp(prefix="llm-kernel-tests-"))
    yield
    shutil.rmtree(SCRATCH.pop(), ignore_errors=True)


@pytest.fixture
def make_kernel() -> Iterator[KernelFactory]:
    """Starts kernels that are closed when the test ends: make_kernel("python", **options)."""
    made: list[Kernel] = []

    def make(
        lang: str, *, cwd: str | None = None, env: dict[str, str] | None = None, **options: Any
    ) -> Kernel:
        argv = kernel_argv(lang, runner_dir=local_dir(), interpreter=interpreter(lang))
        kernel = Kernel(launcher(cwd, env), argv, language=lang, **options)
        made.append(kernel)
        kernel.start()
        return kernel

    yield make
    for kernel in made:
        kernel.close()


def shared(lang: str) -> Iterator[Kernel]:
    argv = kernel_argv(lang, runner_dir=local_dir(), interpreter=interpreter(lang))
    kernel = Kernel(launcher(), argv, language=lang)
    kernel.start()
    yield kernel
    kernel.close()


@pytest.fixture(scope="module")
def py() -> Iterator[Kernel]:
    """One Python kernel for the tests of a module that leave it working."""
    yield from shared("python")


@pytest.fixture(scope="module")
def js() -> Iterator[Kernel]:
    yield from shared("javascript")


@pytest.fixture(scope="module")
def r() -> Iterator[Kernel]:
    yield from shared("r")
