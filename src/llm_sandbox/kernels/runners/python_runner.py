"""The Python kernel runner: cells run in one IPython shell. Runs in the sandbox only.

Started as `sh -c 'exec python3 python_runner.py 3<&0 4>&1 5>&2 0</dev/null'`: requests
arrive on fd 3, protocol frames go to fd 4 (and the end-of-cell sync frame to fd 5), and user
code writes to fds 1 and 2 as usual (see `llm_sandbox.kernels.protocol`). Requires Python 3.8+
and IPython; without IPython it reports a `fatal` message naming the package and exits.

* Cells run through `InteractiveShell.run_cell`: magics, `display()`, rich reprs, the last
  expression's value, top-level `await`. Our display publisher, display hook and traceback
  printer turn those into `display_data`, `execute_result` and `error` messages.
* matplotlib draws with the inline backend (`matplotlib_inline`, as ipykernel does): figures
  shown or left open at the end of a cell come back as PNG bundles.
* `%pip install` asks the host to install (the session installs as `install()` does) and
  prints its answer; other `%pip` commands run pip here.
* A reader thread takes requests from fd 3 while a cell runs. An interrupt sends SIGINT to the
  main thread (so blocking calls such as `time.sleep` end too) and to every process the kernel
  started; the handler raises KeyboardInterrupt only while a cell runs and never inside the
  runner's own frame writing.
* Every cell starts with fds 1 and 2, `sys.stdout` and `sys.stderr` repaired if the previous
  one closed or replaced them.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import queue
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

CONTROL_FD, FRAME_FD, SYNC_FD = 3, 4, 5
MAGIC = b"\0llmk:"
CHUNK_MAX = 4000 - len(MAGIC) - 32 - len(b":+:0000:")
PROTOCOL = 1


class State:
    """What the main thread is doing, shared with the reader thread and the signal handler."""

    def __init__(self) -> None:
        self.cell = ""  # id of the running cell, "" between cells
        self.executing = False
        self.critical = 0  # > 0 while the runner writes a message: interrupts wait
        self.pending = False  # an interrupt that arrived during a critical section
        self.main_thread = threading.main_thread().ident or 0
        self.wire: Wire | None = None


STATE = State()


# --- the wire -------------------------------------------------------------------------------------
class Wire:
    """Writes messages as frames (each frame one atomic write) on fd 4, the sync on fd 5."""

    def __init__(self, nonce: str) -> None:
        self.marker = MAGIC + nonce.encode() + b":"
        self.lock = threading.RLock()
        self.pid = os.getpid()

    def send(self, message: Mapping[str, Any], fd: int = FRAME_FD) -> None:
        if os.getpid() != self.pid:
            return  # a forked child of the kernel never speaks the protocol
        data = json.dumps(message, default=_jsonable, separators=(",", ":")).encode()
        with self.lock, critical():
            flush_std()
            for start in range(0, max(len(data), 1), CHUNK_MAX):
                chunk = data[start : start + CHUNK_MAX]
                flag = b"." if start + CHUNK_MAX >= len(data) else b"+"
                _write_all(fd, self.marker + flag + b":%04x:" % len(chunk) + chunk)


def send(message: Mapping[str, Any], fd: int = FRAME_FD) -> None:
    if STATE.wire is not None:
        STATE.wire.send(message, fd)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


@contextmanager
def critical() -> Iterator[None]:
    """Interrupts arriving inside are delivered when the outermost critical section ends."""
    STATE.critical += 1
    try:
        yield
    finally:
        STATE.critical -= 1
        if STATE.critical == 0 and STATE.pending and STATE.executing:
            STATE.pending = False
            raise KeyboardInterrupt


def flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):  # whatever the cell put there
            if stream is not None:
                stream.flush()


# --- stdio repair ---------------------------------------------------------------------------------
ORIGINAL_STREAMS: dict[str, Any] = {}


def _same_file(fd: int, other: int) -> bool:
    try:
        a, b = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def setup_stdio() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        with suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True, errors="backslashreplace")
        ORIGINAL_STREAMS[name] = stream


def repair_stdio() -> None:
    """Give the cell working fds 1 and 2, sys.stdout/sys.stderr and our SIGINT handler,
    whatever the last cell did."""
    if signal.getsignal(signal.SIGINT) is not on_sigint:
        signal.signal(signal.SIGINT, on_sigint)
    for fd, private in ((1, FRAME_FD), (2, SYNC_FD)):
        if not _same_file(fd, private):
            os.dup2(private, fd)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is None or getattr(stream, "closed", False):
            original = ORIGINAL_STREAMS.get(name)
            if original is None or original.closed:
                original = open(  # noqa: SIM115 - lives as long as the kernel
                    fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False
                )
                original.reconfigure(line_buffering=True)
                ORIGINAL_STREAMS[name] = original
            setattr(sys, name, original)


# --- interrupts -----------------------------------------------------------------------------------
def on_sigint(signum: int, frame: object) -> None:
    if not STATE.executing:
        return  # between cells: a late interrupt is ignored
    if STATE.critical:
        STATE.pending = True
        return
    raise KeyboardInterrupt


def interrupt() -> None:
    """SIGINT to the main thread (ends blocking calls) and to every process we started."""
    signal.pthread_kill(STATE.main_thread, signal.SIGINT)
    for pid in descendants(os.getpid()):
        with suppress(OSError):
            os.kill(pid, signal.SIGINT)


def descendants(root: int) -> list[int]:
    """Every process below `root`, from /proc/<pid>/task/<tid>/children (else a full scan)."""
    found: list[int] = []
    frontier = [root]
    try:
        while frontier:
            pid = frontier.pop()
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                    kids = [int(k) for k in f.read().split()]
                found.extend(kids)
                frontier.extend(kids)
        return found
    except FileNotFoundError:
        if os.path.exists(f"/proc/{root}/task/{root}/children"):
            return found  # a process that ended while we looked
    except OSError:
        pass
    return _scan(root)


def _scan(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if len(fields) > 1:
                parents[int(entry)] = int(fields[1])
    found: list[int] = []
    frontier = {root}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - set(found)
        found.extend(frontier)
    return found


# --- requests -------------------------------------------------------------------------------------
Request = tuple[str, dict[str, str], bytes]


def unescape(data: bytes) -> bytes:
    for raw, escaped in ((b"\0", b"%00"), (b"\r", b"%0D"), (b"\n", b"%0A"), (b"%", b"%25")):
        data = data.replace(escaped, raw)
    return data


def parse(line: bytes) -> Request:
    head, _, payload = line.rstrip(b"\n").partition(b"\t")
    kind, *parts = head.decode("utf-8", "replace").split(" ")
    fields = dict(part.split("=", 1) for part in parts if "=" in part)
    return kind, fields, unescape(payload)


REQUESTS: queue.Queue[Request | None] = queue.Queue()
INSTALL_REPLIES: queue.Queue[Request] = queue.Queue()


def reader(control: Any) -> None:
    """Sole reader of fd 3: interrupts are acted on here, the rest queued for the main thread."""
    try:
        for line in control:
            request = parse(line)
            kind, fields, _ = request
            if kind == "interrupt":
                if STATE.executing and fields.get("id") == STATE.cell:
                    interrupt()
            elif kind == "install_reply":
                INSTALL_REPLIES.put(request)
            else:
                REQUESTS.put(request)
    finally:
        REQUESTS.put(None)


# --- rich output ----------------------------------------------------------------------------------
def bundle(data: Mapping[str, Any]) -> dict[str, Any]:
    """A MIME bundle as JSON: binary formats base64-encoded, JSON formats as values."""
    out: dict[str, Any] = {}
    for mime, value in data.items():
        if isinstance(value, bytes):
            textual = mime.startswith("text/") or mime == "image/svg+xml"
            out[str(mime)] = (
                value.decode("utf-8", "replace")
                if textual
                else base64.b64encode(value).decode("ascii")
            )
        elif mime == "application/json" or mime.endswith("+json") or isinstance(value, str):
            out[str(mime)] = value
        else:
            out[str(mime)] = str(value)
    return out


def build_shell() -> Any:
    """The IPython shell, with our display publisher, display hook and traceback printer."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Publisher(DisplayPublisher):
        def publish(
            self,
            data: Mapping[str, Any],
            metadata: Mapping[str, Any] | None = None,
            source: object = None,
            *,
            transient: Mapping[str, Any] | None = None,
            update: bool = False,
            **kwargs: object,
        ) -> None:
            send(
                {
                    "type": "update_display_data" if update else "display_data",
                    "id": STATE.cell,
                    "data": bundle(data),
                    "metadata": dict(metadata or {}),
                    "transient": dict(transient or {}),
                }
            )

        def clear_output(self, wait: bool = False) -> None:
            send({"type": "clear_output", "id": STATE.cell, "wait": bool(wait)})

    class Hook(DisplayHook):
        found: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None

        def start_displayhook(self) -> None:
            self.found = None

        def write_output_prompt(self) -> None:
            pass

        def write_format_data(
            self, format_dict: Mapping[str, Any], md_dict: Mapping[str, Any] | None = None
        ) -> None:
            self.found = (format_dict, md_dict or {})

        def finish_displayhook(self) -> None:
            if self.found is not None:
                data, metadata = self.found
                self.found = None
                send(
                    {
                        "type": "execute_result",
                        "id": STATE.cell,
                        "execution_count": self.prompt_count,
                        "data": bundle(data),
                        "metadata": dict(metadata),
                    }
                )

    class Shell(InteractiveShell):
        def _showtraceback(self, etype: Any, evalue: Any, stb: Any) -> None:
            lines = [stb] if isinstance(stb, str) else [str(line) for line in stb]
            send(
                {
                    "type": "error",
                    "id": STATE.cell,
                    "ename": getattr(etype, "__name__", str(etype)),
                    "evalue": _safe_str(evalue),
                    "traceback": lines,
                }
            )

        def ask_exit(self) -> None:
            self.exit_now = True  # exit()/quit(): the runner ends after the reply

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    config.InteractiveShell.colors = "NoColor"
    config.InteractiveShell.warn_venv = False
    shell = Shell.instance(
        config=config, displayhook_class=Hook, display_pub_class=Publisher, user_module=None
    )
    shell.register_magic_function(pip_magic(shell), "line", "pip")
    return shell


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


INSTALL_OPTIONS = {"-q", "--quiet", "-U", "--upgrade", "--no-cache-dir", "--user", "-v"}


def pip_magic(shell: Any) -> Callable[[str], None]:
    counter = [0]

    def pip(line: str) -> None:
        """%pip install PACKAGES asks the session to install them (as install() does); any
        other pip command runs here."""
        words = shlex.split(line)
        if not words or words[0] != "install":
            shell.system(f"{shlex.quote(sys.executable)} -m pip {line}")
            return
        options = [w for w in words[1:] if w.startswith("-")]
        packages = [w for w in words[1:] if not w.startswith("-")]
        if not packages:
            print("%pip install: name the packages to install", file=sys.stderr)
            return
        counter[0] += 1
        request_id = f"{STATE.cell or '0'}.{counter[0]}"
        send(
            {
                "type": "install_request",
                "id": STATE.cell,
                "request": request_id,
                "manager": "pip",
                "packages": packages,
                "options": options,
            }
        )
        while True:
            _, fields, payload = INSTALL_REPLIES.get()
            if fields.get("id") == request_id:
                break
        reply = json.loads(payload.decode("utf-8", "replace") or "{}")
        if reply.get("stdout"):
            sys.stdout.write(reply["stdout"])
        if reply.get("stderr"):
            sys.stderr.write(reply["stderr"])
        if reply.get("exit_code", 1) == 0:
            import importlib

            importlib.invalidate_caches()
            for path in reply.get("sys_path", []):
                if path not in sys.path:
                    sys.path.append(path)
            print("Note: you may need to restart the kernel to use updated packages.")
        shell.user_ns["_exit_code"] = reply.get("exit_code", 1)

    return pip


# --- the loop -------------------------------------------------------------------------------------
def run_cell(shell: Any, cell: str, code: str, silent: bool) -> None:
    status = "error"
    count = shell.execution_count
    repair_stdio()
    STATE.cell = cell
    STATE.pending = False
    STATE.executing = True
    try:
        result = shell.run_cell(code, store_history=not silent, silent=silent)
        status = "ok" if result.success else "error"
        count = result.execution_count if result.execution_count is not None else count
    except KeyboardInterrupt:
        # Landed in IPython's own code rather than the cell's: report it the same way.
        STATE.executing = False
        send(
            {
                "type": "error",
                "id": cell,
                "ename": "KeyboardInterrupt",
                "evalue": "",
                "traceback": ["KeyboardInterrupt"],
            }
        )
    finally:
        STATE.executing = False
        STATE.pending = False
    exiting = bool(getattr(shell, "exit_now", False))
    reply = {"type": "execute_reply", "id": cell, "status": status, "execution_count": count}
    if exiting:
        reply["exiting"] = True
    send(reply)
    send({"type": "sync", "id": cell}, SYNC_FD)
    STATE.cell = ""
    if exiting:
        raise SystemExit(0)


def main() -> None:
    for fd in (CONTROL_FD, FRAME_FD, SYNC_FD):
        os.set_inheritable(fd, False)  # subprocesses of user code do not get them
    control = os.fdopen(CONTROL_FD, "rb")
    kind, fields, _ = parse(control.readline())
    if kind != "start" or len(fields.get("nonce", "")) != 32:
        sys.exit("llm-sandbox kernel: expected a start request on fd 3")
    STATE.wire = Wire(fields["nonce"])
    os.register_at_fork(after_in_child=_forked)
    signal.signal(signal.SIGINT, on_sigint)
    setup_stdio()
    if "IPYTHONDIR" not in os.environ:
        ipython_dir = tempfile.mkdtemp(prefix="llm-kernel-ipython-")
        os.environ["IPYTHONDIR"] = ipython_dir
        atexit.register(shutil.rmtree, ipython_dir, True)
    try:
        import IPython
    except ImportError as exc:
        send(
            {
                "type": "fatal",
                "message": f"IPython is not installed for {sys.executable} ({exc}); install "
                "it in the sandbox's Python (pip install ipython)",
                "package": "ipython",
            }
        )
        sys.exit(3)
    _matplotlib_backend()
    shell = build_shell()
    threading.Thread(target=reader, args=(control,), name="llm-kernel-reader", daemon=True).start()
    send(
        {
            "type": "ready",
            "protocol": PROTOCOL,
            "language": "python",
            "language_version": ".".join(map(str, sys.version_info[:3])),
            "implementation": f"IPython {IPython.__version__}",
            "pid": os.getpid(),
        }
    )
    while True:
        request = REQUESTS.get()
        if request is None:
            break
        kind, fields, payload = request
        if kind == "execute":
            code = payload.decode("utf-8", "replace")
            run_cell(shell, fields.get("id", ""), code, fields.get("silent") == "1")
        elif kind == "shutdown":
            break


def _matplotlib_backend() -> None:
    """The inline backend when available (figures come back as display data), else Agg."""
    if "MPLBACKEND" in os.environ:
        return
    import importlib.util

    try:
        inline = importlib.util.find_spec("matplotlib_inline") is not None
    except (ImportError, ValueError):
        inline = False
    if inline:
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    else:
        os.environ["MPLBACKEND"] = "agg"


def _forked() -> None:
    """In a child forked by user code: no protocol, no reader, default SIGINT."""
    STATE.wire = None
    STATE.executing = False
    for fd in (CONTROL_FD, FRAME_FD, SYNC_FD):
        with suppress(OSError):
            os.close(fd)
    with suppress(ValueError):  # forked from a thread other than the main one
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    main()
