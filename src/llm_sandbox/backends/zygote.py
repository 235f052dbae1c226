"""The fork server's program: a Python interpreter that has done its start-up, inside a
sandbox, forking a clean child per run (see `forkserver`). Runs as
`python3 -c <this file> MODE CLEAN [PENDING]`; it imports nothing of ours.

It is not dumpable, so the code it runs can neither trace nor read it. Each child gets its own
session, /dev/null for stdin and fresh pipes for stdout and stderr, which the server relays to
its own stdout in frames the child cannot forge (it never holds that pipe). When the child
exits, everything it started is killed and reaped before the end frame:

- MODE `pid1`: the server is its sandbox's pid 1 (bwrap --as-pid-1, the embedded backend): the
  kernel drops signals its namespace sends it, and `kill(-1)` ends everything but itself, as
  when a sandbox's pid 1 dies.
- MODE `subreaper`: the server shares its sandbox with others (a container's agent, relays,
  kernels): it is a child subreaper, so whatever the run starts stays below it even when
  orphaned, and it kills exactly its own descendants, with every process of its user stopped
  meanwhile so that none can fork (then continued). The code can kill it; the host notices.

CLEAN is a directory whose contents go after each run (`-`: none). A change to what a starting
interpreter reads (see `_startup_state`) makes the server exec itself afresh before the run
(PENDING: the request it then serves).

Host → server (stdin): `R <size>\\n` + JSON {argv, path, source, cwd} to run; `K\\n` to kill.
Server → host (stdout): frames `<kind:1><size:4 big-endian><data>\\n`: `r` ready, `o`/`e`
output, `x` the end (data: the exit code, 128 + signal for a signal), `f` a failure before the
run. (The newline: an agent's output splitter holds back a trailing NUL, which may begin its
end marker, until more arrives.)
"""

# What every child needs is loaded here, once (an import in the child would be per run).
import atexit
import contextlib
import ctypes
import os
import select
import signal
import struct
import sys
import time
import types
from importlib.machinery import SourceFileLoader
from typing import Any


def _frame(kind: bytes, data: bytes = b"") -> None:
    view = memoryview(kind + struct.pack(">I", len(data)) + data + b"\n")
    while view:
        view = view[os.write(1, view) :]


LIBC = ctypes.CDLL(None, use_errno=True)


def _set_dumpable(on: bool) -> None:
    LIBC.prctl(4, int(on), 0, 0, 0)  # PR_SET_DUMPABLE


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _system_exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _run_main(argv: list[str], path: str) -> int:
    """`python3 path args...` from here on: a fresh __main__, CPython's exit rules."""
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__dict__.update(
        __cached__=None, __loader__=SourceFileLoader("__main__", path), __builtins__=__builtins__
    )
    sys.modules["__main__"] = main
    sys.argv = argv[1:]
    sys.orig_argv = list(argv)
    sys.path[0] = os.path.dirname(path)
    interrupted = False
    try:
        with open(path, "rb") as f:
            code = compile(f.read(), path, "exec")
        exec(code, main.__dict__)
        rc = 0
    except SystemExit as exc:
        rc = _system_exit_code(exc)
    except BaseException as exc:
        tb = exc.__traceback__
        # Our own frame (the exec) is not the program's; a compile error has no frame of it.
        tb = tb.tb_next if tb is not None else None
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        interrupted = isinstance(exc, KeyboardInterrupt)
        rc = 1
    threading = sys.modules.get("threading")
    if threading is not None:
        with contextlib.suppress(BaseException):
            threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            rc = rc or 120
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return rc


def _child(request: dict[str, Any], out_w: int, err_w: int) -> None:
    rc = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 65536)
        _set_dumpable(True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        rc = _run_main(request["argv"], request["path"])
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"llm-sandbox fork server: {exc!r}\n".encode())
    os._exit(rc)


MODE = sys.argv[1]
CLEAN = sys.argv[2]
QUIET = 0.01
"""Once a sweep killed anything it goes on until this many seconds pass with nothing found."""


# A run's end is seen through SIGCHLD's wake-up byte (gVisor has no pidfd_open).
WAKE_R, _WAKE_W = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
signal.set_wakeup_fd(_WAKE_W, warn_on_full_buffer=False)
signal.signal(signal.SIGCHLD, lambda signum, frame: None)


def _drain_wake() -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(WAKE_R, 4096):
            pass


def _reap(block: bool) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if pid == 0:
            return


def _descendants() -> list[int]:
    """This process's living descendants (zombies run nothing: they only wait to be reaped)."""
    parents: dict[int, int] = {}
    dead: set[int] = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                parents[int(name)] = int(fields[1])
                if fields[0] in (b"Z", b"X"):
                    dead.add(int(name))
            except (OSError, IndexError, ValueError):
                continue
    found: list[int] = []
    level = [os.getpid()]
    while level:
        above = set(level)
        level = [pid for pid, parent in parents.items() if parent in above]
        found += level
    return [pid for pid in found if pid not in dead]


def _kill_and_reap() -> None:
    """Kill everything the run started (see the module docstring) and reap it."""
    if MODE == "pid1":
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        _reap(block=True)
        return
    if not _descendants():
        _reap(block=False)
        return
    with contextlib.suppress(OSError):
        os.kill(-1, signal.SIGSTOP)
    try:
        started = time.monotonic()
        quiet_from = None
        while time.monotonic() - started < 3:
            found = _descendants()
            for pid in found:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            _reap(block=False)
            if found:
                quiet_from = None
            elif quiet_from is None:
                quiet_from = time.monotonic()
            elif time.monotonic() - quiet_from >= QUIET:
                break
    finally:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGCONT)
    _reap(block=False)


def _remove_tree(path: str) -> None:
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(root, name))
        for name in dirs:
            full = os.path.join(root, name)
            try:
                os.rmdir(full)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(full)  # a link to a directory


def _read_exact(size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(0, size)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_line() -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            raise EOFError
        line += byte
    return line


def _run(request: dict[str, Any]) -> None:
    path = request["path"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(request["source"].encode("utf-8", "surrogateescape"))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    _drain_wake()
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.close(err_r)
        _child(request, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    streams = {out_r: b"o", err_r: b"e"}
    rc = None
    while streams:
        ready, _, _ = select.select([*streams, 0] + ([WAKE_R] if rc is None else []), [], [])
        if WAKE_R in ready and rc is None:
            _drain_wake()
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rc = _exit_code(status)
                _kill_and_reap()  # the run's first process is gone: so is all it started
        if 0 in ready and _read_line() == b"K\n":
            _kill_and_reap()
            rc = 128 + signal.SIGKILL if rc is None else rc
        for fd in [fd for fd in ready if fd in streams]:
            data = os.read(fd, 65536)
            if data:
                _frame(streams[fd], data)
            else:
                os.close(fd)
                del streams[fd]
    if rc is None:  # both pipes closed before the child's end was seen
        rc = _exit_code(os.waitpid(pid, 0)[1])
    _kill_and_reap()
    if CLEAN != "-":
        _remove_tree(CLEAN)
    _frame(b"x", str(rc).encode())


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _startup_state() -> list[int | None]:
    """What a starting interpreter reads from the files (site-packages directories and their
    .pth files, sitecustomize and usercustomize on the path): when it changes, a fork would
    not run as a plain start would, so the server starts afresh first."""
    import site

    sites = [*site.getsitepackages(), site.getusersitepackages()]
    state = [_mtime(path) for path in sites]
    for directory in dict.fromkeys([*(p for p in sys.path if p), *sites]):
        state += [
            _mtime(os.path.join(directory, f"{name}customize.py")) for name in ("site", "user")
        ]
    return state


def _restart(body: bytes) -> None:
    """Exec a fresh interpreter in this process (pid 1 stays pid 1) to serve `body`."""
    import json

    directory = os.path.dirname(json.loads(body)["path"])
    os.makedirs(directory, exist_ok=True)
    pending = os.path.join(directory, ".llm-sandbox-pending")
    with open(pending, "wb") as f:
        f.write(body)
    with open("/proc/self/cmdline", "rb") as f:
        source = f.read().split(b"\0")[2]
    argv = [os.fsencode(a) for a in (MODE, CLEAN, pending)]
    os.execv(sys.executable, [os.fsencode(sys.executable), b"-c", source, *argv])


def _serve(body: bytes) -> None:
    import json

    try:
        _run(json.loads(body))
    except OSError as exc:
        _kill_and_reap()
        _frame(b"f", repr(exc).encode())


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as pid 1, a default action is dropped
    _set_dumpable(False)
    if MODE == "subreaper":
        LIBC.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    state = _startup_state()
    if len(sys.argv) > 3:  # restarted with a run to do
        with open(sys.argv[3], "rb") as f:
            body = f.read()
        os.unlink(sys.argv[3])
        _serve(body)
    else:
        _frame(b"r")
    while True:
        try:
            header = _read_line().split()
        except EOFError:
            return
        if header[:1] == [b"K"]:
            continue  # a kill that arrived after its run ended
        if header[:1] != [b"R"] or len(header) != 2:
            _frame(b"f", b"bad request header")
            return
        try:
            body = _read_exact(int(header[1]))
        except EOFError:
            return
        if _startup_state() != state:
            _restart(body)
        _serve(body)


main()
