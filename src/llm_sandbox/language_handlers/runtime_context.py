"""`RuntimeContext`: the paths 0.3.x sessions handed to a handler's command methods.

Kept so that 0.3.x handlers keep working: `get_execution_commands(code_file, runtime_context)`
and `get_library_installation_command(library, runtime_context)` still receive one. This
generation's built-in handlers do not depend on it (there is no per-session virtualenv: every
sandbox has the same layout, see `llm_sandbox.layout`), so they accept it and ignore it.

What a session passes to a handler's own override of those methods:

* for a run, `workdir` is a fresh, writable directory of that run (where 0.3.x's C++ handler
  put its `a.out`); the commands themselves run in the session's `workdir`;
* for an install, `workdir` is the language's libraries directory (the one writable place
  during an install);
* the Python fields are None: there is no virtualenv, `python3` and `python3 -m pip` are the
  sandbox's own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RuntimeContext:
    """Paths a handler may use when it builds its commands (see the module docstring)."""

    workdir: str
    python_executable_path: str | None = None
    pip_executable_path: str | None = None
    pip_cache_dir: str | None = None
