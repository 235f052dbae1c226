"""A session pod: commands through the run agent over a websocket exec, files as tar.

How a run works (the same agent as Docker and Podman, see `backends/agent`):

* One long-lived exec runs the agent; each command is a message on its stdin and ends with
  nonce end-markers carrying the exit code. A new exec per run costs a websocket handshake
  plus a runtime exec (see `bench/kubernetes.py`), so only the kill loop, the OOM probe and
  the agent itself are execs of their own, each an argv.
* Kubernetes runs every exec as the container's user, so the code, the agent and the
  kill loop share a uid: pid 1 (the pod's sleeper) is immune because the kernel drops
  SIGKILL sent to a namespace's init from inside; every other process of the uid is the run's.
* On timeout a separate exec SIGKILLs every process but pid 1 (the agent too), so everything
  the run started is dead before the timeout is reported; the next command starts a new agent.
* Limits a pod spec cannot express (processes, file size, open files, CPU seconds, no core
  dumps) are set with `ulimit` by the agent's shell before it runs anything.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
from collections.abc import Sequence
from typing import Any

from llm_sandbox import environment
from llm_sandbox.backends.agent.channel import ChannelStream
from llm_sandbox.backends.agent.host import AgentHost, ExecProcess
from llm_sandbox.backends.agent.protocol import AGENT_SCRIPT, prepare
from llm_sandbox.backends.agent.tarexec import TarOverExec
from llm_sandbox.backends.base import ExecRequest, Process, run_to_completion
from llm_sandbox.backends.kubernetes import manifest, policy
from llm_sandbox.backends.kubernetes.channel import WebSocketChannels
from llm_sandbox.backends.kubernetes.options import KubernetesOptions
from llm_sandbox.backends.kubernetes.pods import PodApi, start_timeout
from llm_sandbox.config import ResourceLimits, SessionConfig
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    ControlUnavailableError,
    SandboxRuntimeError,
    SessionStateError,
)
from llm_sandbox.language_handlers.base import RuntimeNeeds
from llm_sandbox.layout import RUN_SCRIPT

logger = logging.getLogger("llm_sandbox")

INTERNAL_TIMEOUT = 30.0


def ulimits(limits: ResourceLimits) -> str:
    """sh lowering the per-process limits; fails (non-zero) if one cannot be set.

    dash counts file size in 512-byte blocks and names the process limit -p (bash: -u). The
    process limit is RLIMIT_NPROC: it counts every process of the uid on the node, which is
    the pod's alone with our per-session uid (a manifest that sets a shared uid shares it).
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


class PodSandbox(TarOverExec, AgentHost):
    def __init__(self, api: PodApi, config: SessionConfig, runtime: RuntimeNeeds) -> None:
        self._api = api
        self._config = config
        self._closed = False
        self._stopped: str | None = None
        self.workdir = config.workdir
        options = config.options(KubernetesOptions)
        defaults = manifest.default_pod(
            image=options.image or runtime.image,
            workdir=config.workdir,
            limits=config.limits,
            environment=config.environment,
            session_timeout=config.session_timeout,
            network=config.network,
        )
        self.pod = manifest.pod_manifest(options.pod_manifest, defaults)
        container = manifest.sandbox_container(self.pod)
        if not container.get("image"):
            api.close()
            raise ConfigurationError(
                f"no image for language {config.lang!r}; pass image= or set it in pod_manifest"
            )
        self.container = str(container.get("name") or "sandbox")
        labels = self.pod["metadata"].get("labels") or {}
        self.network = labels.get(manifest.NETWORK_LABEL) != "none"
        self.name = ""
        try:
            if not self.network:
                policy.ensure(api.core, api.namespace)
            self.name = api.create(self.pod)
            api.wait_running(self.name, self.container, start_timeout())
        except BaseException:
            self._closed = True
            if self.name:
                api.delete(self.name)
            api.close()
            raise
        limits = ulimits(config.limits)
        ours = {"HOME": self.workdir, "LANG": "C.UTF-8"}
        exports = " ".join(
            f"{name}={shlex.quote(value)}"
            for name, value in environment.merge(config.environment, ours).items()
            if name in ours
        )
        self._agent_command = f"export {exports}; {limits} || exit 125; {AGENT_SCRIPT}"
        self._check_limits(limits)
        logger.debug("pod %s/%s running %s", api.namespace, self.name, container["image"])

    def _check_limits(self, limits: str) -> None:
        """Fail closed: the session does not open if the image's shell cannot set a limit."""
        code, _, err = run_to_completion(self._one_off(["sh", "-c", limits]), INTERNAL_TIMEOUT)
        if code != 0:
            self.close()
            raise ControlUnavailableError(
                f"the image's /bin/sh could not apply the resource limits ({limits}): "
                f"{err.decode(errors='replace').strip()}; use an image with a POSIX sh "
                "(dash, bash, busybox) or relax ResourceLimits"
            )

    # --- exec ----------------------------------------------------------------------------------
    def exec(self, request: ExecRequest) -> Process:
        if self._closed:
            raise SessionStateError("the sandbox is closed")
        if self._stopped:
            raise SandboxRuntimeError(self._stopped)
        if request.network and not self.network:
            # A pod's NetworkPolicy cannot be lifted for one command and reliably restored
            # before the next one (the CNI applies changes asynchronously).
            raise ConfigurationError(
                f"pod {self.name} has no network (NetworkPolicy {policy.POLICY_NAME}), so "
                "libraries cannot be installed in it; open the session with network=True, or "
                "use an image (or pod_manifest) with the libraries preinstalled"
            )
        script, payload = prepare(request, self.workdir, under_agent=True)
        return self.start_run(script, payload)

    def _exec(self, argv: Sequence[str]) -> WebSocketChannels:
        try:
            return WebSocketChannels(self._api.exec(self.name, self.container, argv))
        except (SandboxRuntimeError, BackendUnavailableError):
            # The client reports a refused upgrade (pod gone, not running) as unreachable.
            self._check_running()
            raise

    def _open_agent(self) -> ChannelStream:
        return self._exec(["sh", "-c", self._agent_command, RUN_SCRIPT])

    def _one_off(self, argv: Sequence[str]) -> Process:
        stream = self._exec(argv)
        return ExecProcess(stream, stream.exit_code)

    def _internal(self, argv: Sequence[str]) -> tuple[int, bytes]:
        """Run one of our own commands in an exec of its own; (exit code, stdout)."""
        code, out, _ = run_to_completion(self._one_off(argv), timeout=INTERNAL_TIMEOUT)
        return code, out

    def _check_running(self) -> None:
        """Raise, saying why, once the pod or its sandbox container is no longer running."""
        pod = self._api.read(self.name)
        status = pod.status
        state = None
        for container in (status.container_statuses if status else None) or []:
            if container.name == self.container:
                state = container.state
        if status is not None and status.phase == "Running" and state and state.running:
            return
        self._drop_agent()
        reason = (status.reason if status else None) or "stopped"
        terminated = state.terminated if state else None
        if terminated is not None:
            reason = f"{terminated.reason or reason}, exit code {terminated.exit_code}"
        self._stopped = (
            f"the pod {self.name} is no longer running ({reason}); everything in it is gone, "
            "so open a new session"
        )
        raise SandboxRuntimeError(self._stopped)

    # --- lifecycle -----------------------------------------------------------------------------
    def handle(self) -> object | None:
        """The pod's name."""
        return self.name or None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drop_agent()
        try:
            with contextlib.suppress(SandboxRuntimeError):
                self._api.delete(self.name)
        finally:
            self._api.close()

    def describe(self) -> dict[str, Any]:
        """The pod as the API server stores it (for tests and `doctor`)."""
        pod: dict[str, Any] = self._api.core.api_client.sanitize_for_serialization(
            self._api.read(self.name)
        )
        return pod
