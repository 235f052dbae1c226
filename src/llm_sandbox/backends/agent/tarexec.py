"""File transfer for backends without a native archive API: `tar` run inside the sandbox.

The tar process runs as the sandbox user with the sandbox's view of the file system, so a
symlink planted by the code can only ever point inside the sandbox. The host side never
follows paths into the sandbox; it only unpacks the stream with `llm_sandbox.archive`.
"""

from __future__ import annotations

import posixpath

from llm_sandbox.backends.base import ExecRequest, Sandbox, run_to_completion
from llm_sandbox.exceptions import SandboxFileNotFoundError, SandboxRuntimeError


class TarOverExec(Sandbox):
    """`put_archive` / `get_archive` implemented with `exec`."""

    def put_archive(self, dest_dir: str, data: bytes) -> None:
        argv = ["tar", "-x", "--no-same-owner", "--no-same-permissions", "-C", dest_dir, "-f", "-"]
        code, _, err = run_to_completion(self.exec(ExecRequest(argv=argv, stdin=data)))
        if code != 0:
            raise SandboxRuntimeError(
                f"copying into {dest_dir} failed: {err.decode(errors='replace').strip()}"
            )

    def get_archive(self, path: str) -> bytes:
        parent, name = posixpath.split(posixpath.normpath(path))
        argv = ["tar", "-c", "-C", parent or "/", "--", name]
        code, out, err = run_to_completion(self.exec(ExecRequest(argv=argv)))
        if code != 0:
            message = err.decode(errors="replace").strip()
            if "No such file" in message:
                raise SandboxFileNotFoundError(f"{path} does not exist in the sandbox")
            raise SandboxRuntimeError(f"copying {path} out of the sandbox failed: {message}")
        return out
