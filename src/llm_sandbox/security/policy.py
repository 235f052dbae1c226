"""The 0.3 generation's module path for the policy model: `from llm_sandbox.security.policy
import SecurityPolicy` keeps working. The model lives in `llm_sandbox.security.model`."""

from llm_sandbox.security.model import (
    RestrictedModule,
    SecurityIssueSeverity,
    SecurityPattern,
    SecurityPolicy,
    Violation,
)

__all__ = [
    "RestrictedModule",
    "SecurityIssueSeverity",
    "SecurityPattern",
    "SecurityPolicy",
    "Violation",
]
