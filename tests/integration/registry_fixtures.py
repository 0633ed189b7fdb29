"""A real distribution registry (Debian's docker-registry) on 127.0.0.1 for tests, and a
small busybox image built as an OCI layout and pushed with skopeo.

Reusable by any test module:

    from registry_fixtures import start_registry, build_busybox_layout, skopeo_copy

    with start_registry(auth="bearer", users={"alice": "pw"}) as reg:
        image = build_busybox_layout(tmp_path / "layout")
        skopeo_copy(image.layout, image.tag, reg, "lib/busybox:1", creds=("alice", "pw"))

or as pytest fixtures: `registry` / `basic_registry` / `token_registry` (module scope)
and `busybox_layout` (session scope). Everything runs on 127.0.0.1 with random ports;
config, storage, htpasswd, keys and certificates live in a temp dir that is removed when
the registry stops, also when a test fails.

auth="basic": an htpasswd file with bcrypt entries (the registry only accepts bcrypt),
made with the standard library's crypt (glibc/libxcrypt's $2b$), else the `bcrypt`
package, else `htpasswd`; the test is skipped with the reason when none exists.
auth="bearer": a token server of our own (TokenServer, a thread) issuing RS256 JWTs
signed with the `openssl` CLI; the registry verifies them against a self-signed
certificate carried in the token's x5c header (distribution registry/auth/token).
Anonymous clients get pull access, known users what they ask for.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
BUSYBOX = Path("/bin/busybox")
SERVICE = "hutch-test-registry"
ISSUER = "hutch-test-token-issuer"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_tools(*paths: str) -> None:
    for p in paths:
        if not Path(p).exists():
            pytest.skip(f"needs {p} (apt-get install docker-registry skopeo openssl)")


# -- htpasswd ------------------------------------------------------------------------------

def bcrypt_hash(password: str) -> str | None:
    """A bcrypt hash of `password`, from whatever this machine has; None if nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # crypt: deprecated in 3.11
        try:
            import crypt

            if crypt.METHOD_BLOWFISH in crypt.methods:
                # rounds=16 is cost 4, bcrypt's minimum: tests need speed, not strength.
                h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
                if h and h.startswith("$2"):
                    return h
        except ImportError:
            pass
    try:
        import bcrypt  # type: ignore[import-not-found]

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    except ImportError:
        pass
    if shutil.which("htpasswd"):
        out = subprocess.run(["htpasswd", "-nbB", "-C", "4", "u", password],
                             capture_output=True, text=True, check=True).stdout
        return out.strip().partition(":")[2]
    return None


# -- token server --------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """The token endpoint of distribution's token auth, on 127.0.0.1:random. Counts its
    requests (`requests`) so tests can check token caching."""

    def __init__(self, workdir: Path, users: dict[str, str]) -> None:
        self.users = users
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", str(self.key), "-out", str(self.cert), "-days", "2",
                        "-subj", "/CN=hutch-test-token"], check=True, capture_output=True)
        der = subprocess.run([OPENSSL, "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode()))
        sig = subprocess.run([OPENSSL, "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), check=True,
                             capture_output=True).stdout
        return signing_input + "." + _b64url(sig)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        q = parse_qs(url.query)
        user = None
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            name, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(name) != pw:
                self._reply(h, 401, {"details": "invalid username or password"})
                return
            user = name
        with self._lock:
            self.requests.append({"user": user, "scope": q.get("scope", []),
                                  "service": q.get("service", [""])[0]})
        access = []
        for scope in q.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            granted = wanted if user else [a for a in wanted if a == "pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        token = self.sign({"iss": ISSUER, "sub": user or "", "aud": q.get("service", [""])[0],
                           "exp": now + 300, "nbf": now - 10, "iat": now,
                           "jti": secrets.token_hex(8), "access": access})
        self._reply(h, 200, {"token": token, "access_token": token, "expires_in": 300})

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


# -- the registry --------------------------------------------------------------------------

@dataclass
class Registry:
    host: str  # "127.0.0.1:PORT", what references and RegistryClient take
    workdir: Path
    auth: str | None
    users: dict[str, str]
    process: subprocess.Popen
    token_server: TokenServer | None = None
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def creds(self) -> tuple[str, str] | None:
        return next(iter(self.users.items()), None)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.token_server is not None:
            self.token_server.stop()


def _config(workdir: Path, port: int, auth: str | None, users: dict[str, str],
            token_server: TokenServer | None) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {workdir / 'storage'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        f"  secret: {secrets.token_hex(16)}",
    ]
    if auth == "basic":
        entries = []
        for user, pw in users.items():
            h = bcrypt_hash(pw)
            if h is None:
                pytest.skip("no bcrypt: need python crypt with $2b$, the bcrypt package or "
                            "htpasswd (apache2-utils) to write the registry's htpasswd")
            entries.append(f"{user}:{h}\n")
        (workdir / "htpasswd").write_text("".join(entries))
        lines += ["auth:", "  htpasswd:", "    realm: hutch-test",
                  f"    path: {workdir / 'htpasswd'}"]
    elif auth == "bearer":
        assert token_server is not None
        lines += ["auth:", "  token:", f"    realm: {token_server.realm}",
                  f"    service: {SERVICE}", f"    issuer: {ISSUER}",
                  f"    rootcertbundle: {token_server.cert}"]
    elif auth is not None:
        raise ValueError(f"auth must be None, 'basic' or 'bearer', not {auth!r}")
    return "\n".join(lines) + "\n"


def _wait_ready(reg: Registry, deadline: float) -> None:
    while time.monotonic() < deadline:
        if reg.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited {reg.process.returncode}: "
                               f"{reg.log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{reg.url}/v2/", timeout=1).close()
            return
        except urllib.error.HTTPError as e:
            if e.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not answer on {reg.host}")


@contextmanager
def start_registry(auth: str | None = None,
                   users: dict[str, str] | None = None) -> Iterator[Registry]:
    """A registry on 127.0.0.1:random, plain or with basic or bearer auth; stopped and
    its temp dir removed on exit."""
    require_tools(REGISTRY_BIN, OPENSSL)
    if users is None:
        users = {"alice": "wonderland"} if auth else {}
    workdir = Path(tempfile.mkdtemp(prefix="hutch-registry-"))
    reg = None
    token_server = None
    try:
        if auth == "bearer":
            token_server = TokenServer(workdir, users)
        port = free_port()
        cfg = workdir / "config.yml"
        cfg.write_text(_config(workdir, port, auth, users, token_server))
        log = workdir / "registry.log"
        with open(log, "wb") as logf:
            proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=logf,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        reg = Registry(f"127.0.0.1:{port}", workdir, auth, users, proc, token_server, log)
        _wait_ready(reg, time.monotonic() + 15)
        yield reg
    finally:
        if reg is not None:
            reg.stop()
        elif token_server is not None:
            token_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- a busybox image as an OCI layout ------------------------------------------------------

@dataclass
class BuiltImage:
    layout: Path
    tag: str
    manifest: bytes
    manifest_digest: str
    config: bytes
    config_digest: str
    layer: bytes
    layer_digest: str
    diff_id: str

    def blob(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        return self.layout / "blobs" / algo / hexpart


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def busybox_layer() -> bytes:
    """An uncompressed layer tar: /bin/busybox, /bin/sh and friends as symlinks, /etc,
    /tmp. Deterministic (fixed mtimes, sorted), so the digest is stable in a session."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, 1700000000
            tar.addfile(ti)

        for d in ("bin", "etc", "root", "tmp", "usr", "usr/bin", "var"):
            add_dir(d, 0o1777 if d == "tmp" else 0o755)
        data = BUSYBOX.read_bytes()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode, ti.mtime = len(data), 0o755, 1700000000
        tar.addfile(ti, io.BytesIO(data))
        for applet in ("sh", "ls", "cat", "echo", "env", "id", "sleep", "true"):
            ti = tarfile.TarInfo(f"bin/{applet}")
            ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, "busybox", 1700000000
            tar.addfile(ti)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                           ("etc/group", "root:x:0:\n")):
            raw = text.encode()
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(raw), 0o644, 1700000000
            tar.addfile(ti, io.BytesIO(raw))
    return buf.getvalue()


def build_busybox_layout(dest: Path, tag: str = "latest",
                         architecture: str = "amd64") -> BuiltImage:
    """Write an OCI image layout at `dest` with one gzip busybox layer, tagged `tag`."""
    if not BUSYBOX.is_file():
        pytest.skip("needs /bin/busybox (apt-get install busybox-static)")
    tar_bytes = busybox_layer()
    layer = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    config = json.dumps({
        "created": "2024-01-01T00:00:00Z", "architecture": architecture, "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [_sha256(tar_bytes)]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "hutch tests"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha256(layer),
                    "size": len(layer)}],
    }).encode()
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for data in (layer, config, manifest):
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": _sha256(manifest), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (dest / "index.json").write_text(json.dumps(index))
    return BuiltImage(dest, tag, manifest, _sha256(manifest), config, _sha256(config),
                      layer, _sha256(layer), _sha256(tar_bytes))


def skopeo_copy(layout: Path, tag: str, reg: Registry, dest: str,
                creds: tuple[str, str] | None = None) -> None:
    """skopeo copy oci:LAYOUT:TAG docker://REGISTRY/DEST (plain http, no TLS verify)."""
    require_tools(SKOPEO)
    argv = [SKOPEO, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
    if creds:
        argv += ["--dest-creds", f"{creds[0]}:{creds[1]}"]
    else:
        argv += ["--dest-no-creds"]
    argv += [f"oci:{layout}:{tag}", f"docker://{reg.host}/{dest}"]
    _skopeo(argv)


def skopeo_inspect(reg: Registry, ref: str, creds: tuple[str, str] | None = None,
                   raw: bool = False) -> dict:
    require_tools(SKOPEO)
    argv = [SKOPEO, "inspect", "--tls-verify=false"]
    if raw:
        argv.append("--raw")
    argv += ["--creds", f"{creds[0]}:{creds[1]}"] if creds else ["--no-creds"]
    argv.append(f"docker://{reg.host}/{ref}")
    return json.loads(_skopeo(argv))


def _skopeo(argv: list[str]) -> str:
    # An empty auth file and no registries.d: nothing of the host's setup leaks in.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir(),
           "REGISTRY_AUTH_FILE": "/dev/null"}
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:3])}... failed: {r.stderr.strip()[-2000:]}")
    return r.stdout


# -- pytest fixtures -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    d = Path(tempfile.mkdtemp(prefix="hutch-busybox-oci-"))
    try:
        yield build_busybox_layout(d / "layout")
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with start_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def basic_registry() -> Iterator[Registry]:
    with start_registry(auth="basic") as reg:
        yield reg


@pytest.fixture(scope="module")
def token_registry() -> Iterator[Registry]:
    with start_registry(auth="bearer") as reg:
        yield reg
