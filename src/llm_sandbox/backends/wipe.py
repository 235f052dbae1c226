"""Wiping a sandbox between users (pools), as a pure script and a parser of its report.

Every backend wipes the same way (`Sandbox.wipe`): first every process the code started is
killed (the killer in a container or pod; on the embedded backend no process outlives its
run), then `wipe_script` runs as the code's own user, so it can delete whatever that user made,
however it set the permissions. The script

1. waits until no process of its user is left but itself and the pids it is told to spare,
   and reports a survivor (`survivor <pid>`);
2. finds every writable mount in /proc/self/mounts (the work directory, /tmp, /dev/shm,
   /dev/mqueue, our support directory, and whatever else the runtime or the user's options
   made writable), but not /proc, /sys, /dev itself or the libraries directory, and deletes
   everything in each (making each entry writable first; mount points inside are kept); what
   could not be deleted is reported (`left <path>`); a writable root file system cannot be
   wiped and is reported (`rwroot`);
3. removes the System V IPC objects of its user;
4. prints the facts a clean sandbox of this kind always shows alike: which writable mounts
   there are, the checksums of writable single-file mounts, how many IPC objects exist, and
   a checksum of the libraries directory (names, modes, sizes; contents too where the code's
   user can write there).

A pool compares those facts with the ones the same sandbox showed right after it was
prepared (`WipeReport.fingerprint`): anything a user left (a file, a library, an IPC
object) or changed makes them differ, and the sandbox is destroyed instead of handed out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from llm_sandbox.backends.agent.protocol import wait_gone
from llm_sandbox.layout import LIBS_DIR

WIPE_TIMEOUT = 60.0
"""Seconds a wipe may take (deleting many files on a slow runtime)."""

_SCRIPT = r"""
exec 2>/dev/null
spare="{spare}"
{wait}
[ -n "$left" ] && echo "survivor $left"
libs={libs}
all=" "
while read -r _ m _; do all="$all$m "; done < /proc/self/mounts
dirs=
while read -r _ m t o _; do
  case ",$o," in *,rw,*) ;; *) continue;; esac
  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/pts|"$libs"|"$libs"/*) continue;; esac
  if [ "$m" = / ]; then echo rwroot; continue; fi
  if [ -d "$m" ]; then dirs="$dirs $m"; echo "mount $m $t"
  elif [ -f "$m" ]; then echo "file $m $(cksum < "$m")"; fi
done < /proc/self/mounts
for d in $dirs; do
  for e in "$d"/* "$d"/.[!.]* "$d"/..?*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    case "$all" in *" $e "*) continue;; esac
    [ "$e" = "$libs" ] && continue
    [ -L "$e" ] || chmod -R u+rwX "$e"
    rm -rf "$e"
    if [ -e "$e" ] || [ -L "$e" ]; then echo "left $e"; fi
  done
done
command -v ipcrm >/dev/null && ipcrm -a
for f in /proc/sysvipc/shm /proc/sysvipc/sem /proc/sysvipc/msg; do
  n=0; while read -r _; do n=$((n+1)); done < "$f"; echo "ipc $f $n"
done
if [ -d "$libs" ]; then
  echo "libs $(cd "$libs" && find . -exec ls -lnd {{}} + | sort | cksum)"
  if [ -w "$libs" ]; then
    echo "libdata $(cd "$libs" && find . -type f -exec cksum {{}} + | sort | cksum)"
  fi
fi
echo "uid $(id -u)"
echo wiped
"""

_PROBLEMS = ("survivor", "left", "rwroot")


def wipe_script(spare: Sequence[int] = ()) -> str:
    """sh wiping the sandbox as the code's user (see the module docstring); `spare` lists
    pids of that user that are ours (a killer running as the code's user)."""
    return _SCRIPT.format(
        spare=" ".join(map(str, spare)), wait=wait_gone(own_only=True), libs=LIBS_DIR
    )


@dataclass(frozen=True)
class WipeReport:
    """What a wipe found: `problems` (survivors, what could not be deleted) and the facts
    that must match those of the freshly prepared sandbox (`fingerprint`)."""

    fingerprint: str
    problems: tuple[str, ...]
    facts: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return not self.problems


def parse_report(exit_code: int, out: bytes) -> WipeReport:
    """The report of `wipe_script`'s run; a run that did not finish is a problem."""
    lines = [line.strip() for line in out.decode(errors="replace").splitlines() if line.strip()]
    problems = [line for line in lines if line.split(" ", 1)[0] in _PROBLEMS]
    if "wiped" not in lines:
        problems.append(f"the wipe did not finish (exit code {exit_code})")
    facts = tuple(
        line for line in lines if line != "wiped" and line.split(" ", 1)[0] not in _PROBLEMS
    )
    digest = hashlib.sha256("\n".join(facts).encode()).hexdigest()
    return WipeReport(fingerprint=digest, problems=tuple(problems), facts=facts)
