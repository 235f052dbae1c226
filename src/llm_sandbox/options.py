"""The keyword arguments of `SandboxSession(...)`, spelled out for type checkers and IDEs.

The options themselves (types, defaults, documentation) are declared once, as the fields of
`llm_sandbox.config.SessionConfig` and of each backend's options class; this `TypedDict` only
restates their names and types so that `SandboxSession(workdir=3)` is a type error.
`tests/test_options.py` checks that the two never drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypedDict

from llm_sandbox.config import ResourceLimits
from llm_sandbox.const import EncodingErrorsType
from llm_sandbox.egress.policy import EgressPolicy

if TYPE_CHECKING:
    from llm_sandbox.security import SecurityPolicy


class SessionOptions(TypedDict, total=False):
    """Every option of `SandboxSession` but `lang` and `backend` (see `SessionConfig`)."""

    # every backend (SessionConfig)
    verbose: bool
    workdir: str
    default_timeout: float | None
    execution_timeout: float | None
    session_timeout: float | None
    logger: logging.Logger | None
    network: bool | EgressPolicy
    limits: ResourceLimits | None
    security_policy: SecurityPolicy | None
    libraries: Sequence[str] | None
    env_vars: Mapping[str, str]
    encoding_errors: EncodingErrorsType
    skip_environment_setup: bool
    stream: bool
    # some backends (their BackendOptions)
    runtime_config: Mapping[str, object] | None
    image: str | None
    dockerfile: str | None
    keep_template: bool
    commit_container: bool
    commit_image_tag: str | None
    runtime_configs: Mapping[str, object] | None
    environment: Mapping[str, str] | None
    mounts: Sequence[object] | None
    client: object | None
    pod_manifest: Mapping[str, object] | None
    kube_namespace: str | None
    container_id: str | None
