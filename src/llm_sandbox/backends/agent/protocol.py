"""The agent's wire protocol and the shell it runs, as pure functions (no I/O).

See the package docstring for how the agent works. Everything here builds strings and bytes:
the agent script itself, the script of one command, its end markers, the kill loop.
"""

from __future__ import annotations

import os
import secrets
import shlex
from collections.abc import Mapping, Sequence

from llm_sandbox.backends.base import ExecRequest
from llm_sandbox.layout import CA_ENV, HOST_CA_BUNDLE, LIBS_DIR, RUN_SCRIPT, SUPPORT_DIR

CA_BUNDLE = f"{SUPPORT_DIR}/host-ca.pem"
STDIN_FILE = f"{SUPPORT_DIR}/stdin"
INSTALL_TMP = f"{LIBS_DIR}/.tmp"


def kill_loop(keep: str) -> str:
    """sh that SIGKILLs every process of our user but itself and `keep` until none is alive.

    Builtins only, so the loop forks nothing it would then have to kill; zombies are already
    dead (pid 1 reaps them); bounded against a process stuck in the kernel. pid 1 is skipped:
    where it runs as our user (Kubernetes: one user per container) the kernel ignores SIGKILL
    sent to a namespace's init from inside, and the loop would wait on it forever.
    """
    return (
        f"keep={keep}; i=0; while [ $i -lt 2000 ]; do i=$((i+1)); alive=0; "
        "for d in /proc/[0-9]*; do p=${d#/proc/}; "
        '{ [ "$p" = "$$" ] || [ "$p" = "$keep" ] || [ "$p" = 1 ]; } && continue; '
        '[ -O "$d" ] || continue; '
        'read -r _ _ st _ < "$d/stat" 2>/dev/null || continue; [ "$st" = Z ] && continue; '
        'kill -9 "$p" 2>/dev/null; alive=1; done; [ $alive = 0 ] && break; done'
    )


KILL_ALL = kill_loop("0")

OOM_COUNT = "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>&-"
"""sh printing the container cgroup's OOM kill counter (cgroup v2, then v1)."""


def oom_kill_count(out: bytes) -> int:
    """The counter from OOM_COUNT's output (0 when the cgroup does not say)."""
    lines = out.decode(errors="replace").splitlines()
    counts = [int(line.split()[1]) for line in lines if line.startswith("oom_kill ")]
    return max(counts, default=0)


_END = 'printf \'\\000llm-sandbox-end:%s:%d\\000\' "$nonce" "$rc"'

# The agent: read a header, save the script, run it (the script ends by exec-ing the program,
# so the agent waits on the program itself), kill what the run left behind, print the end
# markers. dash reports a child killed by a signal ("Killed") on that command's own stderr,
# so the script runs with stderr on /dev/null and first restores the real one from fd 3.
AGENT_SCRIPT = (
    'while read -r nonce size; do head -c "$size" > "$0" || exit 1; '
    'sh "$0" 3>&2 2>/dev/null; rc=$?; ' + kill_loop("$$") + f"; {_END}; {_END} >&2; done"
)


def marker(nonce: str) -> bytes:
    return b"\0llm-sandbox-end:" + nonce.encode() + b":"


def run_script(
    argv: Sequence[str],
    *,
    files: Sequence[tuple[str, int]],
    stdin_size: int,
    stdin_path: str,
    env: Mapping[str, str],
    cwd: str,
    under_agent: bool = True,
) -> str:
    """The script for one command: place files and stdin, then exec argv.

    Under the agent, stderr starts on /dev/null and the real one waits on fd 3 (see
    AGENT_SCRIPT); a script run by an exec of its own has its stderr already.
    """
    q = shlex.quote
    lines = ["exec 2>&3 3>&-"] if under_agent else []
    for path, size in files:
        parent = path.rsplit("/", 1)[0] or "/"
        mkdir = f"{{ [ -d {q(parent)} ] || mkdir -p {q(parent)}; }}"
        lines.append(f"{mkdir} && head -c {size} > {q(path)} || exit 125")
    lines.append(f"head -c {stdin_size} > {q(stdin_path)} || exit 125")
    lines += [f"export {name}={q(value)}" for name, value in sorted(env.items())]
    lines.append(f"cd {q(cwd)} || exit 125")
    lines.append(f"exec {' '.join(map(q, argv))} < {q(stdin_path)}")
    return "\n".join(lines) + "\n"


def prepare(request: ExecRequest, workdir: str, *, under_agent: bool) -> tuple[str, bytes]:
    """The script for `request` and the bytes it reads from stdin (files, then stdin)."""
    files = list(request.files.items())
    env = dict(request.env)
    if request.writable_libs:
        # Installers unpack into TMPDIR; on the memory-backed /tmp a big install would
        # exhaust the memory limit, so they use scratch space on the libraries volume.
        env["TMPDIR"] = INSTALL_TMP
    if request.network and os.path.isfile(HOST_CA_BUNDLE):
        # Installers inside trust what the host trusts (e.g. a TLS-inspecting proxy's CA).
        with open(HOST_CA_BUNDLE, "rb") as f:
            files.append((CA_BUNDLE, f.read()))
        env.update({name: CA_BUNDLE for name in CA_ENV})
    stdin = request.stdin or b""
    script = run_script(
        request.argv,
        files=[(path, len(content)) for path, content in files],
        stdin_size=len(stdin),
        # root's files in the sticky support directory are not the sandbox user's to reuse
        stdin_path=f"{STDIN_FILE}-install" if request.writable_libs else STDIN_FILE,
        env=env,
        cwd=request.cwd or workdir,
        under_agent=under_agent,
    )
    if request.writable_libs:
        script = f"mkdir -p {INSTALL_TMP} || exit 125\n{script}"
    return script, b"".join(content for _, content in files) + stdin


def new_nonce() -> str:
    return secrets.token_hex(16)


def agent_message(nonce: str, script: str, payload: bytes) -> bytes:
    """What the agent reads for one command (see the module docstring)."""
    encoded = script.encode()
    return f"{nonce} {len(encoded)}\n".encode() + encoded + payload


AGENT_ARGV = ("sh", "-c", AGENT_SCRIPT, RUN_SCRIPT)
"""The agent's own exec: the script is kept in RUN_SCRIPT while it runs."""
