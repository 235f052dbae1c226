"""The gate over an exec channel, for sandboxes whose network namespace the gate cannot enter.

gVisor keeps its own network stack (netstack) inside the sandbox, and a Kubernetes pod's
namespace lives on a cluster node: `netns.listen_in` cannot open a socket there. Such a sandbox
gets no network at all (gVisor: the container is off every network; Kubernetes: the deny-all
NetworkPolicy of sessions without network), and a small relay of ours (`RELAY_ARGV`: python3
where the image has it, else perl) runs in an exec and listens on 127.0.0.1:PORT inside it. Each
connection it accepts becomes a stream multiplexed over the exec's stdin/stdout; on the host,
`RelayHost` turns each stream back into a socket and hands it to the gate, which checks it like
any other.

The relay decides nothing: everything it forwards reaches the gate, which enforces the policy
per connection. So a program that kills the relay, or writes frames into its pipes, gains
nothing (it loses its own network); and the host reads the frames as untrusted input (bounded
sizes and stream counts; a malformed frame ends the channel).

Frames, both ways: kind (1 byte), stream id (4), length (4), data. Kinds: `R` the relay
listens (relay to host, once, with its pid as the id); `O` a new connection (relay to host);
`D` data; `C` no more data this way (half-close); `X` the connection is gone, both ways; `P` a
ping (host to relay), answered with the same id.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable

from llm_sandbox.backends.agent.channel import ChannelStream
from llm_sandbox.backends.base import STDERR
from llm_sandbox.egress.gate import MAX_CONNECTIONS, PORT
from llm_sandbox.exceptions import ControlUnavailableError

HEADER = struct.Struct(">cII")
MAX_FRAME = 65536
READY_TIMEOUT = 30.0
PING_TIMEOUT = 5.0
POLL_BUSY = 0.001
POLL_IDLE = 0.005
"""Seconds the pump waits on the channel before letting a sender (the gate's answers, a ping)
at it, while connections are open and while none is: a sender waits up to that long."""
MAX_BACKLOG = 4 << 20
"""Bytes queued for the relay past which the gate's answers wait (a relay that stops reading
must not make this process buffer whatever an allowed server sends)."""

RELAY_SCRIPT = (
    r"""
import os, selectors, socket, struct
H = struct.Struct(">cII")
def put(kind, cid, data=b""):
    buf = H.pack(kind, cid, len(data)) + data
    while buf:
        buf = buf[os.write(1, buf):]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", PORT))
ls.listen(128)
sel = selectors.DefaultSelector()
sel.register(ls, selectors.EVENT_READ, 0)
sel.register(0, selectors.EVENT_READ, -1)
conns, ended, pending, last = {}, {}, b"", 0
def drop(cid):
    c = conns.pop(cid, None)
    ended.pop(cid, None)
    if c is not None:
        try:
            sel.unregister(c)
        except (KeyError, ValueError):
            pass
        c.close()
def half(cid, way):
    ended[cid] = ended.get(cid, 0) | way
    if ended[cid] == 3:
        drop(cid)
put(b"R", os.getpid())
while True:
    for key, _ in sel.select():
        cid = key.data
        if cid == 0:
            c, _ = ls.accept()
            last += 1
            conns[last] = c
            sel.register(c, selectors.EVENT_READ, last)
            put(b"O", last)
        elif cid == -1:
            chunk = os.read(0, 65536)
            if not chunk:
                raise SystemExit(0)
            pending += chunk
            while len(pending) >= 9:
                kind, to, n = H.unpack_from(pending)
                if len(pending) < 9 + n:
                    break
                data, pending = pending[9:9 + n], pending[9 + n:]
                if kind == b"P":
                    put(b"P", to)
                    continue
                c = conns.get(to)
                if c is None:
                    continue
                try:
                    if kind == b"D":
                        c.sendall(data)
                    elif kind == b"C":
                        c.shutdown(socket.SHUT_WR)
                        half(to, 2)
                    else:
                        drop(to)
                except OSError:
                    drop(to)
                    put(b"X", to)
        else:
            try:
                data = key.fileobj.recv(65536)
            except OSError:
                data = None
            if data:
                put(b"D", cid, data)
            elif data is None:
                drop(cid)
                put(b"X", cid)
            else:
                sel.unregister(key.fileobj)
                put(b"C", cid)
                half(cid, 1)
"""
).replace("PORT", str(PORT))
"""The relay in python3 (standard library only)."""

PERL_RELAY_SCRIPT = (
    r"""
use strict; use IO::Socket::INET; use IO::Select;
$SIG{PIPE} = "IGNORE"; binmode STDIN; binmode STDOUT;
sub put { my ($k, $id, $d) = @_; $d = "" unless defined $d;
  my $b = pack("a1NN", $k, $id, length $d) . $d;
  while (length $b) { my $n = syswrite(STDOUT, $b); die "write: $!" unless defined $n;
    substr($b, 0, $n) = ""; } }
sub sendall { my ($c, $d) = @_;
  while (length $d) { my $n = syswrite($c, $d); return 0 unless defined $n;
    substr($d, 0, $n) = ""; } return 1; }
my $ls = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => PORT, Listen => 128,
  ReuseAddr => 1, Proto => "tcp") or die "listen: $!";
my $sel = IO::Select->new($ls, \*STDIN);
my (%conns, %ended, %ids); my $pending = ""; my $last = 0;
sub drop { my $id = shift; my $c = delete $conns{$id}; delete $ended{$id};
  if ($c) { $sel->remove($c); delete $ids{fileno $c}; close $c; } }
sub half { my ($id, $w) = @_; $ended{$id} = ($ended{$id} || 0) | $w;
  drop($id) if $ended{$id} == 3; }
put("R", $$);
while (1) {
  for my $fh ($sel->can_read) {
    if ($fh == $ls) {
      my $c = $ls->accept or next; $last++; $conns{$last} = $c; $ids{fileno $c} = $last;
      $sel->add($c); put("O", $last);
    } elsif (fileno($fh) == 0) {
      my $n = sysread(STDIN, my $chunk, 65536); exit 0 unless $n;
      $pending .= $chunk;
      while (length($pending) >= 9) {
        my ($k, $to, $len) = unpack("a1NN", $pending);
        last if length($pending) < 9 + $len;
        my $data = substr($pending, 9, $len); substr($pending, 0, 9 + $len) = "";
        if ($k eq "P") { put("P", $to); next; }
        my $c = $conns{$to} or next;
        if ($k eq "D") { unless (sendall($c, $data)) { drop($to); put("X", $to); } }
        elsif ($k eq "C") { shutdown($c, 1); half($to, 2); }
        else { drop($to); }
      }
    } else {
      my $id = $ids{fileno $fh};
      my $n = sysread($fh, my $data, 65536);
      if ($n) { put("D", $id, $data); }
      elsif (defined $n) { $sel->remove($fh); put("C", $id); half($id, 1); }
      else { drop($id); put("X", $id); }
    }
  }
}
"""
).replace("PORT", str(PORT))
"""The same relay in perl (core modules only): Debian's perl-base is in every Debian-based
image, the Java, Go, R, Ruby and C++ ones among them, where python3 is not."""

RELAY_ARGV = (
    "sh",
    "-c",
    'if command -v python3 >/dev/null 2>&1; then exec python3 -I -S -c "$1"; fi; exec perl -e "$2"',
    "llm-sandbox-relay",
    RELAY_SCRIPT,
    PERL_RELAY_SCRIPT,
)
"""The relay's command: python3 where the image has it, else perl."""


class RelayHost:
    """The host's end of one relay: serves its connections through `serve` (the gate)."""

    def __init__(self, stream: ChannelStream, serve: Callable[[socket.socket], None]) -> None:
        self._stream = stream
        self._serve = serve
        self._lock = threading.Lock()
        self._conns: dict[int, socket.socket] = {}
        self._halves: dict[int, int] = {}
        """Per stream: 1 once the gate has no more to send, 2 once the relay has none; 3 ends it."""
        self._state = threading.Lock()
        self._buffer = bytearray()
        self._errors = bytearray()
        self._ready = threading.Event()
        self._ended = threading.Event()
        self._pongs: set[int] = set()
        self._pong = threading.Condition()
        self._pings = 0
        self.pid = 0
        """The relay's pid inside the sandbox (once ready)."""
        self._pump = threading.Thread(target=self._run, name="llm-sandbox-gate-relay", daemon=True)
        self._pump.start()

    @property
    def alive(self) -> bool:
        return self._ready.is_set() and not self._ended.is_set()

    def answers(self, timeout: float = PING_TIMEOUT) -> bool:
        """Whether the relay still answers (it may be gone before its end has reached us:
        killed by a timeout's kill, or, where it shares the code's user, by the code)."""
        if not self.alive:
            return False
        with self._pong:
            self._pings += 1
            ping = self._pings
        self._send(b"P", ping)
        deadline = time.monotonic() + timeout
        with self._pong:
            while ping not in self._pongs:
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive:
                    return False
                self._pong.wait(min(left, 0.05))
            self._pongs.discard(ping)
        return True

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once the relay listens inside the sandbox; raise if it cannot."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.01):
            if self._ended.is_set() or time.monotonic() > deadline:
                self.close()
                said = self._errors.decode(errors="replace").strip().splitlines()
                raise ControlUnavailableError(
                    "the egress gate's relay did not start in the sandbox"
                    + (f" ({said[-1]})" if said else " (timed out)")
                    + "; it needs python3 or perl in the image. Use an image with one of "
                    "them, or network=False or network=True"
                )

    def close(self) -> None:
        """End the relay (its stdin ends) and every connection. Not under the channel's lock: a
        sender may be blocked in the transport, and closing it is what frees that sender."""
        self._ended.set()
        with self._state:
            conns = list(self._conns.values())
            self._conns.clear()
        for sock in conns:
            _shut(sock)
        with contextlib.suppress(Exception):
            self._stream.close()

    # --- the pump: frames from the relay ----------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._ended.is_set():
                poll = POLL_BUSY if self._conns else POLL_IDLE
                with self._lock:
                    frame = self._stream.next_frame(poll)
                if frame is None:
                    time.sleep(0)  # let a sender have the lock
                    continue
                kind, data = frame
                if not data and kind == 0:
                    break
                if kind == STDERR:
                    self._errors = (self._errors + data)[-4096:]
                    continue
                self._buffer += data
                self._dispatch()
        except (OSError, ValueError):
            pass
        finally:
            self.close()

    def _dispatch(self) -> None:
        while len(self._buffer) >= HEADER.size:
            kind, cid, size = HEADER.unpack_from(self._buffer)
            if size > MAX_FRAME:
                raise ValueError("oversized frame from the relay")
            if len(self._buffer) < HEADER.size + size:
                return
            data = bytes(self._buffer[HEADER.size : HEADER.size + size])
            del self._buffer[: HEADER.size + size]
            self._frame(kind, cid, data)

    def _frame(self, kind: bytes, cid: int, data: bytes) -> None:
        if kind == b"R":
            self.pid = cid
            self._ready.set()
            return
        if kind == b"P":
            with self._pong:
                if len(self._pongs) < 16:
                    self._pongs.add(cid)
                self._pong.notify_all()
            return
        if kind == b"O":
            with self._state:
                refused = cid in self._conns or len(self._conns) >= MAX_CONNECTIONS
                if not refused:
                    ours, theirs = socket.socketpair()
                    self._conns[cid] = ours
            if refused:
                self._send(b"X", cid)
                return
            self._serve(theirs)
            threading.Thread(target=self._outbound, args=(cid, ours), daemon=True).start()
            return
        with self._state:
            sock = self._conns.get(cid)
        if sock is None:
            return
        try:
            if kind == b"D":
                sock.sendall(data)
            elif kind == b"C":
                sock.shutdown(socket.SHUT_WR)
                self._half(cid, 2)
            else:
                self._drop(cid)
        except OSError:
            self._drop(cid)
            self._send(b"X", cid)

    # --- the gate's answers, back to the relay ----------------------------------------------
    def _outbound(self, cid: int, sock: socket.socket) -> None:
        try:
            while True:
                data = sock.recv(MAX_FRAME)
                if not data:
                    break
                self._send(b"D", cid, data)
            self._send(b"C", cid)
            self._half(cid, 1)
        except OSError:
            self._send(b"X", cid)
            self._drop(cid)

    def _send(self, kind: bytes, cid: int, data: bytes = b"") -> None:
        while self._stream.backlog > MAX_BACKLOG and not self._ended.is_set():
            time.sleep(0.01)
        if self._ended.is_set():
            return
        with self._lock:
            self._stream.send(HEADER.pack(kind, cid, len(data)) + data)

    def _half(self, cid: int, way: int) -> None:
        with self._state:
            done = self._halves.get(cid, 0) | way
            self._halves[cid] = done
        if done == 3:
            self._drop(cid)

    def _drop(self, cid: int) -> None:
        with self._state:
            sock = self._conns.pop(cid, None)
            self._halves.pop(cid, None)
        if sock is not None:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def start_relay(stream: ChannelStream, serve: Callable[[socket.socket], None]) -> RelayHost:
    """Serve the relay that `stream` (an exec of `RELAY_ARGV`) runs, once it listens."""
    relay = RelayHost(stream, serve)
    relay.wait_ready()
    return relay
