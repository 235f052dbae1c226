"""Private container engines for fault injection: a dockerd and a Podman service of our own.

Restarting the machine's engines would pull the rug from under every other test (and every
other user) of the machine, so the engine-fault tests run engines of their own, as root:

* `PrivateDocker`: a second dockerd with its own socket, exec root, containerd namespace and
  bridge (no iptables rules), whose data root is a tmpfs of a given size: storage that can be
  filled without touching the machine's disk. The images a test needs are copied in with
  `docker save | docker load`.
* `PrivatePodman`: a second `podman system service` on a socket of its own. Podman keeps no
  state in the service (containers outlive it, as they do the machine's service), so it shares
  the machine's storage; restarting it is exactly what restarting the machine's service does.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

START_TIMEOUT = 60.0


def _run(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True, **kwargs)


def _wait(ready: Any, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)


class PrivateDocker:
    def __init__(self, storage_bytes: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="llmsbx-dockerd-"))
        self.data = self.root / "data"
        self.socket = self.root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.bridge = f"lsbx{secrets.token_hex(3)}"
        self.namespace = f"llmsbx-faults-{secrets.token_hex(3)}"
        self.log = self.root / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Any = None
        self.data.mkdir()
        _run("mount", "-t", "tmpfs", "-o", f"size={storage_bytes}", "tmpfs", str(self.data))
        octet = 1 + secrets.randbelow(250)
        _run("ip", "link", "add", "name", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"10.214.{octet}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        (self.root / "daemon.json").write_text(json.dumps({}))

    def start(self) -> None:
        argv = [
            "dockerd",
            "--config-file", str(self.root / "daemon.json"),
            "--data-root", str(self.data),
            "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "dockerd.pid"),
            "--host", self.url,
            "--bridge", self.bridge,
            "--iptables=false",
            "--ip-masq=false",
            "--containerd-namespace", self.namespace,
            "--containerd-plugins-namespace", f"{self.namespace}-plugins",
            "--storage-driver", "overlay2",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        _wait(self.answers, "the private dockerd", self.process, self.log)

    def answers(self) -> bool:
        done = subprocess.run(
            ["docker", "-H", self.url, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0

    def stop(self) -> None:
        """Stop dockerd as an init system would (SIGTERM; it stops its containers)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def load(self, image: str) -> None:
        saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        try:
            subprocess.run(
                ["docker", "-H", self.url, "load", "-q"],
                stdin=saved.stdout,
                capture_output=True,
                timeout=600,
                check=True,
            )
        finally:
            assert saved.stdout is not None
            saved.stdout.close()
            saved.wait(timeout=60)

    def client(self) -> Any:
        """The client sessions use (one, closed with the daemon: SDK clients own sockets)."""
        import docker

        if self._client is None:
            self._client = docker.DockerClient(base_url=self.url)
        return self._client

    def ours(self, label: str) -> list[str]:
        """Containers and volumes of this daemon carrying `label`."""
        found: list[str] = []
        for kind in ("ps -aq", "volume ls -q"):
            done = _run("docker", "-H", self.url, *kind.split(), "--filter", f"label={label}")
            found += done.stdout.split()
        return found

    def fill_storage(self) -> Path:
        """Fill the data root until no byte is left; returns the filler to delete."""
        filler = self.data / "filler"
        chunk = b"\0" * (1 << 20)
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(chunk)
                f.flush()
        return filler

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self.stop()
        for argv in (
            ["umount", "-l", str(self.data)],
            ["ip", "link", "del", self.bridge],
        ):
            subprocess.run(argv, capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


class PrivatePodman:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="llmsbx-podman-"))
        self.socket = self.root / "podman.sock"
        self.url = f"unix://{self.socket}"
        self.log = self.root / "service.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.url],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        _wait(self.answers, "the private podman service", self.process, self.log)

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        done = subprocess.run(
            ["curl", "-s", "--max-time", "3", "--unix-socket", str(self.socket), "http://d/_ping"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout == "OK"

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Any:
        """The client sessions use (one, closed with the service: SDK clients own sockets)."""
        import podman

        if self._client is None:
            self._client = podman.PodmanClient(base_url=self.url)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def is_root() -> bool:
    return os.geteuid() == 0
