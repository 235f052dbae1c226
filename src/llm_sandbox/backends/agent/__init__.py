"""The run agent and the killer: how container and pod sandboxes run commands and stop them.

**The agent.** Starting an exec costs a container engine ~40 ms (runc exec), more than a warm
Python run. So a session starts one exec running a tiny `sh` loop as the sandbox user and
keeps its hijacked connection open. For each command we send a header line, a generated
script, and the bytes the script copies out of the agent's stdin (files, then the program's
stdin):

    <nonce> <script length> [pids to spare]\\n <script> <file 1> ... <file n> <stdin>

The script places the files (`head -c N`, which reads exactly N bytes) and execs the program.
When it exits, the agent SIGKILLs every other process of its user with `kill -9 -1` (atomic:
no fork bomb outruns it, see `protocol.reap`), waits until they are gone, and prints an end
marker carrying the nonce and the exit code on both stdout and stderr. A run ends when both
markers have arrived; everything before them is the program's output. The nonce is random per
run, so output cannot end a run by accident. The agent runs in a private shell (an unreadable
copy of sh, see `protocol.private_shell`): processes of its user can neither ptrace it nor
reach its stdin or memory through /proc, so a run cannot queue commands for after its end.

**The killer.** A timed-out run is stopped by the killer (`protocol.killer_script`), a process
started with the sandbox that waits on its stdin: for each request it SIGKILLs every process
but itself and pid 1 (`kill -9 -1`) and answers once they are gone (`killer.Killer`). It needs
no new process, so a run that exhausted the sandbox's processes, memory or file descriptors
cannot keep it from working, and it answers within milliseconds while a fork bomb holds the
CPU (a new exec then takes seconds). In a container it is the main process, root with
CAP_KILL and no other capability, reached by attaching to it: the code's user cannot signal,
stop, ptrace or read it. Kubernetes runs every exec as the container's user, so in a pod the
killer is an exec of that user (the agent's clean-up spares it): a run that hunts the
processes of its own user down can defeat it, and the pod is then deleted, saying so.

If the program kills the agent (it runs as the same user), the connection ends without a
marker; the run fails with a clear error, the killer stops what it left, and the next command
starts a new agent.

The agent only needs a duplex byte channel (`ChannelStream`): Docker and Podman deliver output
as multiplexed frames on a hijacked socket (`FrameStream`: 8-byte header: stream, 3 zero bytes,
big-endian length); Kubernetes as websocket channel messages (see
`backends/kubernetes/channel.py`). Both read with a deadline. Under gVisor the agent's output
goes through relays inside the sandbox (`protocol._RELAYS`): gVisor returns short writes on
the host pipe an exec's stdout is, and programs that do not retry them lose output.
"""
