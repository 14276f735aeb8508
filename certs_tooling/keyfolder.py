"""The signing-key store on disk: ``keys/state.json``, ``keys/<kid>.key``, and the two files
derived from them, ``jwks.json`` and ``signing.key``.

Write order (:func:`commit`), chosen so that at every instant ``jwks.json`` holds every key
whose tokens may still be valid and ``signing.key`` is a key of ``jwks.json``:

1. new private keys ``keys/<kid>.key`` (0600): nothing refers to them yet;
2. ``keys/state.json``: the source of truth;
3. ``jwks.json``: pending + active + inactive keys; written before ``signing.key`` so a newly
   active key is published before it signs (it already is: it was pending);
4. ``signing.key``: the active key, replaced only when it changed (a rewrite would make
   watchers reload for nothing);
5. private keys of retired keys are deleted.

Each file is replaced atomically (:func:`certs_tooling.files.write_file`). If the process dies
between steps, every later command re-derives steps 3-5 from ``state.json``, so re-running the
same command (``keys activate`` of the active key is a no-op) repairs the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from bootstrap_token import KeyLoadError, KeySet, SigningKey
from certs_tooling.files import remove_file, write_file
from certs_tooling.keystore import (
    DEFAULT_LEEWAY_SECONDS,
    DEFAULT_MAX_TOKEN_TTL_SECONDS,
    KeyRecord,
    KeyStatus,
    KeyStoreError,
    KeyStoreState,
    RetireRefused,
    activate_key,
    add_key,
    retire_key,
    retirement_blocker,
)
from certs_tooling.layout import Layout


def jwks_bytes(key_set: KeySet) -> bytes:
    """The JWKS document as written to ``jwks.json``: indented JSON, keys sorted by kid."""
    return json.dumps(key_set.to_jwks(), indent=2).encode() + b"\n"


@dataclass
class KeyFolder:
    """A loaded key store: its state plus private keys not yet on disk."""

    layout: Layout
    state: KeyStoreState
    #: kid -> key written by the next :func:`commit` (new keys, or an adopted ``signing.key``).
    new_keys: dict[str, SigningKey] = field(default_factory=dict)

    def key(self, kid: str) -> SigningKey:
        """The private key of ``kid``, checked against its kid.

        Raises:
            KeyStoreError: the file is missing, unreadable, or holds another key.
        """
        if kid in self.new_keys:
            return self.new_keys[kid]
        path = self.layout.key_file(kid)
        try:
            key = SigningKey.from_file(path)
        except (OSError, KeyLoadError) as exc:
            raise KeyStoreError(f"cannot load {path}: {exc}") from None
        if key.kid != kid:
            raise KeyStoreError(f"{path} holds key {key.kid}, not {kid}")
        return key

    def key_set(self) -> KeySet:
        """Public keys of every published (pending, active, inactive) key."""
        return KeySet(self.key(r.kid).public_key for r in self.state.published)


def empty(layout: Layout) -> KeyFolder:
    """A store with no keys, for ``init``."""
    return KeyFolder(layout=layout, state=KeyStoreState())


def load(layout: Layout) -> KeyFolder:
    """Read ``keys/state.json``.

    A folder made before the key store existed (``signing.key`` but no ``state.json``) is
    adopted: its signing key becomes the active key, dated by the file's modification time,
    and is stored by the next :func:`commit`.

    Raises:
        KeyStoreError: no store and no ``signing.key``, or ``state.json`` is not a valid state.
    """
    path = layout.key_state
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _adopt(layout)
    except OSError as exc:
        raise KeyStoreError(f"cannot read {path}: {exc.strerror}") from None
    try:
        state = KeyStoreState.model_validate_json(data)
    except ValidationError as exc:
        raise KeyStoreError(
            f"{path} is not a valid key store: {exc.error_count()} error(s)"
        ) from None
    return KeyFolder(layout=layout, state=state)


def _adopt(layout: Layout) -> KeyFolder:
    try:
        key = SigningKey.from_file(layout.signing_key)
        created = datetime.fromtimestamp(layout.signing_key.stat().st_mtime, UTC)
    except FileNotFoundError:
        raise KeyStoreError(
            f"{layout.root} has no key store ({layout.key_state.name}) and no "
            f"{layout.signing_key.name}; run `certs-tooling init` first"
        ) from None
    except (OSError, KeyLoadError) as exc:
        raise KeyStoreError(f"cannot load {layout.signing_key}: {exc}") from None
    state = add_key(KeyStoreState(), key.kid, now=created)
    return KeyFolder(layout=layout, state=state, new_keys={key.kid: key})


def commit(folder: KeyFolder) -> None:
    """Write the store and its derived files in the order of the module docstring.

    Raises:
        KeyStoreError: a published key cannot be loaded (nothing derived is written then).
        OSError: a write failed.
    """
    layout = folder.layout
    for kid, key in folder.new_keys.items():
        write_file(layout.key_file(kid), key.private_pem(), private=True)
    key_set = folder.key_set()
    active = folder.state.active
    active_pem = folder.key(active.kid).private_pem() if active is not None else None
    write_file(
        layout.key_state,
        folder.state.model_dump_json(indent=2).encode() + b"\n",
        private=False,
    )
    folder.new_keys.clear()
    write_file(layout.jwks, jwks_bytes(key_set), private=False)
    if active_pem is not None and _read_or_none(layout.signing_key) != active_pem:
        write_file(layout.signing_key, active_pem, private=True)
    published = {r.kid for r in folder.state.published}
    for record in folder.state.keys:
        if record.kid not in published:
            remove_file(layout.key_file(record.kid))


def remove_unknown_key_files(layout: Layout, keep: set[str]) -> list[Path]:
    """Delete ``keys/*.key`` files whose kid is not in ``keep`` (``init --force`` starts over).

    Returns the deleted paths.
    """
    removed = []
    if layout.keys_dir.is_dir():
        for path in sorted(layout.keys_dir.glob("*.key")):
            if path.stem not in keep and remove_file(path):
                removed.append(path)
    return removed


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


# --- operations: load, apply a pure transition, commit -----------------------------------------


def add(layout: Layout, *, now: datetime) -> KeyRecord:
    """``keys add``: generate an Ed25519 key, record it ``pending`` and publish it in the JWKS.

    Returns the new record. Raises KeyStoreError, OSError.
    """
    folder = load(layout)
    key = SigningKey.generate()
    folder.state = add_key(folder.state, key.kid, now=now)
    folder.new_keys[key.kid] = key
    commit(folder)
    return folder.state.get(key.kid)


def activate(layout: Layout, kid: str, *, now: datetime) -> KeyRecord:
    """``keys activate``: make ``kid`` (or a unique prefix of it) the active key and replace
    ``signing.key`` with it. Returns the activated record. Raises KeyStoreError, OSError.
    """
    folder = load(layout)
    record = folder.state.get(kid)
    folder.key(record.kid)  # the private key must load before anything changes
    folder.state = activate_key(folder.state, record.kid, now=now)
    commit(folder)
    return folder.state.get(record.kid)


def retire(
    layout: Layout,
    kid: str,
    *,
    now: datetime,
    max_token_ttl: int = DEFAULT_MAX_TOKEN_TTL_SECONDS,
    leeway: int = DEFAULT_LEEWAY_SECONDS,
    force: bool = False,
) -> tuple[KeyRecord, RetireRefused | None]:
    """``keys retire``: drop ``kid`` from the JWKS and delete its private key, by the rule of
    :func:`certs_tooling.keystore.retirement_blocker`.

    Returns:
        The retired record and, when ``force`` overrode the validity window, the refusal it
        overrode (for the caller's warning).

    Raises:
        KeyStoreError (RetireRefused, InvalidTransition, UnknownKey), OSError.
    """
    folder = load(layout)
    record = folder.state.get(kid)
    overridden = None
    if record.state is not KeyStatus.RETIRED:
        overridden = retirement_blocker(record, now=now, max_token_ttl=max_token_ttl, leeway=leeway)
    folder.state = retire_key(
        folder.state, record.kid, now=now, max_token_ttl=max_token_ttl, leeway=leeway, force=force
    )
    commit(folder)
    return folder.state.get(record.kid), overridden
