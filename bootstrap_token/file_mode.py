"""Is a secret file readable by more users than the service that reads it? Both services ask it
of the files that hold secrets (the webhook's signing key, the approver's tokens files) each time
they load one, and log a warning naming the setting, the path and the mode, never the content.

The rule is "owner-only, or what the service needs": group bits are fine when the service is
not the file's owner and is in the file's group, since it then reads the file through that
group. That is how a Kubernetes Secret volume looks in a pod with ``fsGroup`` (files owned by
root, group = fsGroup, mode ``defaultMode | 0440``); the chart sets ``defaultMode: 0440``, the
kubelet's default of 0644 would make the file readable by every user of the container.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: What to do about a wide mode, for the warning.
ADVICE = (
    "make it owner-only (chmod 600), or in Kubernetes mount its Secret with defaultMode 0440 "
    "and the pod's fsGroup"
)


def wider_than_needed(path: Path) -> int | None:
    """The permission bits of ``path`` (symlinks followed: a Secret volume's ``..data``) when
    users other than its owner may read or write it beyond what this process needs (see the
    module docstring); None when they may not, or the file cannot be examined.

    Never raises.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007:
        return mode
    if mode & 0o070:
        through_group = st.st_uid != os.geteuid() and (
            st.st_gid == os.getegid() or st.st_gid in os.getgroups()
        )
        if not through_group or mode & 0o020:
            return mode
    return None


def mode_warning(setting: str, path: Path) -> str | None:
    """``<setting> <path> has mode 0644: open to users other than its owner; <advice>``
    when :func:`wider_than_needed` says so, else None. ``setting`` names the configuration key,
    e.g. ``adminTokensFile (config file /etc/approver.yaml)``."""
    mode = wider_than_needed(path)
    if mode is None:
        return None
    return f"{setting} {path} has mode {mode:04o}: open to users other than its owner; {ADVICE}"
