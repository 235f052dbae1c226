"""Pulling a session's image from its registry through the engine, as the previous generation did.

The engine pulls (so its own registry configuration applies: mirrors, insecure registries,
proxies) with the credentials it would use for `docker pull` / `podman pull`: the Docker SDK
reads `~/.docker/config.json` and its credential helpers and sends them along, the Podman
service reads its own auth file. Progress goes through the session's logger (`ProgressLog`).

A failed pull is told apart from the engine's answer: `ImageNotFoundError` (no such image or
tag), `RegistryAuthError` (credentials refused), `RegistryUnreachableError` (no connection, or
the registry stopped answering), else `ImagePullError`. No run timeout applies to a pull, which
may take minutes; but a registry that says nothing for `LLM_SANDBOX_PULL_STALL_TIMEOUT` seconds
(default 60) before the transfer starts, or ten times that during it (Podman reports one line per
layer, not bytes), is given up on.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import re
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    ImageNotFoundError,
    ImagePullError,
    RegistryAuthError,
    RegistryUnreachableError,
)
from llm_sandbox.images.naming import DEFAULT_REGISTRY, registry_of
from llm_sandbox.images.progress import ProgressLog

if TYPE_CHECKING:
    from llm_sandbox.backends.container.engine import Engine

ENV_STALL: Final = "LLM_SANDBOX_PULL_STALL_TIMEOUT"
DEFAULT_STALL: Final = 60.0
TRANSFER_STALL_FACTOR: Final = 10
CONNECT_TIMEOUT: Final = 10.0
"""Seconds to connect to the engine's API (not the registry: the engine does that)."""
_TICK: Final = 1.0

# What engines say, lowercased. Connection-level trouble first: its messages may mention a
# manifest ("... reading manifest: dial tcp ...: connection refused").
_UNREACHABLE = re.compile(
    r"connection refused|no such host|timeout|timed out|network is unreachable|no route to host"
    r"|connection reset|server misbehaving|tls handshake|\beof\b|certificate|x509"
    r"|http response to https client"
)
_AUTH = re.compile(
    r"unauthorized|authentication required|no basic auth credentials|denied|forbidden"
    r"|incorrect username or password|\b401\b|\b403\b"
)
_NOT_FOUND = re.compile(r"manifest unknown|name unknown|not found|no such image|does not exist")
# Podman's first lines come before it has talked to the registry.
_PREAMBLE = ("Trying to pull", "Resolved ")


def stall_timeout() -> float:
    """Seconds a registry may stay silent before it counts as hung (`ENV_STALL`)."""
    text = os.environ.get(ENV_STALL, "").strip()
    if not text:
        return DEFAULT_STALL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(f"{ENV_STALL}={text!r} must be a positive number of seconds")
    return value


def qualified(reference: str) -> str:
    """`reference` with Docker's implied registry and namespace spelled out (for Podman, which
    would otherwise resolve a short name through its own search list, or refuse it)."""
    if registry_of(reference) != DEFAULT_REGISTRY or reference.startswith(f"{DEFAULT_REGISTRY}/"):
        return reference
    # No registry host, so a ":" can only start the tag; a one-part name is in "library/".
    repository = reference.split("@", 1)[0].rsplit(":", 1)[0]
    namespace = "" if "/" in repository else "library/"
    return f"{DEFAULT_REGISTRY}/{namespace}{reference}"


def is_loopback(registry: str) -> bool:
    """Whether `registry` (host[:port]) is this machine: Docker lets those skip TLS by default."""
    host = registry if registry.endswith("]") else registry.rsplit(":", 1)[0]
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


class RegistryAnswer(Exception):
    """The engine's error text for a pull, classified by `pull_error`."""


def pull_error(image: str, registry: str, error: str) -> ImagePullError:
    """The exception for the engine's answer `error` to pulling `image` from `registry`."""
    text = error.lower()
    kind: type[ImagePullError] = ImagePullError
    if _UNREACHABLE.search(text):
        kind = RegistryUnreachableError
    elif _AUTH.search(text):
        kind = RegistryAuthError
    elif _NOT_FOUND.search(text):
        kind = ImageNotFoundError
    return kind(image, error.strip(), registry=registry)


class PullStream(ABC):
    """An engine's pull in progress: its events (Docker-style dicts) and a way to stop it."""

    @abstractmethod
    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    @abstractmethod
    def abort(self) -> None:
        """Stop the pull from another thread (the reader's iteration then ends or raises)."""


class HttpPullStream(PullStream):
    """A pull whose events are the JSON lines of an engine's streamed HTTP response."""

    def __init__(self, response: Any) -> None:
        if response.status_code >= 400:
            raise RegistryAnswer(_error_body(response))
        self._response = response

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for line in self._response.iter_lines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"stream": line.decode(errors="replace")}
            if isinstance(event, dict):
                yield event

    def abort(self) -> None:
        # Closing alone would not wake a read blocked on the socket: shut it down first.
        sock = _socket_of(self._response)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self._response.close()


def _error_body(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return str(response.text).strip() or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        return str(body.get("message") or body.get("cause") or body)
    return str(body)


def _socket_of(response: Any) -> socket.socket | None:
    raw = getattr(response, "raw", None)
    connection = getattr(raw, "_connection", None)  # urllib3 2
    sock = getattr(connection, "sock", None)
    if sock is None:  # urllib3 1: through http.client's file object
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class PullProgress:
    """What the events of a pull say so far, summed up in one line."""

    def __init__(self) -> None:
        self.layers: dict[str, tuple[int, int, bool]] = {}
        """Docker: layer id → (bytes downloaded, layer size, finished)."""
        self.blobs = 0
        """Podman: layers started ("Copying blob")."""
        self.transferring = False
        """Whether the registry has answered (anything past the engine's preamble)."""

    def feed(self, event: dict[str, Any]) -> tuple[str | None, str | None]:
        """Take one event; returns (the engine's error text, a line worth logging)."""
        if event.get("error") or event.get("errorDetail"):
            detail = event.get("errorDetail") or {}
            message = detail.get("message") if isinstance(detail, dict) else None
            return str(message or event.get("error")), None
        text = str(event.get("status") or event.get("stream") or "").strip()
        if not text:
            return None, None
        if not text.startswith(_PREAMBLE):
            self.transferring = True
        layer = event.get("id")
        if "status" not in event:  # Podman: lines of text
            if text.startswith("Copying blob"):
                self.blobs += 1
            return None, text
        if not layer or not isinstance(layer, str) or text.startswith("Pulling from"):
            return None, text
        return None, self._layer(layer, text, event.get("progressDetail") or {})

    def _layer(self, layer: str, status: str, detail: dict[str, Any]) -> str | None:
        done_bytes, size, finished = self.layers.get(layer, (0, 0, False))
        if status == "Downloading":
            done_bytes = int(detail.get("current") or done_bytes)
            size = int(detail.get("total") or size)
        elif status in ("Download complete", "Verifying Checksum"):
            done_bytes = size
        elif status in ("Pull complete", "Already exists"):
            finished, done_bytes = True, size
        self.layers[layer] = (done_bytes, size, finished)
        return None if status in ("Downloading", "Extracting", "Waiting") else f"{layer}: {status}"

    def summary(self) -> str:
        if self.layers:
            finished = sum(1 for _, _, done in self.layers.values() if done)
            got = sum(done for done, _, _ in self.layers.values())
            total = sum(size for _, size, _ in self.layers.values())
            amount = f", {got / 1e6:.1f} of {total / 1e6:.1f} MB" if total else ""
            return f"{finished}/{len(self.layers)} layers{amount}"
        if self.blobs:
            return f"{self.blobs} layer{'s' if self.blobs > 1 else ''} started"
        return "waiting for the registry" if not self.transferring else "starting"


def pull_image(engine: Engine, image: str, log: ProgressLog) -> str:
    """Pull `image` with `engine`, telling `log` how it goes; returns the name to run.

    Raises an `ImagePullError` subclass when the registry says no or cannot be reached, and
    `BackendUnavailableError` when the engine itself goes away.
    """
    reference = engine.pull_reference(image)
    registry = registry_of(reference)
    log.step(f"{image} is not available to {engine.name}; pulling it from {registry}")
    _Pull(engine, reference, registry, log).run()
    if not engine.image_exists(reference):
        error = f"{engine.name} reported the pull done but has no such image"
        raise ImagePullError(reference, error, registry=registry)
    log.step(f"pulled {reference} from {registry} in {log.elapsed:.1f} s")
    return reference


class _Pull:
    """One pull: the engine's stream read in a thread, watched here for silence."""

    def __init__(self, engine: Engine, reference: str, registry: str, log: ProgressLog) -> None:
        self.engine = engine
        self.reference = reference
        self.registry = registry
        self.log = log
        self.stall = stall_timeout()
        self.progress = PullProgress()
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.streams: list[PullStream] = []
        self.aborted = threading.Event()

    def run(self) -> None:
        name = f"llm-sandbox-pull-{self.engine.name}"
        threading.Thread(target=self._read, name=name, daemon=True).start()
        last_heard = time.monotonic()
        while True:
            try:
                kind, item = self.events.get(timeout=_TICK)
            except queue.Empty:
                self._silent_for(time.monotonic() - last_heard)
                continue
            last_heard = time.monotonic()
            if kind == "end":
                return
            if kind == "failed":
                raise self._failure(item) from item
            error, line = self.progress.feed(item)
            if error is not None:
                raise pull_error(self.reference, self.registry, error)
            if line:
                self.log.detail(f"pull {self.reference}: {line}")
            self.log.status(self._status("pulling"))

    def _read(self) -> None:
        """The reader thread: the engine's events onto the queue, then "end" (or "failed")."""
        try:
            read_timeout = self.stall * TRANSFER_STALL_FACTOR + 30  # we give up before that
            stream = self.engine.pull_stream(self.reference, read_timeout)
            self.streams.append(stream)
            if self.aborted.is_set():
                stream.abort()
                return
            for event in stream:
                self.events.put(("event", event))
            self.events.put(("end", None))
        except BaseException as exc:
            self.events.put(("failed", exc))

    def _status(self, doing: str) -> str:
        return f"{doing} {self.reference} from {self.registry}: {self.progress.summary()}"

    def _silent_for(self, silent: float) -> None:
        """Nothing heard for `silent` seconds: give up past the limit, else say where we are."""
        limit = self.stall * (TRANSFER_STALL_FACTOR if self.progress.transferring else 1)
        if silent <= limit:
            self.log.status(self._status("still pulling"))
            return
        self.aborted.set()
        for stream in self.streams:
            stream.abort()
        raise RegistryUnreachableError(
            self.reference,
            f"it went silent: nothing for {silent:.0f} s, {self.progress.summary()}; "
            f"{ENV_STALL} sets how long to wait (now {self.stall:g} s, and "
            f"{TRANSFER_STALL_FACTOR} times that once layers flow)",
            registry=self.registry,
        )

    def _failure(self, exc: BaseException) -> BaseException:
        if isinstance(exc, RegistryAnswer):
            return pull_error(self.reference, self.registry, str(exc))
        if isinstance(exc, (ImagePullError, BackendUnavailableError)):
            return exc
        return BackendUnavailableError(
            f"lost the connection to {self.engine.name} while it pulled {self.reference}: {exc}"
        )
