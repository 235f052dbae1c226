"""The agent's wire protocol and the shell it runs, as pure functions (no I/O).

See the package docstring for how the agent and the killer work. Everything here builds
strings and bytes: the agent and killer scripts, the script of one command, its end markers,
the kills.
"""

from __future__ import annotations

import os
import secrets
import shlex
from collections.abc import Mapping, Sequence

from llm_sandbox.backends.base import ExecRequest
from llm_sandbox.config import ResourceLimits
from llm_sandbox.layout import CA_ENV, HOST_CA_BUNDLE, LIBS_DIR, RUN_SCRIPT, SUPPORT_DIR

CA_BUNDLE = f"{SUPPORT_DIR}/host-ca.pem"
STDIN_FILE = f"{SUPPORT_DIR}/stdin"
INSTALL_TMP = f"{LIBS_DIR}/.tmp"


WAIT_GONE_SECONDS = 5
"""How long a kill waits for its processes to exit (one stuck in the kernel may never)."""
QUIET_CENTISECONDS = 20
"""How long a sweep that killed something goes on finding nothing before it ends."""
SWEEP_CENTISECONDS = 300
"""The longest a sweep goes on (a process that keeps being found is left to `wait_gone`)."""
_CENTISECONDS = (
    "read -r {var} _ < /proc/uptime; {var}=$((${{{var}%.*}} * 100 + 1${{{var}#*.}} - 100))"
)
"""sh setting `var` to the uptime in centiseconds (the fraction's leading 0 is not octal)."""


_SPARED_SESSION = (
    'case " $spare " in *" s"*) r={stat}; r=${{r#* * * }}; '
    'case " $spare " in *" s${{r%% *}} "*) {skip};; esac;; esac; '
)
"""sh skipping a process (`skip`) whose session is spared: `$spare` holds `s<sid>` words
(a kernel's session, see `kernel_script`); `stat` is its /proc stat after the name, whose
fourth field is the session id."""


def wait_gone(*, own_only: bool) -> str:
    """sh waiting until no process but pid 1, this shell, the pids in `$spare` and the
    members of the sessions in `$spare` (`s<sid>` words) is alive.

    Builtins only (it must work when no process can be started). It runs after a kill that
    no process escapes (see `reap`), so it lists /proc once and then walks that list, waiting
    on each process in turn; listing /proc again on every pass is slow under gVisor, and the
    busy wait would take the CPU the dying processes need. Zombies count as gone: they run
    nothing, and init reaps them. `own_only` limits the wait to the shell's own user. After it
    `$left` is empty, or the pid of a survivor once WAIT_GONE_SECONDS have passed. The state
    is the field after the last ")" of /proc/<pid>/stat: the name before it is the program's
    to choose and may hold spaces or parentheses.
    """
    own = '[ -O "$1" ] || { shift; continue; }; ' if own_only else ""
    return (
        "read -r t0 _ < /proc/uptime; t0=${t0%.*}; left=; set -- /proc/[0-9]*; "
        "while [ $# -gt 0 ]; do p=${1#/proc/}; "
        'case " 1 $$ $spare " in *" $p "*) shift; continue;; esac; '
        + own
        + '{ read -r s < "$1/stat"; } 2>/dev/null || { shift; continue; }; s=${s##*) }; '
        '[ "${s%% *}" = Z ] && { shift; continue; }; '
        + _SPARED_SESSION.format(stat="$s", skip="shift; continue")
        + "read -r t _ < /proc/uptime; "
        f"[ $((${{t%.*}} - t0)) -ge {WAIT_GONE_SECONDS} ] && {{ left=$p; break; }}; done"
    )


def kill_others() -> str:
    """sh SIGKILLing every process the shell may signal but pid 1, itself and what the words
    of `$spare` name: pids, and `s<sid>` for every member of a session (a kernel's, see
    `kernel_script`).

    `kill -9 -1` signals every process the caller may signal, atomically: the kernel holds
    the task list while it does, and a process with SIGKILL pending cannot fork, so nothing
    escapes by forking (a loop over /proc races a fork bomb that refills freed slots). With
    something to spare, everything is first stopped the same way, then all but that is
    killed one by one (stopped processes cannot fork either) and the rest resumes. Either way
    /proc is then swept until a pass finds nothing left to kill: gVisor's `kill -1` is not
    atomic against a fork bomb, so a child born during it can outlive it. Once a sweep has
    killed anything, it goes on until QUIET_CENTISECONDS pass with nothing found: under
    gVisor a fork that was under way when its parent was killed completes a moment later, and
    its child, not yet in /proc at the last pass, outlived the run (5 fork bombs in 12 left
    survivors). A sweep that finds nothing ends at once, so ordinary runs pay nothing.
    """
    return (
        "set -- $spare; if [ $# = 0 ]; then kill -9 -1 2>/dev/null; "
        "else kill -STOP -1 2>/dev/null; fi; "
        f"killed=; q=; {_CENTISECONDS.format(var='t0')}; while :; do found=; "
        "for d in /proc/[0-9]*; do p=${d#/proc/}; "
        'case " 1 $$ $spare $killed " in *" $p "*) continue;; esac; '
        'case " $spare " in *" s"*) { read -r s < "$d/stat"; } 2>/dev/null || continue; '
        "s=${s##*) }; " + _SPARED_SESSION.format(stat="$s", skip="continue") + ";; esac; "
        'kill -9 "$p" 2>/dev/null && { killed="$killed $p"; found=1; }; done; '
        f"{_CENTISECONDS.format(var='t')}; "
        'if [ -n "$found" ]; then q=$t; '
        f'elif [ -z "$q" ] || [ $((t - q)) -ge {QUIET_CENTISECONDS} ]; then break; fi; '
        f"[ $((t - t0)) -ge {SWEEP_CENTISECONDS} ] && break; done; "
        "[ $# = 0 ] || kill -CONT -1 2>/dev/null"
    )


def reap(keep: str) -> str:
    """sh run by the agent after each command: SIGKILL every other process of its user and
    wait until they are gone, sparing what the words of `keep` expand to (a killer of the
    same user, output relays, kernels: see `kill_others`)."""
    return f'spare="{keep}"; ' + kill_others() + "; " + wait_gone(own_only=True)


def killer_script(*, outlive_stdin: bool, spare: Sequence[int] = ()) -> str:
    """The killer (see KILLER_SCRIPT); with `outlive_stdin` it sleeps on once its stdin ends
    (a container's main process must not exit), else it exits. SIGTERM ends it, so that a
    container stops at once when its engine asks it to. The pids in `spare` (processes of an
    attached container that were there before the session) are never killed."""
    return (
        "trap '' HUP QUIT USR1 USR2 PIPE; "
        f'spare0="{" ".join(map(str, spare))}"; '
        'spare=; while read -r nonce spare; do spare="$spare0 $spare"; echo "$nonce got"; '
        + kill_others()
        + "; "
        + wait_gone(own_only=False)
        + '; echo "$nonce ${left:-ok} $$"; done; '
        + ("exec sleep infinity" if outlive_stdin else "exit 0")
    )


KILLER_SCRIPT = killer_script(outlive_stdin=True)
"""The killer: started with the sandbox, before any code.

For each line `<nonce> [spare...]` on its stdin it acknowledges (`<nonce> got`), SIGKILLs every
process but pid 1, itself and what the spare words name (see `kill_others`), waits until they
are gone and answers `<nonce> ok <its pid>` (or `<nonce> <pid of a survivor> <its pid>`). It
needs nothing but builtins, so a run that exhausted the sandbox's processes, memory or file
descriptors cannot stop it. In a container it is the main process, root with CAP_KILL only,
where the code's user can neither signal, ptrace nor read it. In a pod, where every exec runs as
the code's user, it is an exec of that user (the agent's clean-up spares it) and the code can
kill it: a new one starts then.
"""


def spare_kill(killer: int, spare: Sequence[str] = ()) -> str:
    """sh for a root exec, where the killer cannot be reached: SIGKILL every process but pid
    1, the exec, the killer (pid `killer`) and what the words of `spare` name (see
    `kill_others`), wait until they are gone and print `ok` (or a survivor's pid)."""
    words = " ".join([str(killer), *spare])
    return (
        f'spare="{words}"; '
        + kill_others()
        + "; "
        + wait_gone(own_only=False)
        + "; echo ${left:-ok}"
    )


OOM_COUNT = "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>&-"
"""sh printing the container cgroup's OOM kill counter (cgroup v2, then v1)."""


def oom_kill_count(out: bytes) -> int:
    """The counter from OOM_COUNT's output (0 when the cgroup does not say)."""
    lines = out.decode(errors="replace").splitlines()
    counts = [int(line.split()[1]) for line in lines if line.startswith("oom_kill ")]
    return max(counts, default=0)


_END = 'printf \'\\000llm-sandbox-end:%s:%d\\000\' "$nonce" "$rc"'

# dash reports a child killed by a signal ("Killed") on that command's own stderr, so the
# script runs with stderr on /dev/null and first restores the real one from fd 3.
# A file an earlier run left in the way of the script (made read-only, a directory) is
# removed first.
_LOOP = (
    'while read -r nonce size keep; do { : > "$0"; } 2>/dev/null || rm -rf "$0"; '
    'head -c "$size" > "$0" || exit 1; '
    'sh "$0" 3>&2 2>/dev/null; rc=$?; {reap}; ' + f"{_END}; {_END} >&2; done"
)

# Output relays: two `cat`s copy the agent's output from pipes inside the sandbox to the
# exec's own stdout and stderr. gVisor hands a program the host's pipe as its stdout, and a
# write there returns short (64 KiB) once the pipe is full, which programs that do not retry
# short writes (CPython's print) take as done: the rest of their output is lost. A pipe inside
# the sandbox blocks as POSIX says; cat retries short writes.
_RELAYS = (
    f'd=$(mktemp -d {SUPPORT_DIR}/.relay-XXXXXX) && mkfifo "$d/o" "$d/e" || exit 1; '
    'cat "$d/o" & o=$!; cat "$d/e" >&2 & e=$!; exec >"$d/o" 2>"$d/e"; rm -rf "$d"; '
)


def agent_script(*, relay_output: bool = False) -> str:
    """The agent: read a header, save the script, run it (the script ends by exec-ing the
    program, so the agent waits on the program itself), kill what the run left behind
    (`reap`), print the end markers; with `relay_output`, through relays (see `_RELAYS`)."""
    if relay_output:
        return _RELAYS + _LOOP.replace("{reap}", reap("$o $e $keep"))
    return _LOOP.replace("{reap}", reap("$keep"))


AGENT_SCRIPT = agent_script()


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
    kernel_nonce: str | None = None,
) -> str:
    """The script for one command: place files and stdin, then exec argv (with
    `kernel_nonce`: start it as a kernel instead, see `kernel_launch`).

    Under the agent, stderr starts on /dev/null and the real one waits on fd 3 (see
    AGENT_SCRIPT); a script run by an exec of its own has its stderr already.
    """
    q = shlex.quote
    lines = ["exec 2>&3 3>&-"] if under_agent else []
    for path, size in files:
        parent = path.rsplit("/", 1)[0] or "/"
        mkdir = f"{{ [ -d {q(parent)} ] || mkdir -p {q(parent)}; }}"
        lines.append(f"{mkdir} && head -c {size} > {q(path)} || exit 125")
    if kernel_nonce is None:
        lines.append(f"head -c {stdin_size} > {q(stdin_path)} || exit 125")
    lines += [f"export {name}={q(value)}" for name, value in sorted(env.items())]
    lines.append(f"cd {q(cwd)} || exit 125")
    if kernel_nonce is None:
        lines.append(f"exec {' '.join(map(q, argv))} < {q(stdin_path)}")
    else:
        lines.append(kernel_launch(argv, kernel_nonce))
    return "\n".join(lines) + "\n"


KERNEL_START = b"\0llm-sandbox-kernel:"
"""Starts the line a kernel's script prints before the kernel: `<nonce>:<words to spare>`,
then a newline (not NUL: the run's output splitter holds back a trailing NUL)."""


def kernel_launch(argv: Sequence[str], nonce: str) -> str:
    """sh starting `argv` as a kernel: a long-lived process reading the agent's stdin.

    The kernel runs in a session of its own (`setsid`), so it and everything it starts can
    be told apart from a run's processes by session id. The script prints `KERNEL_START`,
    the nonce and what the agent's clean-up and the killer must spare while the kernel lives
    (the agent running it, its output relays, this script, `s<sid>`: the kernel's session),
    then waits for the kernel. When the kernel exits it prints the run's end markers with the
    kernel's exit status and kills its agent first, so that the agent's clean-up (which
    would kill every other process of the user) never runs.
    """
    q = shlex.quote
    end = _END.replace('"$nonce"', q(nonce))
    return "\n".join(
        [
            "command -v setsid >/dev/null 2>&1 || { echo 'llm-sandbox: a kernel needs "
            "`setsid` (util-linux) in the image' >&2; exit 127; }",
            "exec 6<&0",
            f"setsid {' '.join(map(q, argv))} <&6 6<&- &",
            'k=$!; exec 6<&-; spare="$PPID $$"',
            'for d in /proc/[0-9]*; do { read -r s < "$d/stat"; } 2>/dev/null || continue; '
            's=${s##*) }; r=${s#* }; [ "${r%% *}" = "$PPID" ] && spare="$spare ${d#/proc/}"; '
            "done",
            f'printf \'\\000llm-sandbox-kernel:%s:%s s%s\\n\' {q(nonce)} "$spare" "$k"',
            'wait "$k"; rc=$?',
            f"{end}; {end} >&2",
            'kill -9 "$PPID" 2>/dev/null; exit "$rc"',
        ]
    )


def prepare(
    request: ExecRequest, workdir: str, *, under_agent: bool, kernel_nonce: str | None = None
) -> tuple[str, bytes]:
    """The script for `request` and the bytes it reads from stdin (files, then stdin); with
    `kernel_nonce`, a kernel's (see `kernel_launch`)."""
    files = list(request.files.items())
    env = dict(request.env)
    if request.writable_libs:
        # Installers unpack into TMPDIR; on the memory-backed /tmp a big install would
        # exhaust the memory limit, so they use scratch space on the libraries volume.
        env["TMPDIR"] = INSTALL_TMP
    installs_online = request.writable_libs and request.egress is not None
    if (request.network or installs_online) and os.path.isfile(HOST_CA_BUNDLE):
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
        kernel_nonce=kernel_nonce,
    )
    if request.writable_libs:
        script = f"mkdir -p {INSTALL_TMP} || exit 125\n{script}"
    return script, b"".join(content for _, content in files) + stdin


def new_nonce() -> str:
    return secrets.token_hex(16)


def agent_message(nonce: str, script: str, payload: bytes, keep: Sequence[int | str] = ()) -> bytes:
    """What the agent reads for one command (see the package docstring); `keep` lists pids
    of its user its clean-up must spare (a killer that runs as that user) and `s<sid>`
    sessions (kernels)."""
    encoded = script.encode()
    header = " ".join([nonce, str(len(encoded)), *map(str, keep)])
    return f"{header}\n".encode() + encoded + payload


_PRIVATE_SHELL = (
    f'k=$(mktemp {SUPPORT_DIR}/.sh-XXXXXX) && cat /bin/sh > "$k" && chmod 0111 "$k" '
    '&& "$k" -c : 2>/dev/null || { rm -f "$k"; k=sh; }; '
    'LLM_SANDBOX_SHELL=$k exec "$k" -c "$1" "$0"'
)


def private_shell(script: str, name: str) -> list[str]:
    """argv running `script` (with `$0` = `name`) in a shell that its user cannot look into.

    The shell is a fresh copy of /bin/sh its user may execute but not read: the kernel then
    marks the process non-dumpable, so processes of the same user can neither ptrace it nor
    open its /proc files (its stdin, to inject commands; its memory, to read a nonce). Where
    that copy cannot be run (gVisor execs only readable files) it is plain `sh`. Starting it
    also executes a new program, which drops what gVisor hands an exec's first process: the
    container's capabilities, whatever its user (runc drops them at that execve).
    """
    body = 'rm -f "$LLM_SANDBOX_SHELL"; unset LLM_SANDBOX_SHELL; ' + script
    return ["sh", "-c", _PRIVATE_SHELL, name, body]


def ulimits(limits: ResourceLimits) -> str:
    """sh lowering the per-process limits; fails (non-zero) if one cannot be set.

    dash counts file size in 512-byte blocks and names the process limit -p (bash: -u). The
    process limit is RLIMIT_NPROC: it counts every process of the uid on the node, which is
    the sandbox's alone with a per-session uid (a pod manifest or an attached container with a
    shared uid shares it).
    """
    settings = ["ulimit -c 0", f"ulimit -n {limits.open_files}"]
    if limits.processes is not None:
        n = limits.processes
        settings.append(f"{{ ulimit -p {n} 2>/dev/null || ulimit -u {n}; }}")
    if limits.file_size is not None:
        settings.append(f"ulimit -f {max(1, limits.file_size // 512)}")
    if limits.cpu_time is not None:
        settings.append(f"ulimit -t {limits.cpu_time}")
    return " && ".join(settings)


def agent_argv(
    *,
    relay_output: bool = False,
    limits: ResourceLimits | None = None,
    script_path: str = RUN_SCRIPT,
) -> list[str]:
    """The agent's own exec, in a private shell: the script is kept in `script_path` (each
    agent its own: a kernel's script runs as long as the kernel). With `limits`, its shell
    first lowers its per-process limits (`ulimits`), or exits 125."""
    prelude = f"{ulimits(limits)} || exit 125; " if limits is not None else ""
    return private_shell(prelude + agent_script(relay_output=relay_output), script_path)
