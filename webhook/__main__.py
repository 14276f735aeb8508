"""``agent-bootstrap-webhook``: run the admission webhook.

Usage: ``agent-bootstrap-webhook [--config PATH]`` (or ``python -m webhook``).

Exit status: 0 after SIGTERM/SIGINT, 2 when the configuration, the TLS files or an existing
signing key file cannot be used (the message names the field), 1 when the address cannot be
bound or workers keep crashing. A signing key file that does not exist yet is waited for (the
webhook is not ready until then). Audit events go to stdout as JSON lines; other logs go to
stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bootstrap_token.version import version_text
from webhook.config import CONFIG_ENV, ConfigError, load_settings
from webhook.process import PROG, configure_logging, run_server
from webhook.run import load_initial


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Mutating admission webhook that stamps trusted agent pods with a "
        "bootstrap token. Settings come from AGENT_BOOTSTRAP_WEBHOOK_* variables over the "
        "YAML file.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help=f"YAML settings file (camelCase keys); default: ${CONFIG_ENV} if set",
    )
    parser.add_argument("--version", action="version", version=version_text(PROG))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, load settings, serve until SIGTERM/SIGINT.

    Returns:
        0 on a clean stop, 2 on a bad configuration or unusable key/certificate file, 1 when
        the address cannot be bound or workers keep crashing, 130 on Ctrl-C during start-up.
    """
    args = _parser().parse_args(argv)
    configure_logging()  # until the settings say otherwise
    try:
        settings = load_settings(config_file=args.config)
        # Before the key is loaded: a warning about its file mode is logged.
        configure_logging(settings)
        credentials = load_initial(settings)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        from webhook.workers import supervise

        return supervise(settings)
    return run_server(settings, credentials=credentials)


if __name__ == "__main__":
    raise SystemExit(main())
