"""A session in an existing container (`container_id=`): see `agent/attached.py` for what
that means for kills and limits. The killer cannot be the container's main process there: it
is an exec of root, started at open (a new one starts if a run kills it)."""

from __future__ import annotations

from llm_sandbox.backends.agent.attached import refuse_fixed_limits
from llm_sandbox.backends.container.engine import Adopted
from llm_sandbox.backends.container.spec import ContainerSpec
from llm_sandbox.config import SessionConfig


def attached_spec(config: SessionConfig, found: Adopted) -> ContainerSpec:
    """How the session runs in `found`: as its default user, on whatever network it has."""
    refuse_fixed_limits(config.limits, f"container {found.id[:12]}")
    return ContainerSpec(image=found.image, workdir=config.workdir, user=found.user, network=True)
