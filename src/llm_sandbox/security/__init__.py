"""Static security policy: find what a program imports and calls before it runs.

This is defence in depth; the sandbox itself is the boundary. `SecurityPolicy.check(code, lang)`
lists the violations (restricted modules imported, patterns matched in real code, never in
strings or comments) and `is_safe` says whether any reaches the policy's threshold.
"""

from llm_sandbox.security.model import (
    RestrictedModule,
    SecurityIssueSeverity,
    SecurityPattern,
    SecurityPolicy,
    Violation,
)
from llm_sandbox.security.presets import get_security_policy, preset_names

__all__ = [
    "RestrictedModule",
    "SecurityIssueSeverity",
    "SecurityPattern",
    "SecurityPolicy",
    "Violation",
    "get_security_policy",
    "preset_names",
]
