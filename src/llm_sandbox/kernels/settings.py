"""The interactive session's options, with the previous generation's names (0.3.x
`llm_sandbox.interactive`)."""

from __future__ import annotations

from dataclasses import dataclass

from llm_sandbox.const import StrEnum


class KernelType(StrEnum):
    """Which kernel runs the cells. Only IPython-semantics kernels exist (for Python that is
    IPython itself; JavaScript and R have kernels of their own with the same contract)."""

    IPYTHON = "ipython"


@dataclass(slots=True)
class InteractiveSettings:
    """Settings of an interactive session (0.3.x fields and defaults).

    `max_memory` is the sandbox's memory limit ("1GB", "512m"; None: the session's default);
    `history_size` how many executed cells `history` keeps; `timeout` each cell's default
    timeout in seconds (None: no limit). `poll_interval` is accepted for compatibility and
    unused: results arrive as messages, not by polling files.
    """

    kernel_type: KernelType = KernelType.IPYTHON
    max_memory: str | None = None
    history_size: int = 1000
    timeout: float | None = 300.0
    poll_interval: float = 0.1

    def __post_init__(self) -> None:
        self.kernel_type = KernelType(self.kernel_type)
        if self.history_size < 0:
            raise ValueError("history_size must be non-negative")
        if self.poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive (or None for no limit)")
