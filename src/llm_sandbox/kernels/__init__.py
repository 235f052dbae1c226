"""Interactive kernels: stateful interpreters that run cells and return Jupyter-style results.

```
 host                                          sandbox
 Kernel ── KernelChannel (stdin/stdout/stderr of one long-lived exec) ──► runner process
   requests: one line each on stdin                python_runner.py (IPython)
   frames:   nonce-marked, on stdout/stderr        node_runner.js   (vm + its own transform)
   raw output of user code: everything else        r_runner.R       (eval + png device)
```

* `protocol.py`: the wire format (pure; see its docstring for the descriptors and messages).
* `kernel.py`: `Kernel`, the host side: cells, timeouts, restarts, history, installs.
* `channel.py`: `KernelChannel`, what the kernel needs; `process_channel.py` the channel over
  any backend's `InteractiveProcess` (`ExecRequest(interactive=True)`), which is how
  `InteractiveSandboxSession` (`llm_sandbox.interactive`) runs kernels on every backend;
  `subprocess_channel.py` a channel over a plain host subprocess, with **no isolation**, for
  tests and benchmarks.
* `languages.py`: the runner of each language and the command that starts it.
* `runners/`: the runners themselves (package data, copied into the sandbox).
"""

from llm_sandbox.kernels.channel import STDERR, STDOUT, ChannelExit, KernelChannel, Launcher
from llm_sandbox.kernels.kernel import (
    HistoryEntry,
    InstallReply,
    InstallRequest,
    Kernel,
    KernelInfo,
)
from llm_sandbox.kernels.languages import RUNNERS_DIR, kernel_argv, runner_files, runner_spec
from llm_sandbox.kernels.settings import InteractiveSettings, KernelType

__all__ = [
    "RUNNERS_DIR",
    "STDERR",
    "STDOUT",
    "ChannelExit",
    "HistoryEntry",
    "InstallReply",
    "InstallRequest",
    "InteractiveSettings",
    "Kernel",
    "KernelChannel",
    "KernelInfo",
    "KernelType",
    "Launcher",
    "kernel_argv",
    "runner_files",
    "runner_spec",
]
