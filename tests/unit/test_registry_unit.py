"""The registry client against an in-memory registry behind httpx.MockTransport: auth
flows, token caching, retries, resumed streams, verification, redirects, http policy,
pushes and the credentials file."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs

import httpx
import pytest

from hutch.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from hutch.oci import media
from hutch.oci.digest import DigestMismatch, Hasher, sha256_of
from hutch.oci.image import Descriptor
from hutch.registry.auth import merge_scopes, parse_www_authenticate
from hutch.registry.client import RegistryClient
from hutch.registry.credentials import CredentialStore, docker_config_path, login, logout

pytestmark = pytest.mark.unit

HOST = "registry.example"
REALM = "https://auth.example/token"
BLOB = bytes(range(256)) * 40  # 10240 bytes
BLOB_DESC = Descriptor(media.OCI_LAYER_GZIP, sha256_of(BLOB), len(BLOB))
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
    "config": {"mediaType": media.OCI_CONFIG, "digest": sha256_of(b"{}"), "size": 2},
    "layers": [BLOB_DESC.to_dict()]}).encode()
MANIFEST_DIGEST = sha256_of(MANIFEST)


class BrokenStream(httpx.SyncByteStream):
    """Yields `data` and then fails like a dropped connection."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data
        raise httpx.ReadError("connection reset by peer")


class FakeRegistry:
    """Just enough of the distribution API, with switchable auth and injectable faults.
    `faults` are consulted first: a callable returning a Response (or None to pass)."""

    def __init__(self, auth: str | None = None, users: dict[str, str] | None = None) -> None:
        self.auth = auth
        self.users = users or {"alice": "secret"}
        self.blobs: dict[str, bytes] = {BLOB_DESC.digest: BLOB}
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.requests: list[httpx.Request] = []
        self.token_requests: list[httpx.Request] = []
        self.faults: list[Callable[[httpx.Request], httpx.Response | None]] = []
        self.put_manifest("lib/app", "v1", media.OCI_MANIFEST, MANIFEST)

    def put_manifest(self, repo: str, ref: str, mt: str, data: bytes) -> None:
        self.manifests[(repo, ref)] = (mt, data)
        self.manifests[(repo, sha256_of(data))] = (mt, data)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- dispatch --

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            self.token_requests.append(request)
            return self.token(request)
        self.requests.append(request)
        for fault in list(self.faults):
            resp = fault(request)
            if resp is not None:
                return resp
        if request.url.host != HOST.split(":")[0] and request.url.host != "127.0.0.1":
            return httpx.Response(200, content=BLOB)  # a CDN or foreign URL
        denied = self.check_auth(request)
        if denied is not None:
            return denied
        path = request.url.path
        if path == "/v2/":
            return httpx.Response(200, json={})
        parts = path[len("/v2/"):].split("/")
        if "manifests" in parts:
            i = parts.index("manifests")
            return self.manifest(request, "/".join(parts[:i]), parts[i + 1])
        if "uploads" in parts:
            i = parts.index("blobs")
            return self.upload(request, "/".join(parts[:i]), parts[i + 2:])
        if "blobs" in parts:
            return self.blob(request, parts[-1])
        return httpx.Response(404)

    def check_auth(self, request: httpx.Request) -> httpx.Response | None:
        given = request.headers.get("Authorization", "")
        if self.auth == "basic":
            if given.startswith("Basic "):
                user, _, pw = base64.b64decode(given[6:]).decode().partition(":")
                if self.users.get(user) == pw:
                    return None
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="fake"'},
                                  json={"errors": [{"code": "UNAUTHORIZED",
                                                    "message": "authentication required"}]})
        if self.auth == "bearer":
            if given.startswith("Bearer tok-"):
                granted = json.loads(base64.b64decode(given[len("Bearer tok-"):]))
                needed = self.scope_for(request)
                if needed is None or needed in granted:
                    return None
            scope = self.scope_for(request)
            challenge = f'Bearer realm="{REALM}",service="fake"'
            if scope:
                challenge += f',scope="{scope}"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return None

    @staticmethod
    def scope_for(request: httpx.Request) -> str | None:
        path = request.url.path
        if path == "/v2/":
            return None
        repo = path[len("/v2/"):].split("/manifests/")[0].split("/blobs/")[0]
        action = "pull" if request.method in ("GET", "HEAD") else "pull,push"
        return f"repository:{repo}:{action}"

    def token(self, request: httpx.Request) -> httpx.Response:
        given = request.headers.get("Authorization", "")
        if given:
            user, _, pw = base64.b64decode(given[6:]).decode().partition(":")
            if self.users.get(user) != pw:
                return httpx.Response(401, json={"details": "bad credentials"})
        scopes = parse_qs(request.url.query.decode()).get("scope", [])
        # Grant each scope and, for pull,push, the pull alone too.
        granted = set(scopes)
        for s in scopes:
            resource, _, actions = s.rpartition(":")
            granted.update(f"{resource}:{a}" for a in actions.split(","))
        tok = "tok-" + base64.b64encode(json.dumps(sorted(granted)).encode()).decode()
        return httpx.Response(200, json={"token": tok, "expires_in": 300})

    def manifest(self, request: httpx.Request, repo: str, ref: str) -> httpx.Response:
        if request.method == "PUT":
            data = request.read()
            self.put_manifest(repo, ref, request.headers["Content-Type"], data)
            return httpx.Response(201, headers={"Docker-Content-Digest": sha256_of(data)})
        found = self.manifests.get((repo, ref))
        if found is None:
            return httpx.Response(404, json={"errors": [
                {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
        mt, data = found
        return httpx.Response(200, content=data, headers={
            "Content-Type": mt, "Docker-Content-Digest": sha256_of(data)})

    def blob(self, request: httpx.Request, digest: str) -> httpx.Response:
        data = self.blobs.get(digest)
        if data is None:
            return httpx.Response(404, json={"errors": [{"code": "BLOB_UNKNOWN"}]})
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(data))})
        rng = request.headers.get("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            return httpx.Response(206, content=data[start:], headers={
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        return httpx.Response(200, content=data)

    def upload(self, request: httpx.Request, repo: str, rest: list[str]) -> httpx.Response:
        q = parse_qs(request.url.query.decode())
        if request.method == "POST":
            if "mount" in q:
                if q["mount"][0] in self.blobs and q["from"][0] == "lib/app":
                    return httpx.Response(201)
            uid = f"u{len(self.uploads)}"
            self.uploads[uid] = bytearray()
            return httpx.Response(202, headers={
                "Location": f"/v2/{repo}/blobs/uploads/{uid}?_state=s"})
        uid = rest[0]
        if request.method == "DELETE":
            self.uploads.pop(uid, None)
            return httpx.Response(204)
        buf = self.uploads[uid]
        buf += request.read()
        if request.method == "PATCH":
            return httpx.Response(202, headers={
                "Location": f"/v2/{repo}/blobs/uploads/{uid}?_state=t{len(buf)}",
                "Range": f"0-{len(buf) - 1}"})
        digest = q["digest"][0]
        if sha256_of(bytes(buf)) != digest:
            return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID"}]})
        self.blobs[digest] = bytes(buf)
        return httpx.Response(201, headers={"Docker-Content-Digest": digest})


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client_for(reg: FakeRegistry, sleeps: list[float], host: str = HOST, **kw) -> RegistryClient:
    return RegistryClient(host, transport=reg.transport(), sleep=sleeps.append, **kw)


# -- resolving and auth ------------------------------------------------------------------

def test_resolve_anonymous_bearer_fetches_a_token_for_the_pull_scope(sleeps):
    reg = FakeRegistry(auth="bearer")
    with client_for(reg, sleeps) as c:
        desc, data = c.resolve(f"{HOST}/lib/app:v1")
    assert data == MANIFEST
    assert desc == Descriptor(media.OCI_MANIFEST, MANIFEST_DIGEST, len(MANIFEST))
    (tok,) = reg.token_requests
    q = parse_qs(tok.url.query.decode())
    assert q == {"service": ["fake"], "scope": ["repository:lib/app:pull"]}
    assert "Authorization" not in tok.headers
    first, second = reg.requests
    assert "Authorization" not in first.headers
    assert second.headers["Authorization"].startswith("Bearer tok-")
    assert set(media.ACCEPT_MANIFESTS) <= {a.strip() for a in
                                          second.headers["Accept"].split(",")}


def test_tokens_are_cached_per_scope(sleeps):
    reg = FakeRegistry(auth="bearer")
    reg.put_manifest("lib/other", "v1", media.OCI_MANIFEST, MANIFEST)
    with client_for(reg, sleeps) as c:
        c.resolve(f"{HOST}/lib/app:v1")
        c.resolve(f"{HOST}/lib/app@{MANIFEST_DIGEST}")
        c.fetch_manifest("lib/app", MANIFEST_DIGEST)
        assert len(reg.token_requests) == 1
        c.resolve(f"{HOST}/lib/other:v1")
        assert len(reg.token_requests) == 2
        # a push token covers later pulls of the same repository
        c.push_manifest("lib/third", "v1", media.OCI_MANIFEST, MANIFEST)
        n = len(reg.token_requests)
        c.fetch_manifest("lib/third", MANIFEST_DIGEST)
        assert len(reg.token_requests) == n


def test_credentials_go_to_the_token_server_as_basic(sleeps):
    reg = FakeRegistry(auth="bearer")
    with client_for(reg, sleeps, credentials=("alice", "secret")) as c:
        c.resolve(f"{HOST}/lib/app:v1")
    (tok,) = reg.token_requests
    assert tok.headers["Authorization"] == "Basic " + base64.b64encode(b"alice:secret").decode()
    assert parse_qs(tok.url.query.decode())["account"] == ["alice"]
    assert not any(r.headers.get("Authorization", "").startswith("Basic")
                   for r in reg.requests)


def test_token_server_refusing_credentials_is_unauthenticated(sleeps):
    reg = FakeRegistry(auth="bearer")
    with client_for(reg, sleeps, credentials=("alice", "wrong")) as c:
        with pytest.raises(Unauthenticated) as e:
            c.resolve(f"{HOST}/lib/app:v1")
    assert "alice" in str(e.value) and e.value.hint == f"hutch login {HOST}"


def test_insufficient_scope_challenge_asks_for_the_named_scope(sleeps):
    reg = FakeRegistry(auth="bearer")
    extra = "repository:lib/app:pull,push"

    def want_more(request: httpx.Request) -> httpx.Response | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer") and extra not in base64.b64decode(
                auth[len("Bearer tok-"):]).decode():
            return httpx.Response(401, headers={"WWW-Authenticate":
                                  f'Bearer realm="{REALM}",service="fake",'
                                  f'scope="{extra}",error="insufficient_scope"'})
        return None

    reg.faults.append(want_more)
    with client_for(reg, sleeps) as c:
        c.fetch_manifest("lib/app", MANIFEST_DIGEST)
    scopes = parse_qs(reg.token_requests[-1].url.query.decode())["scope"]
    assert extra in scopes


def test_basic_auth_is_sent_after_the_challenge(sleeps):
    reg = FakeRegistry(auth="basic")
    with client_for(reg, sleeps, credentials=("alice", "secret")) as c:
        c.resolve(f"{HOST}/lib/app:v1")
        c.fetch_manifest("lib/app", MANIFEST_DIGEST)
    assert "Authorization" not in reg.requests[0].headers
    assert all(r.headers["Authorization"].startswith("Basic ") for r in reg.requests[1:])
    assert len(reg.requests) == 3


def test_basic_auth_without_or_with_wrong_credentials_is_unauthenticated(sleeps):
    reg = FakeRegistry(auth="basic")
    with client_for(reg, sleeps) as c, pytest.raises(Unauthenticated) as e:
        c.resolve(f"{HOST}/lib/app:v1")
    assert "requires authentication" in str(e.value) and "login" in e.value.hint
    with client_for(reg, sleeps, credentials=("alice", "nope")) as c, \
            pytest.raises(Unauthenticated, match="refused the credentials"):
        c.resolve(f"{HOST}/lib/app:v1")


@pytest.mark.parametrize("header, expected", [
    ('Bearer realm="https://a/t",service="reg",scope="repository:x:pull"',
     [("bearer", {"realm": "https://a/t", "service": "reg", "scope": "repository:x:pull"})]),
    ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
    ('bearer realm=https://a/t, service=reg', [("bearer", {"realm": "https://a/t",
                                                           "service": "reg"})]),
    ('Bearer realm="a\\"b"', [("bearer", {"realm": 'a"b'})]),
    ('Basic realm="x", Bearer realm="y",service="s"',
     [("basic", {"realm": "x"}), ("bearer", {"realm": "y", "service": "s"})]),
    ("", []),
    ("Negotiate", [("negotiate", {})]),
])
def test_www_authenticate_parsing(header, expected):
    got = [(c.scheme, c.params) for c in parse_www_authenticate(header)]
    assert got == expected


def test_merge_scopes_unions_actions_per_resource():
    assert merge_scopes(("repository:a:pull",), ("repository:a:push", "repository:b:pull")) \
        == ("repository:a:pull,push", "repository:b:pull")


# -- verification ------------------------------------------------------------------------

def test_resolve_refuses_content_not_matching_docker_content_digest(sleeps):
    reg = FakeRegistry()
    reg.faults.append(lambda r: httpx.Response(200, content=MANIFEST, headers={
        "Content-Type": media.OCI_MANIFEST, "Docker-Content-Digest": sha256_of(b"other")}))
    with client_for(reg, sleeps) as c, pytest.raises(DigestMismatch, match="says"):
        c.resolve(f"{HOST}/lib/app:v1")


def test_resolve_by_digest_refuses_other_content(sleeps):
    reg = FakeRegistry()
    other = MANIFEST.replace(b'"size": 2', b'"size": 3')
    reg.faults.append(lambda r: httpx.Response(200, content=other,
                                               headers={"Content-Type": media.OCI_MANIFEST}))
    with client_for(reg, sleeps) as c, pytest.raises(DigestMismatch):
        c.resolve(f"{HOST}/lib/app@{MANIFEST_DIGEST}")
    with client_for(reg, sleeps) as c, pytest.raises(DigestMismatch):
        c.fetch_manifest("lib/app", MANIFEST_DIGEST)


@pytest.mark.parametrize("with_length", [True, False])
def test_oversized_manifest_is_refused(sleeps, with_length):
    reg = FakeRegistry()
    big = b" " * (4 << 20) + b"{}"

    def stream(r):
        if with_length:
            return httpx.Response(200, content=big)
        return httpx.Response(200, stream=httpx.ByteStream(big))

    reg.faults.append(stream)
    with client_for(reg, sleeps) as c, pytest.raises(InvalidArgument, match="4 MiB"):
        c.resolve(f"{HOST}/lib/app:v1")


def test_missing_manifest_is_not_found_with_the_registry_code(sleeps):
    with client_for(FakeRegistry(), sleeps) as c, pytest.raises(NotFound) as e:
        c.resolve(f"{HOST}/lib/app:nope")
    assert "MANIFEST_UNKNOWN" in str(e.value) and "404" in str(e.value)


def test_head_reads_the_descriptor_without_the_body(sleeps):
    reg = FakeRegistry()

    headers = {"Content-Type": media.OCI_MANIFEST, "Content-Length": str(len(MANIFEST))}

    def head(request):
        if request.method == "HEAD" and "/manifests/" in request.url.path:
            return httpx.Response(200, headers=headers)
        return None

    reg.faults.append(head)
    with client_for(reg, sleeps) as c:
        # without Docker-Content-Digest it falls back to GET and hashes the body
        assert c.head(f"{HOST}/lib/app:v1").digest == MANIFEST_DIGEST
        assert [r.method for r in reg.requests] == ["HEAD", "GET"]
        headers["Docker-Content-Digest"] = MANIFEST_DIGEST
        reg.requests.clear()
        assert c.head(f"{HOST}/lib/app:v1") == Descriptor(media.OCI_MANIFEST,
                                                           MANIFEST_DIGEST, len(MANIFEST))
        assert [r.method for r in reg.requests] == ["HEAD"]


def test_garbage_redirects_are_refused_cleanly(sleeps):
    reg = FakeRegistry()
    reg.faults.append(lambda r: httpx.Response(302, headers={"Location": "ftp://x/y"}))
    with client_for(reg, sleeps) as c, pytest.raises(PermissionDenied):
        c.resolve(f"{HOST}/lib/app:v1")


def test_resolve_refuses_a_reference_on_another_registry(sleeps):
    with client_for(FakeRegistry(), sleeps) as c, pytest.raises(InvalidArgument):
        c.resolve("quay.io/lib/app:v1")


def test_fetch_blob_streams_verified_content(sleeps):
    with client_for(FakeRegistry(), sleeps) as c:
        assert b"".join(c.fetch_blob("lib/app", BLOB_DESC)) == BLOB
    assert sleeps == []


def test_fetch_blob_with_wrong_content_raises_at_the_end(sleeps):
    reg = FakeRegistry()
    reg.blobs[BLOB_DESC.digest] = BLOB[::-1]
    with client_for(reg, sleeps) as c:
        it = c.fetch_blob("lib/app", BLOB_DESC)
        with pytest.raises(DigestMismatch, match="hashed to"):
            for _ in it:
                pass


def test_fetch_blob_longer_than_its_descriptor_raises(sleeps):
    reg = FakeRegistry()
    reg.blobs[BLOB_DESC.digest] = BLOB + b"x"
    with client_for(reg, sleeps) as c, pytest.raises(DigestMismatch, match="longer"):
        b"".join(c.fetch_blob("lib/app", BLOB_DESC))


def test_fetch_blob_shorter_than_its_descriptor_raises(sleeps):
    reg = FakeRegistry()
    reg.blobs[BLOB_DESC.digest] = BLOB[:100]
    with client_for(reg, sleeps, retries=2) as c, pytest.raises(Unavailable, match="ending"):
        b"".join(c.fetch_blob("lib/app", BLOB_DESC))


def test_broken_stream_resumes_with_range_from_the_byte_reached(sleeps):
    reg = FakeRegistry()
    calls = []

    def break_first(request):
        if "/blobs/" in request.url.path and not calls:
            calls.append(1)
            return httpx.Response(200, stream=BrokenStream(BLOB[:3000]),
                                  headers={"Content-Length": str(len(BLOB))})
        return None

    reg.faults.append(break_first)
    with client_for(reg, sleeps) as c:
        assert b"".join(c.fetch_blob("lib/app", BLOB_DESC)) == BLOB
    gets = [r for r in reg.requests if "/blobs/" in r.url.path]
    assert [r.headers.get("Range") for r in gets] == [None, "bytes=3000-"]
    assert len(sleeps) == 1


def test_resume_when_the_server_ignores_range_skips_what_we_have(sleeps):
    reg = FakeRegistry()
    n = []

    def faults(request):
        if "/blobs/" not in request.url.path:
            return None
        n.append(1)
        if len(n) == 1:
            return httpx.Response(200, stream=BrokenStream(BLOB[:5000]))
        return httpx.Response(200, content=BLOB)  # ignores Range

    reg.faults.append(faults)
    with client_for(reg, sleeps) as c:
        assert b"".join(c.fetch_blob("lib/app", BLOB_DESC)) == BLOB


def test_a_connection_that_keeps_breaking_gives_up(sleeps):
    reg = FakeRegistry()
    reg.faults.append(lambda r: httpx.Response(200, stream=BrokenStream(b"")))
    with client_for(reg, sleeps, retries=3) as c, pytest.raises(Unavailable, match="broken"):
        b"".join(c.fetch_blob("lib/app", BLOB_DESC))
    assert len(sleeps) == 3


def test_fetch_blob_from_an_offset_needs_and_uses_the_prefix_hasher(sleeps):
    reg = FakeRegistry()
    with client_for(reg, sleeps) as c:
        with pytest.raises(InvalidArgument, match="hasher"):
            c.fetch_blob("lib/app", BLOB_DESC, offset=10)
        h = Hasher()
        h.update(BLOB[:4096])
        rest = b"".join(c.fetch_blob("lib/app", BLOB_DESC, offset=4096, hasher=h))
    assert rest == BLOB[4096:]
    assert reg.requests[-1].headers["Range"] == "bytes=4096-"


def test_5xx_and_429_are_retried_with_backoff_and_retry_after(sleeps):
    reg = FakeRegistry()
    answers = [httpx.Response(503), httpx.Response(429, headers={"Retry-After": "2"})]
    reg.faults.append(lambda r: answers.pop(0) if answers else None)
    with client_for(reg, sleeps) as c:
        c.resolve(f"{HOST}/lib/app:v1")
    assert len(sleeps) == 2 and sleeps[1] == 2.0 and 0 < sleeps[0] <= 0.25


def test_persistent_5xx_is_unavailable(sleeps):
    reg = FakeRegistry()
    reg.faults.append(lambda r: httpx.Response(502))
    with client_for(reg, sleeps, retries=2) as c, pytest.raises(Unavailable, match="502"):
        c.resolve(f"{HOST}/lib/app:v1")
    assert len(sleeps) == 2


def test_connection_errors_are_retried_then_unavailable(sleeps):
    def refuse(request):
        raise httpx.ConnectError("connection refused")

    with RegistryClient(HOST, transport=httpx.MockTransport(refuse), sleep=sleeps.append,
                        retries=2) as c, pytest.raises(Unavailable, match="cannot reach"):
        c.resolve(f"{HOST}/lib/app:v1")
    assert len(sleeps) == 2


# -- redirects, foreign URLs, plain http -------------------------------------------------

def test_redirect_to_another_host_does_not_leak_authorization(sleeps):
    reg = FakeRegistry(auth="basic")

    def to_cdn(request):
        if "/blobs/" in request.url.path and request.url.host == HOST:
            if "Authorization" not in request.headers:
                return None  # let the auth challenge happen
            return httpx.Response(307, headers={"Location": "https://cdn.example/b?sig=1"})
        return None

    reg.faults.append(to_cdn)
    with client_for(reg, sleeps, credentials=("alice", "secret")) as c:
        assert b"".join(c.fetch_blob("lib/app", BLOB_DESC)) == BLOB
    cdn = [r for r in reg.requests if r.url.host == "cdn.example"]
    assert len(cdn) == 1 and "Authorization" not in cdn[0].headers
    assert reg.requests[-2].headers["Authorization"].startswith("Basic ")


def test_redirect_to_plain_http_elsewhere_is_refused(sleeps):
    reg = FakeRegistry()
    reg.faults.append(lambda r: httpx.Response(302, headers={"Location": "http://cdn.example/x"})
                      if r.url.host == HOST else None)
    with client_for(reg, sleeps) as c, pytest.raises(PermissionDenied, match="only https"):
        c.resolve(f"{HOST}/lib/app:v1")


def test_plain_http_token_realm_is_refused(sleeps):
    reg = FakeRegistry()
    reg.faults.append(lambda r: httpx.Response(401, headers={
        "WWW-Authenticate": 'Bearer realm="http://auth.example/token"'}))
    with client_for(reg, sleeps) as c, pytest.raises(PermissionDenied):
        c.resolve(f"{HOST}/lib/app:v1")
    assert reg.token_requests == []


@pytest.mark.parametrize("host, insecure, scheme", [
    ("registry.example", False, "https"),
    ("registry.example:5000", False, "https"),
    ("registry.example", True, "http"),
    ("localhost:5000", False, "http"),
    ("127.0.0.1:5000", False, "http"),
    ("127.0.0.2", False, "http"),
    ("[::1]:5000", False, "http"),
    ("10.0.0.1:5000", False, "https"),
])
def test_http_only_for_loopback_or_insecure_hosts(host, insecure, scheme):
    c = RegistryClient(host, insecure=insecure, transport=httpx.MockTransport(
        lambda r: httpx.Response(200)))
    assert c.base == f"{scheme}://{host}"
    c.close()


def test_docker_io_is_served_by_registry_1():
    c = RegistryClient("docker.io", transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    assert c.base == "https://registry-1.docker.io"
    c.close()


@pytest.mark.parametrize("bad", ["http://x", "x/y", "", "a b", "u@host"])
def test_bad_registry_hosts_are_refused(bad):
    with pytest.raises(InvalidArgument):
        RegistryClient(bad)


def test_foreign_urls_are_fetched_only_when_allowed_and_without_auth(sleeps):
    reg = FakeRegistry(auth="basic")
    foreign = Descriptor(media.DOCKER_FOREIGN_LAYER_GZIP, BLOB_DESC.digest, BLOB_DESC.size,
                         urls=("https://foreign.example/layer",))
    with client_for(reg, sleeps, credentials=("alice", "secret")) as c:
        assert b"".join(c.fetch_blob("lib/app", foreign)) == BLOB
    assert not any(r.url.host == "foreign.example" for r in reg.requests)
    reg.requests.clear()
    with client_for(reg, sleeps, credentials=("alice", "secret"),
                    allow_foreign_urls=True) as c:
        assert b"".join(c.fetch_blob("lib/app", foreign)) == BLOB
    assert [r.url.host for r in reg.requests] == ["foreign.example"]
    assert "Authorization" not in reg.requests[0].headers


def test_a_failing_foreign_url_falls_back_to_the_registry(sleeps):
    reg = FakeRegistry()
    foreign = Descriptor(media.DOCKER_FOREIGN_LAYER_GZIP, BLOB_DESC.digest, BLOB_DESC.size,
                         urls=("http://foreign.example/layer",))  # plain http: refused
    with client_for(reg, sleeps, allow_foreign_urls=True) as c:
        assert b"".join(c.fetch_blob("lib/app", foreign)) == BLOB
    assert [r.url.host for r in reg.requests] == [HOST]


# -- pushing -----------------------------------------------------------------------------

def new_blob(data: bytes) -> Descriptor:
    return Descriptor(media.OCI_LAYER_TAR, sha256_of(data), len(data))


def test_push_blob_monolithic(sleeps):
    reg = FakeRegistry(auth="bearer")
    data = b"hello blob"
    with client_for(reg, sleeps) as c:
        assert not c.blob_exists("lib/new", new_blob(data).digest)
        c.push_blob("lib/new", new_blob(data), data)
        assert c.blob_exists("lib/new", new_blob(data).digest)
    methods = [r.method for r in reg.requests if r.headers.get("Authorization")]
    assert methods[-3:-1] == ["POST", "PUT"]
    put = [r for r in reg.requests if r.method == "PUT"][-1]
    assert parse_qs(put.url.query.decode())["digest"] == [new_blob(data).digest]
    assert parse_qs(put.url.query.decode())["_state"] == ["s"]
    assert reg.blobs[new_blob(data).digest] == data


def test_push_blob_chunked_sends_content_ranges(sleeps):
    reg = FakeRegistry()
    data = os.urandom(2500)
    with client_for(reg, sleeps) as c:
        c.push_blob("lib/new", new_blob(data), iter([data[:700], data[700:]]),
                    chunk_size=1000)
    patches = [r for r in reg.requests if r.method == "PATCH"]
    assert [r.headers["Content-Range"] for r in patches] == ["0-999", "1000-1999", "2000-2499"]
    assert reg.blobs[new_blob(data).digest] == data


def test_push_blob_streamed_from_a_file(sleeps, tmp_path):
    reg = FakeRegistry()
    data = os.urandom(3 << 20)
    f = tmp_path / "blob"
    f.write_bytes(data)
    with client_for(reg, sleeps) as c, open(f, "rb") as fh:
        c.push_blob("lib/new", new_blob(data), fh)
    assert [r.method for r in reg.requests] == ["POST", "PATCH", "PUT"]
    assert reg.blobs[new_blob(data).digest] == data


def test_push_blob_with_wrong_data_cancels_the_upload(sleeps):
    reg = FakeRegistry()
    with client_for(reg, sleeps) as c, pytest.raises(DigestMismatch):
        c.push_blob("lib/new", new_blob(b"right"), iter([b"wrong"]))
    assert [r.method for r in reg.requests] == ["POST", "PATCH", "DELETE"]
    assert reg.uploads == {}


def test_mount_blob_across_repositories(sleeps):
    reg = FakeRegistry(auth="bearer")
    with client_for(reg, sleeps) as c:
        assert c.mount_blob("lib/new", BLOB_DESC.digest, "lib/app")
        assert not c.mount_blob("lib/new", BLOB_DESC.digest, "lib/elsewhere")
    scopes = parse_qs(reg.token_requests[0].url.query.decode())["scope"]
    assert scopes == ["repository:lib/app:pull", "repository:lib/new:pull,push"]
    assert reg.requests[-1].method == "DELETE"  # the declined mount's session


def test_push_manifest_returns_the_digest_and_checks_the_registry(sleeps):
    reg = FakeRegistry()
    with client_for(reg, sleeps) as c:
        assert c.push_manifest("lib/new", "v2", media.OCI_MANIFEST, MANIFEST) == MANIFEST_DIGEST
        put = reg.requests[-1]
        assert put.headers["Content-Type"] == media.OCI_MANIFEST
        assert c.resolve(f"{HOST}/lib/new:v2")[1] == MANIFEST
        with pytest.raises(DigestMismatch):
            c.push_manifest("lib/new", sha256_of(b"x"), media.OCI_MANIFEST, MANIFEST)
        reg.faults.append(lambda r: httpx.Response(
            201, headers={"Docker-Content-Digest": sha256_of(b"x")}))
        with pytest.raises(DigestMismatch):
            c.push_manifest("lib/new", "v3", media.OCI_MANIFEST, MANIFEST)


# -- credentials -------------------------------------------------------------------------

def test_credential_store_saves_0600_and_reads_back(tmp_path):
    store = CredentialStore(tmp_path / "root" / "auth.json")
    assert store.get(HOST) is None
    store.save(HOST, "alice", "pa:ss")
    store.save("docker.io", "bob", "pw")
    assert store.get(HOST) == ("alice", "pa:ss")
    assert store.get("index.docker.io") == ("bob", "pw")
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    assert mode == 0o600
    doc = json.loads(store.path.read_text())
    assert doc["auths"][HOST]["auth"] == base64.b64encode(b"alice:pa:ss").decode()
    assert "https://index.docker.io/v1/" in doc["auths"]
    assert sorted(store.hosts()) == ["docker.io", HOST]
    assert logout(HOST, store=store)
    assert not logout(HOST, store=store)
    assert store.get(HOST) is None
    assert [p.name for p in store.path.parent.iterdir()] == ["auth.json"]  # no temp files


def test_docker_config_is_a_read_only_fallback(tmp_path):
    docker = tmp_path / "docker" / "config.json"
    docker.parent.mkdir()
    docker.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"d:1").decode()},
        "quay.io": {"auth": base64.b64encode(b"q:2").decode()}}}))
    store = CredentialStore(tmp_path / "auth.json", docker_config=docker)
    assert store.get("docker.io") == ("d", "1")
    store.save("quay.io", "mine", "3")
    assert store.get("quay.io") == ("mine", "3")
    assert "mine" not in docker.read_text()
    assert docker_config_path({"DOCKER_CONFIG": "/x"}) == docker_config_path(
        {"DOCKER_CONFIG": "/x", "HOME": "/h"})
    assert str(docker_config_path({"HOME": "/h"})) == "/h/.docker/config.json"


def test_corrupt_credentials_file_is_one_line_error(tmp_path):
    p = tmp_path / "auth.json"
    p.write_text("{nope")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        CredentialStore(p).get(HOST)
    p.write_text(json.dumps({"auths": {HOST: {"auth": "!!!"}}}))
    with pytest.raises(InvalidArgument, match="bad auth"):
        CredentialStore(p).get(HOST)


def test_login_verifies_before_saving(tmp_path):
    reg = FakeRegistry(auth="bearer")
    store = CredentialStore(tmp_path / "auth.json")
    with pytest.raises(Unauthenticated):
        login(HOST, "alice", "wrong", store=store, transport=reg.transport())
    assert not store.path.exists()
    login(HOST, "alice", "secret", store=store, transport=reg.transport())
    assert store.get(HOST) == ("alice", "secret")
    reg = FakeRegistry(auth="basic")
    login(HOST, "alice", "secret", store=store, transport=reg.transport())
    with pytest.raises(Unauthenticated):
        login(HOST, "alice", "nope", store=store, transport=reg.transport())


def test_importing_hutch_registry_does_not_import_httpx():
    code = "import sys, hutch.registry; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
