"""A session pod: commands through the run agent over a websocket exec, files as tar.

How a run works (the same agent as Docker and Podman, see `backends/agent`):

* One long-lived exec runs the agent; each command is a message on its stdin and ends with
  nonce end-markers carrying the exit code. A new exec per run costs a websocket handshake
  plus a runtime exec (see `bench/kubernetes.py`), so only the kill loop, the OOM probe and
  the agent itself are execs of their own, each an argv.
* Kubernetes runs every exec as the container's user, so the code, the agent and the
  killer share a uid: pid 1 (the pod's sleeper) is immune because the kernel drops
  SIGKILL sent to a namespace's init from inside; every other process of the uid but the
  killer is the run's.
* The killer (see `agent.protocol.killer_script`) is an exec started at open; the agent's
  clean-up spares it. On timeout it SIGKILLs every process but pid 1 and itself (the agent
  too) and says when they are gone; the next command starts a new agent. The code can kill the
  killer (same uid): a new one starts then, and if none survives the pod is deleted.
* Limits a pod spec cannot express (processes, file size, open files, CPU seconds, no core
  dumps) are set with `ulimit` by the agent's shell before it runs anything.
* With an egress policy the pod has no network (the deny-all NetworkPolicy, as without one),
  and each command first gets the gate's relay (`egress.relay`) in an exec: the pod's only
  way out is that exec channel to the gate in this process.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
from collections.abc import Sequence
from typing import Any

from llm_sandbox import environment
from llm_sandbox.backends.agent.attached import prepare_script, refuse_fixed_limits, spared_pids
from llm_sandbox.backends.agent.channel import ChannelStream
from llm_sandbox.backends.agent.host import AgentHost, ExecProcess
from llm_sandbox.backends.agent.killer import KILL_TIMEOUT, Killer, KillerGone
from llm_sandbox.backends.agent.protocol import (
    AGENT_SCRIPT,
    killer_script,
    prepare,
    private_shell,
    ulimits,
)
from llm_sandbox.backends.agent.tarexec import TarOverExec
from llm_sandbox.backends.base import (
    KILL_GRACE,
    ExecRequest,
    NetworkGate,
    Process,
    run_to_completion,
)
from llm_sandbox.backends.kubernetes import manifest, policy
from llm_sandbox.backends.kubernetes.channel import WebSocketChannels
from llm_sandbox.backends.kubernetes.options import KubernetesOptions
from llm_sandbox.backends.kubernetes.pods import PodApi, start_timeout
from llm_sandbox.config import SessionConfig
from llm_sandbox.egress.relay import RELAY_ARGV, RelayHost, start_relay
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    ControlUnavailableError,
    SandboxRuntimeError,
    SessionStateError,
)
from llm_sandbox.language_handlers.base import RuntimeNeeds
from llm_sandbox.layout import RUN_SCRIPT, SUPPORT_DIR

logger = logging.getLogger("llm_sandbox")

INTERNAL_TIMEOUT = 30.0


EGRESS_ON_NETWORK = (
    "pod {name} has a network of its own (network=True, a pod_manifest without the "
    "io.llm-sandbox.network=none label, or an attached pod), so the egress gate would not be "
    "its only way out; an egress policy needs a session pod without network"
)


class PodSandbox(AgentHost, TarOverExec):
    _resident: tuple[int, ...] = ()
    """Pids an attached pod ran before the session, which no kill touches."""

    def __init__(self, api: PodApi, config: SessionConfig, runtime: RuntimeNeeds) -> None:
        self._api = api
        self._relay: RelayHost | None = None
        self._config = config
        self._closed = False
        self._stopped: str | None = None
        self.workdir = config.workdir
        options = config.options(KubernetesOptions)
        self.attached = options.container_id is not None
        """Whether the session runs in an existing pod (kept running at close)."""
        self.name = ""
        if self.attached:
            self._adopt(str(options.container_id))
        else:
            self._create(options, runtime)
        limits = ulimits(config.limits)
        ours = {"HOME": self.workdir, "LANG": "C.UTF-8"}
        exports = " ".join(
            f"{name}={shlex.quote(value)}"
            for name, value in environment.merge(config.environment, ours).items()
            if name in ours
        )
        self._agent_command = f"export {exports}; {limits} || exit 125; {AGENT_SCRIPT}"
        self._check_limits(limits)
        try:
            self._resident = self._prepare_attached() if self.attached else ()
            killer = Killer(
                self._start_killer, self._check_running, same_user=True, resident=self._resident
            )
            self._killer = killer
            killer.ping(INTERNAL_TIMEOUT)
        except BaseException:
            self.close()
            raise
        logger.debug("pod %s/%s running", self._api.namespace, self.name)

    def _prepare_attached(self) -> tuple[int, ...]:
        """In an existing pod: our directories, and the processes the kills must spare."""
        code, out = self._internal(["sh", "-c", prepare_script(self.workdir)])
        if code != 0:
            raise SandboxRuntimeError(
                f"could not create {self.workdir} and {SUPPORT_DIR} in pod {self.name}; they "
                "must exist, or the container's user must be able to create them"
            )
        return spared_pids(out)

    def _create(self, options: KubernetesOptions, runtime: RuntimeNeeds) -> None:
        api, config = self._api, self._config
        defaults = manifest.default_pod(
            image=options.image or runtime.image,
            workdir=config.workdir,
            limits=config.limits,
            environment=config.environment,
            session_timeout=config.session_timeout,
            network=config.full_network,
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
        if config.egress is not None and self.network:
            api.close()
            raise ControlUnavailableError(EGRESS_ON_NETWORK.format(name="of the session"))
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

    def _adopt(self, name: str) -> None:
        """Run in the existing pod `name` (see `agent/attached.py`): its first container."""
        api = self._api
        try:
            found = api.read_if_exists(name)
            if found is None:
                raise ConfigurationError(
                    f"there is no pod {name!r} in namespace {api.namespace}; pass the name of a "
                    "running pod as container_id= (and its namespace as kube_namespace=)"
                )
            refuse_fixed_limits(self._config.limits, f"pod {name}")
            self.pod = api.core.api_client.sanitize_for_serialization(found)
            self.container = str(manifest.sandbox_container(self.pod).get("name"))
            self.network = True
            if self._config.egress is not None:
                raise ControlUnavailableError(EGRESS_ON_NETWORK.format(name=name))
            api.wait_running(name, self.container, start_timeout(), ours=False)
        except BaseException:
            self._closed = True
            api.close()
            raise
        self.name = name

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
        if request.egress is not None:
            self._start_relay(request.egress)
        elif request.network and not self.network:
            # A pod's NetworkPolicy cannot be lifted for one command and reliably restored
            # before the next one (the CNI applies changes asynchronously).
            raise ConfigurationError(
                f"pod {self.name} has no network (NetworkPolicy {policy.POLICY_NAME}), so "
                "libraries cannot be installed in it; open the session with network=True, or "
                "use an image (or pod_manifest) with the libraries preinstalled"
            )
        forked = self._forked(request)
        if forked is not None:
            return forked
        if request.interactive:
            return self.start_kernel(request, self.workdir)
        script, payload = prepare(request, self.workdir, under_agent=True)
        return self.start_run(script, payload)

    def _run_workdir(self) -> str:
        return self.workdir

    def _start_relay(self, gate: NetworkGate) -> None:
        """The gate's relay (see `egress.relay`), for the session. It runs as the pod's user:
        the agent's clean-up after a run spares it (`_kept_pids`); a timeout's kill, or the
        code, may end it, and the next command then starts a new one."""
        if self.network:
            raise ControlUnavailableError(EGRESS_ON_NETWORK.format(name=self.name))
        if self._relay is not None and self._relay.answers():
            return
        self._stop_relay()
        self._relay = start_relay(self._exec(RELAY_ARGV), gate.serve)

    def _kept_pids(self) -> tuple[int, ...]:
        relay = self._relay
        return (relay.pid,) if relay is not None and relay.alive and relay.pid > 0 else ()

    def _stop_relay(self) -> None:
        if self._relay is not None:
            self._relay.close()
            self._relay = None

    def _exec(self, argv: Sequence[str]) -> WebSocketChannels:
        try:
            return WebSocketChannels(self._api.exec(self.name, self.container, argv))
        except (SandboxRuntimeError, BackendUnavailableError):
            # The client reports a refused upgrade (pod gone, not running) as unreachable.
            self._check_running()
            raise

    def _open_agent(self, script_path: str = RUN_SCRIPT) -> ChannelStream:
        return self._exec(private_shell(self._agent_command, script_path))

    def _start_killer(self) -> ChannelStream:
        script = killer_script(outlive_stdin=False, spare=self._resident)
        return self._exec(private_shell(script, "llm-sandbox-killer"))

    def kill_all(self, timeout: float = KILL_TIMEOUT, *, patient: bool = False) -> None:
        """As for every agent sandbox; when no killer survives (the code kills every process
        of its user, ours included, as they start) the pod cannot be recovered: it is deleted."""
        try:
            super().kill_all(timeout, patient=patient)
        except KillerGone as exc:
            self._stopped = (
                f"the run's processes could not be stopped ({exc}); pod {self.name} was "
                "deleted, so open a new session"
            )
            self._drop_agent()
            self._close_killer()
            # Within the run's grace: ask for the deletion, do not wait for it (close waits).
            with contextlib.suppress(SandboxRuntimeError):
                self._api.delete(self.name, wait=0.0, request_timeout=KILL_GRACE / 2)
            raise SandboxRuntimeError(self._stopped) from exc

    def _one_off(self, argv: Sequence[str]) -> Process:
        stream = self._exec(argv)
        return ExecProcess(stream, stream.exit_code)

    def _internal(self, argv: Sequence[str]) -> tuple[int, bytes]:
        """Run one of our own commands in an exec of its own; (exit code, stdout)."""
        code, out, _ = run_to_completion(self._one_off(argv), timeout=INTERNAL_TIMEOUT)
        return code, out

    def alive(self) -> bool | None:
        """Unknown: the exec streams pass through the API server, which may keep them open
        after the pod was deleted (the emulator closes them only after the pod object is
        gone), so a pod is confirmed by asking the API (`check_alive`: one GET)."""
        return None

    def _check_running(self) -> None:
        """Raise, saying why, once the pod or its sandbox container is no longer running."""
        pod = self._api.read_if_exists(self.name)
        if pod is None:
            self._drop_agent()
            self._stopped = (
                f"the pod {self.name} is gone (deleted from outside the session); everything "
                "in it is gone, so open a new session"
            )
            raise SandboxRuntimeError(self._stopped)
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
        self._stop_forks()  # a stopped sandbox's server: only its connection to close
        self._closed = True
        self._stop_relay()
        try:
            if self.attached:  # what the runs left is killed; the pod runs on
                self._drop_agent()
                if self._killer is not None and not self._stopped:
                    with contextlib.suppress(SandboxRuntimeError):
                        self.kill_all()
                self._close_killer()
                return
            self._drop_agent()
            self._close_killer()
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
