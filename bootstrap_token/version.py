"""The version of agent-bootstrap, defined once: ``version`` in pyproject.toml.

It is read at run time from the installed distribution's metadata
(``importlib.metadata.version("agent-bootstrap")``), which the wheel or the editable install
wrote from pyproject.toml, so no module repeats it. Every command prints it with ``--version``
and the webhook exports it as ``agent_bootstrap_webhook_build_info{version}``
(:mod:`webhook.metrics`).
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version

#: The distribution's name in pyproject.toml (``[project] name``).
DISTRIBUTION = "agent-bootstrap"

#: What :func:`version` answers when the distribution is not installed (the modules imported
#: from a source tree that was never installed): a PEP 440 local version that sorts below any
#: release and says so.
UNKNOWN = "0+unknown"


@functools.cache
def version() -> str:
    """The installed agent-bootstrap's version string, e.g. ``"0.1.0"`` (PEP 440).

    Returns:
        ``importlib.metadata.version("agent-bootstrap")``, read once per process; :data:`UNKNOWN`
        when no distribution of that name is installed.
    """
    try:
        return distribution_version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN


def version_text(prog: str) -> str:
    """The line ``--version`` prints: ``"<prog> <version>"``, e.g.
    ``"agent-bootstrap-webhook 0.1.0"``."""
    return f"{prog} {version()}"
