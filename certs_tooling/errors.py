"""Errors of certs-tooling. The CLI turns every one of them into exit code 1 and a message.

Exception tree::

    CertsToolingError
    ├── AlreadyInitialised      init (or apiserver-client, agent-ca init) over existing material,
    │                           without --force
    ├── MaterialError           a file is missing, unreadable, or not what it should be
    ├── RotationError           rotate-ca or agent-ca rotate|finish: one is already running, none
    │                           is, or it cannot finish (yet); apiserver-client --new-ca while a
    │                           client CA change is running
    └── KeyStoreError           the signing-key store refused (see certs_tooling.keystore)
        ├── UnknownKey
        ├── InvalidTransition
        └── RetireRefused

Messages name files and kids, never key material.
"""

from __future__ import annotations


class CertsToolingError(Exception):
    """Base class: the operation was refused or failed; nothing half-written."""


class AlreadyInitialised(CertsToolingError):
    """The folder already holds key material and ``--force`` was not given."""


class MaterialError(CertsToolingError):
    """A certificate or key file is missing, unreadable, or does not hold what it should."""


class RotationError(CertsToolingError):
    """``rotate-ca`` (or ``agent-ca rotate|finish``, ``apiserver-client --new-ca``) cannot start
    or finish in the folder's current state."""
