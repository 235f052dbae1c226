"""The run agent: one long-lived exec per container session that runs every command.

Starting an exec costs a container engine ~40 ms (runc exec), more than a warm Python run.
So a session starts one exec running a tiny `sh` loop as the sandbox user and keeps its
hijacked connection open. For each command we send a header line, a generated script, and
the bytes the script copies out of the agent's stdin (files, then the program's stdin):

    <nonce> <script length>\\n <script> <file 1> ... <file n> <stdin>

The script places the files (`head -c N`, which reads exactly N bytes) and execs the
program. When it exits, the agent SIGKILLs every other process of the sandbox user (so
background daemons do not outlive their run) and prints an end marker carrying the nonce and
the exit code on both stdout and stderr. A run ends when both markers have arrived;
everything before them is the program's output. The nonce is random per run, so output
cannot end a run by accident.

If the program kills the agent (it runs as the same user), the connection ends without a
marker; the run fails with a clear error and the next command starts a new agent.

The agent only needs a duplex byte channel (`ChannelStream`): Docker and Podman deliver
output as multiplexed frames on a hijacked socket (`FrameStream`: 8-byte header: stream, 3
zero bytes, big-endian length); Kubernetes as websocket channel messages (see
`backends/kubernetes/channel.py`). Both read with a deadline.
"""
