"""The one seccomp policy, as a BPF program (embedded backend) and as an OCI profile (engines).

```
seccomp/
  policy.py   the rules, the errno values, the syscall numbers per architecture, and where the
              two encodings differ on purpose
  bpf.py      the classic-BPF program bubblewrap installs (build_filter, describe)
  oci.py      the Docker/Podman seccomp profile (oci_profile)
```

Both encodings are generated from ``policy.RULES``; tests/backends/test_seccomp_policy.py runs
each over every syscall the policy names and requires the same answer.
"""

from llm_sandbox.backends.seccomp.bpf import build_filter, describe
from llm_sandbox.backends.seccomp.oci import oci_profile
from llm_sandbox.backends.seccomp.policy import DENIED_SYSCALLS, SUPPORTED_ARCHES

__all__ = ["DENIED_SYSCALLS", "SUPPORTED_ARCHES", "build_filter", "describe", "oci_profile"]
