"""Registry credentials in docker's config.json format:
`{"auths": {"host": {"auth": base64("user:password")}}}`.

hutch keeps its own file (the caller passes the path, e.g. $HUTCH_ROOT/auth.json) and
also reads docker's ($DOCKER_CONFIG/config.json or ~/.docker/config.json) so that an
existing `docker login` works. Only hutch's file is written: atomically (temp file in the
same directory, fsync, rename) and mode 0600 from the start, since it holds passwords.
Docker credential helpers (credsStore/credHelpers) and identity tokens are not used.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from hutch.errors import InvalidArgument

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json (docker's rule)."""
    env = os.environ if env is None else env
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".docker" / "config.json"


def default_path(root: str | os.PathLike) -> Path:
    """hutch's own credentials file under its state root (HUTCH_ROOT)."""
    return Path(root) / "auth.json"


def normalize_host(key: str) -> str:
    """docker's ConvertToHostname: "https://index.docker.io/v1/" -> "index.docker.io";
    every Docker Hub alias becomes "docker.io"."""
    host = key.strip()
    for prefix in ("http://", "https://"):
        if host.startswith(prefix):
            host = host[len(prefix):]
    host = host.split("/", 1)[0].lower()
    return "docker.io" if host in _HUB_NAMES else host


def _key_for(host: str) -> str:
    host = normalize_host(host)
    return DOCKER_HUB_KEY if host == "docker.io" else host


def _read(path: Path) -> dict:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise InvalidArgument(f"cannot read credentials file {path}: {e.strerror}") from None
    if not data.strip():
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"credentials file {path} is not valid JSON: "
                              f"{str(e).splitlines()[0][:200]}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"credentials file {path} is not a JSON object")
    return doc


def _decode(entry: object, path: Path, key: str) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("auth"):
        try:
            raw = base64.b64decode(str(entry["auth"]), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidArgument(f"credentials file {path}: bad auth for {key}") from None
        user, sep, password = raw.partition(":")
        if not sep:
            raise InvalidArgument(f"credentials file {path}: auth for {key} has no ':'")
        return user, password
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str) and user:
        return user, password
    return None


class CredentialStore:
    """hutch's credentials file at `path`; `docker_config` (e.g. docker_config_path())
    is read as a fallback, never written."""

    def __init__(self, path: str | os.PathLike, *,
                 docker_config: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.docker_config = Path(docker_config) if docker_config else None

    def get(self, host: str) -> tuple[str, str] | None:
        """(user, password) for `host`, from hutch's file first, then docker's."""
        want = normalize_host(host)
        for path in (self.path, self.docker_config):
            if path is None:
                continue
            auths = _read(path).get("auths")
            if not isinstance(auths, dict):
                continue
            for key, entry in auths.items():
                if isinstance(key, str) and normalize_host(key) == want:
                    found = _decode(entry, path, key)
                    if found:
                        return found
        return None

    def hosts(self) -> list[str]:
        auths = _read(self.path).get("auths")
        return sorted(normalize_host(k) for k in auths) if isinstance(auths, dict) else []

    def save(self, host: str, user: str, password: str) -> None:
        if not user or ":" in user:
            raise InvalidArgument("a registry user name must be non-empty and have no ':'")
        doc = _read(self.path)
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            auths = doc["auths"] = {}
        want = normalize_host(host)
        for key in [k for k in auths if normalize_host(k) == want]:
            del auths[key]
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        auths[_key_for(host)] = {"auth": token}
        self._write(doc)

    def remove(self, host: str) -> bool:
        """Forget `host`; False if hutch's file had nothing for it."""
        doc = _read(self.path)
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            return False
        want = normalize_host(host)
        keys = [k for k in auths if normalize_host(k) == want]
        for key in keys:
            del auths[key]
        if keys:
            self._write(doc)
        return bool(keys)

    def _write(self, doc: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkstemp creates the file 0600: the secret is never readable by others.
        fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


def login(host: str, user: str, password: str, *, store: CredentialStore,
          insecure: bool = False, transport: object = None) -> None:
    """Check the credentials against the registry's /v2/ (through its token server if it
    has one), then save them. Raises Unauthenticated if the registry refuses them."""
    from hutch.registry.client import RegistryClient

    with RegistryClient(host, insecure=insecure, credentials=(user, password),
                        transport=transport) as client:  # type: ignore[arg-type]
        client.ping()
    store.save(host, user, password)


def logout(host: str, *, store: CredentialStore) -> bool:
    return store.remove(host)
