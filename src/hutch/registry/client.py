"""A client for the OCI distribution API (distribution-spec spec.md), one registry host
per client.

Safety rules, each one a bug class seen in the field:
- Plain http only to loopback hosts or hosts the caller marked insecure; redirects and
  token realms are held to the same rule.
- Authorization goes only to the registry's own origin: a redirect to a blob store (S3,
  a CDN) and foreign layer URLs get no credentials.
- Everything fetched is verified: manifests against the requested digest and the
  Docker-Content-Digest header, blobs against their descriptor's digest and size while
  they stream. A mismatch raises DigestMismatch; nothing unverified is returned as good.
- Manifests and error bodies are read with a size bound before anything parses them.
- 429/5xx and broken connections are retried with backoff (Retry-After honoured, capped);
  an interrupted blob resumes with `Range` from the byte reached.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import quote

from hutch.errors import (
    FailedPrecondition,
    HutchError,
    InvalidArgument,
    NotFound,
    NotSupported,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from hutch.oci import media
from hutch.oci.digest import Digest, DigestMismatch, Hasher
from hutch.oci.image import MAX_MANIFEST_SIZE, Descriptor, parse_manifest
from hutch.oci.reference import Reference
from hutch.registry.auth import (
    Challenge,
    TokenCache,
    basic_header,
    merge_scopes,
    parse_token_response,
    parse_www_authenticate,
    repository_scope,
)
from hutch.registry.wire import (
    endpoint_for,
    error_detail,
    hash_through,
    is_local_host,
    iter_chunks,
    one_line,
    range_start,
    rechunk,
    retry_after,
    transport_hint,
)

TYPE_CHECKING = False  # not typing's: importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import BinaryIO

    import httpx

USER_AGENT = "hutch/0.1"
ACCEPT = ", ".join(media.ACCEPT_MANIFESTS)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 10
MAX_ERROR_BODY = 64 << 10
MAX_TOKEN_BODY = 1 << 20


class RegistryClient:
    """Talks to one registry. `credentials` is (user, password) for this host or None;
    `transport` an httpx transport (tests pass httpx.MockTransport); `sleep` is the
    backoff's sleep (tests pass a recorder)."""

    def __init__(self, host: str, *, insecure: bool = False,
                 credentials: tuple[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None, retries: int = 4,
                 timeout: float = 60.0, allow_foreign_urls: bool = False,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import httpx

        if not host or any(c in host for c in "/@?# \t") or host.startswith(":"):
            raise InvalidArgument(f"invalid registry host {host[:100]!r}",
                                  hint="a registry is host[:port], without a scheme or path")
        self.host = host
        self.endpoint = endpoint_for(host)
        self.insecure = insecure
        self.scheme = "http" if insecure or is_local_host(self.endpoint) else "https"
        self.base = f"{self.scheme}://{self.endpoint}"
        self.retries = max(0, retries)
        self.allow_foreign_urls = allow_foreign_urls
        self._credentials = credentials
        self._sleep = sleep
        self._clock = clock
        self._challenge: Challenge | None = None
        self._tokens = TokenCache()
        self._client = httpx.Client(
            transport=transport, follow_redirects=False, trust_env=False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            headers={"User-Agent": USER_AGENT})

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/ with our credentials: raises Unauthenticated if they are refused."""
        resp = self._send("GET", f"{self.base}/v2/", scopes=())
        try:
            if resp.status_code != 200:
                self._raise_for(resp, f"registry {self.host}")
        finally:
            resp.close()

    def resolve(self, ref: Reference | str) -> tuple[Descriptor, bytes]:
        """The manifest or index `ref` names: its descriptor and verified bytes."""
        if isinstance(ref, str):
            ref = Reference.parse(ref)
        if endpoint_for(ref.domain) != self.endpoint:
            raise InvalidArgument(f"reference {ref} is not on registry {self.host}")
        data, content_type, header_digest = self._get_manifest(ref.path, ref.locator)
        algorithm = ref.digest.algorithm if ref.digest else "sha256"
        digest = Digest.from_bytes(data, algorithm)
        if ref.digest and digest != ref.digest:
            raise DigestMismatch(f"registry {self.host} served {ref} with digest {digest}",
                                 expected=ref.digest, actual=digest)
        self._check_header_digest(data, header_digest, str(ref))
        parsed = parse_manifest(data, content_type)
        return Descriptor(parsed.media_type, digest, len(data)), data

    def head(self, ref: Reference | str) -> Descriptor:
        """What `ref` points at, by HEAD (no body): for "has this tag moved?" checks.
        Falls back to a GET when the registry does not send Docker-Content-Digest."""
        if isinstance(ref, str):
            ref = Reference.parse(ref)
        if endpoint_for(ref.domain) != self.endpoint:
            raise InvalidArgument(f"reference {ref} is not on registry {self.host}")
        resp = self._send("HEAD", f"{self.base}/v2/{ref.path}/manifests/{ref.locator}",
                          scopes=(repository_scope(ref.path, "pull"),),
                          headers={"Accept": ACCEPT})
        try:
            if resp.status_code != 200:
                self._raise_for(resp, f"manifest {ref}")
            header = resp.headers.get("Docker-Content-Digest", "").strip()
            length = resp.headers.get("Content-Length", "")
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        finally:
            resp.close()
        try:
            digest = Digest(header)
        except InvalidArgument:
            digest = None
        if digest is None or not length.isdigit() or (ref.digest and digest != ref.digest) \
                or media_type not in media.MANIFEST_TYPES | media.INDEX_TYPES:
            return self.resolve(ref)[0]
        return Descriptor(media_type, digest, int(length))

    def fetch_manifest(self, repo: str, digest: Digest | str) -> bytes:
        """The manifest (or index) `digest` in `repo`, verified."""
        digest = Digest(digest)
        data, _, header_digest = self._get_manifest(repo, digest)
        digest.verify(data)
        self._check_header_digest(data, header_digest, f"{repo}@{digest}")
        return data

    def fetch_blob(self, repo: str, desc: Descriptor, *, offset: int = 0,
                   hasher: Hasher | None = None) -> Iterator[bytes]:
        """Stream the blob `desc` from byte `offset` on. The digest and size are checked
        as it streams; the iterator raises DigestMismatch at the end (or as soon as the
        blob is too long) rather than finishing, so a caller commits only after the
        iterator is exhausted. Resuming at offset > 0 needs `hasher`, already fed the
        first `offset` bytes (the digest covers the whole blob). The request is made on
        the first next()."""
        if not 0 <= offset <= desc.size:
            raise InvalidArgument(f"offset {offset} is outside blob {desc.digest} "
                                  f"of {desc.size} bytes")
        if hasher is None:
            if offset:
                raise InvalidArgument(
                    f"resuming blob {desc.digest} at {offset} needs the hasher of the "
                    "bytes before it")
            hasher = desc.digest.hasher()
        elif hasher.size != offset or hasher.algorithm != desc.digest.algorithm:
            raise InvalidArgument(f"hasher for blob {desc.digest} has seen {hasher.size} "
                                  f"{hasher.algorithm} bytes, not {offset}")
        sources: list[tuple[str, bool]] = []
        if self.allow_foreign_urls:
            sources += [(u, False) for u in desc.urls if u.startswith(("https://", "http://"))]
        sources.append((f"{self.base}/v2/{repo}/blobs/{desc.digest}", True))
        return self._stream_blob(repo, desc, sources, offset, hasher)

    # -- pushing -------------------------------------------------------------------------

    def blob_exists(self, repo: str, digest: Digest | str) -> bool:
        resp = self._send("HEAD", f"{self.base}/v2/{repo}/blobs/{Digest(digest)}",
                          scopes=(repository_scope(repo, "pull"),))
        try:
            if resp.status_code == 200:
                return True
            if resp.status_code == 404:
                return False
            self._raise_for(resp, f"blob {digest} in {repo}")
        finally:
            resp.close()
        return False  # unreachable

    def mount_blob(self, repo: str, digest: Digest | str, from_repo: str) -> bool:
        """Cross-repository mount (spec.md "Mounting a blob from another repository").
        False when the registry declined (it opened an upload session, which we cancel)."""
        digest = Digest(digest)
        scopes = merge_scopes((repository_scope(repo, "pull", "push"),
                               repository_scope(from_repo, "pull")))
        url = (f"{self.base}/v2/{repo}/blobs/uploads/?mount={quote(digest, safe=':')}"
               f"&from={quote(from_repo, safe='/')}")
        resp = self._send("POST", url, scopes=scopes, content=b"")
        try:
            if resp.status_code == 201:
                return True
            if resp.status_code == 202:
                self._cancel_upload(resp, scopes)
                return False
            self._raise_for(resp, f"mount {digest} from {from_repo} into {repo}")
        finally:
            resp.close()
        return False

    def push_blob(self, repo: str, desc: Descriptor,
                  data: bytes | Iterable[bytes] | BinaryIO, *,
                  chunk_size: int | None = None) -> None:
        """Upload a blob: POST a session, then one PUT (bytes), one streamed PATCH
        (an iterable or file), or PATCHes of `chunk_size` with Content-Range; the final
        PUT carries the digest. What was sent is hashed on the way: if it does not match
        `desc`, the session is cancelled and DigestMismatch raised before the PUT."""
        scopes = (repository_scope(repo, "pull", "push"),)
        resp = self._send("POST", f"{self.base}/v2/{repo}/blobs/uploads/", scopes=scopes,
                          content=b"")
        try:
            if resp.status_code != 202:
                self._raise_for(resp, f"start upload of {desc.digest} to {repo}")
            location = self._location(resp)
        finally:
            resp.close()
        hasher = desc.digest.hasher()
        try:
            if isinstance(data, (bytes, bytearray, memoryview)) and (
                    chunk_size is None or len(data) <= chunk_size):
                data = bytes(data)
                hasher.update(data)
                self._check_upload(desc, hasher)
                self._finish_upload(repo, desc, location, data, scopes)
                return
            chunks = hash_through(iter_chunks(data), hasher)
            if chunk_size is None:
                resp = self._send("PATCH", location, scopes=scopes, content=chunks,
                                  headers={"Content-Type": "application/octet-stream"})
                location = self._upload_step(resp, desc, repo)
            else:
                for start, piece in rechunk(chunks, chunk_size):
                    resp = self._send("PATCH", location, scopes=scopes, content=piece,
                                      headers={"Content-Type": "application/octet-stream",
                                               "Content-Range":
                                               f"{start}-{start + len(piece) - 1}"},
                                      retry=False)
                    location = self._upload_step(resp, desc, repo)
            self._check_upload(desc, hasher)
            self._finish_upload(repo, desc, location, b"", scopes)
        except BaseException:
            self._cancel(location, scopes)
            raise

    def push_manifest(self, repo: str, reference: str, media_type: str, data: bytes) -> Digest:
        """PUT a manifest under a tag or its digest; returns its sha256 digest."""
        if len(data) > MAX_MANIFEST_SIZE:
            raise InvalidArgument(f"manifest is {len(data)} bytes, more than the "
                                  f"{MAX_MANIFEST_SIZE >> 20} MiB registries accept")
        digest = Digest.from_bytes(data)
        if ":" in reference:
            Digest(reference).verify(data)
        resp = self._send("PUT", f"{self.base}/v2/{repo}/manifests/{reference}",
                          scopes=(repository_scope(repo, "pull", "push"),), content=data,
                          headers={"Content-Type": media_type})
        try:
            if resp.status_code not in (200, 201):
                self._raise_for(resp, f"push manifest {repo}:{reference}")
            self._check_header_digest(data, resp.headers.get("Docker-Content-Digest"),
                                      f"{repo}:{reference}")
        finally:
            resp.close()
        return digest

    # -- upload steps --------------------------------------------------------------------

    def _upload_step(self, resp: httpx.Response, desc: Descriptor, repo: str) -> str:
        try:
            if resp.status_code != 202:
                self._raise_for(resp, f"upload of {desc.digest} to {repo}")
            return self._location(resp)
        finally:
            resp.close()

    def _check_upload(self, desc: Descriptor, hasher: Hasher) -> None:
        if hasher.size != desc.size or hasher.digest() != desc.digest:
            raise DigestMismatch(
                f"data for blob {desc.digest} ({desc.size} bytes) hashed to "
                f"{hasher.digest()} ({hasher.size} bytes); upload cancelled",
                expected=desc.digest, actual=hasher.digest())

    def _finish_upload(self, repo: str, desc: Descriptor, location: str, body: bytes,
                       scopes: tuple[str, ...]) -> None:
        import httpx

        url = str(httpx.URL(location).copy_merge_params({"digest": str(desc.digest)}))
        resp = self._send("PUT", url, scopes=scopes, content=body, retry=False,
                          headers={"Content-Type": "application/octet-stream"})
        try:
            if resp.status_code not in (201, 204):
                self._raise_for(resp, f"finish upload of {desc.digest} to {repo}")
            got = resp.headers.get("Docker-Content-Digest")
            if got and got != desc.digest:
                raise DigestMismatch(f"registry stored blob as {got}, not {desc.digest}",
                                     expected=desc.digest, actual=got)
        finally:
            resp.close()

    def _location(self, resp: httpx.Response) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise Unavailable(f"registry {self.host} opened an upload without a Location")
        import httpx

        try:
            url = str(resp.request.url.join(loc))
        except httpx.InvalidURL:
            raise Unavailable(f"registry {self.host} sent a bad upload Location") from None
        self._check_url(url)
        return url

    def _cancel_upload(self, resp: httpx.Response, scopes: tuple[str, ...]) -> None:
        if resp.headers.get("Location"):
            self._cancel(self._location(resp), scopes)

    def _cancel(self, location: str, scopes: tuple[str, ...]) -> None:
        try:
            self._send("DELETE", location, scopes=scopes, retry=False).close()
        except HutchError:
            pass  # best effort: the registry expires abandoned sessions anyway

    # -- manifests and blobs -------------------------------------------------------------

    def _get_manifest(self, repo: str, locator: str) -> tuple[bytes, str, str | None]:
        url = f"{self.base}/v2/{repo}/manifests/{locator}"
        resp = self._send("GET", url, scopes=(repository_scope(repo, "pull"),),
                          headers={"Accept": ACCEPT})
        try:
            if resp.status_code != 200:
                self._raise_for(resp, f"manifest {repo}:{locator}" if ":" not in locator
                                else f"manifest {repo}@{locator}")
            data = self._read_bounded(resp, MAX_MANIFEST_SIZE, f"manifest {repo}@{locator}")
            return (data, resp.headers.get("Content-Type", ""),
                    resp.headers.get("Docker-Content-Digest"))
        finally:
            resp.close()

    def _check_header_digest(self, data: bytes, header: str | None, what: str) -> None:
        if not header:
            return
        try:
            expected = Digest(header.strip())
        except InvalidArgument:
            raise DigestMismatch(f"registry {self.host} sent a malformed "
                                 f"Docker-Content-Digest for {what}") from None
        actual = Digest.from_bytes(data, expected.algorithm)
        if actual != expected:
            raise DigestMismatch(f"registry {self.host} says {what} is {expected} but its "
                                 f"content is {actual}", expected=expected, actual=actual)

    def _stream_blob(self, repo: str, desc: Descriptor, sources: list[tuple[str, bool]],
                     offset: int, hasher: Hasher) -> Iterator[bytes]:
        import httpx

        what = f"blob {desc.digest}"
        reached = offset
        for n, (url, registry) in enumerate(sources):
            last = n == len(sources) - 1
            failures = 0
            while reached < desc.size or (reached == 0 and desc.size == 0):
                started_at = reached
                headers = {"Accept-Encoding": "identity"}
                if reached:
                    headers["Range"] = f"bytes={reached}-"
                try:
                    resp = self._send("GET", url, headers=headers, auth=registry,
                                      scopes=(repository_scope(repo, "pull"),))
                except HutchError:
                    if last or reached > offset:
                        raise
                    break  # a foreign URL failed before any byte: try the next source
                try:
                    skip = 0
                    if resp.status_code == 206:
                        start = range_start(resp.headers.get("Content-Range", ""))
                        if start != reached:
                            raise Unavailable(f"{what}: asked for bytes from {reached}, "
                                              f"got a range from {start}")
                    elif resp.status_code == 200:
                        skip = reached  # the server ignored Range: drop what we have
                    elif not last and reached == offset:
                        break
                    else:
                        self._raise_for(resp, f"{what} in {repo}")
                    for chunk in _raw(resp):
                        if skip:
                            if len(chunk) <= skip:
                                skip -= len(chunk)
                                continue
                            chunk, skip = chunk[skip:], 0
                        if reached + len(chunk) > desc.size:
                            raise DigestMismatch(f"{what} is longer than its {desc.size} "
                                                 "bytes", expected=desc.digest)
                        hasher.update(chunk)
                        reached += len(chunk)
                        yield chunk
                    if desc.size == 0 or reached == desc.size:
                        break
                    # A body that ended early: resume like a broken connection.
                    failures = 1 if reached > started_at else failures + 1
                    if failures > self.retries:
                        raise Unavailable(f"{what}: the registry keeps ending the body at "
                                          f"{reached} of {desc.size} bytes")
                    self._sleep(self._backoff(failures))
                except httpx.TransportError as e:
                    failures = 1 if reached > started_at else failures + 1
                    if failures > self.retries:
                        raise Unavailable(f"{what}: connection broken at {reached} of "
                                          f"{desc.size} bytes: {one_line(e)}") from None
                    self._sleep(self._backoff(failures))
                finally:
                    resp.close()
            if reached == desc.size:
                break
        if reached != desc.size:
            raise DigestMismatch(f"{what}: got {reached} bytes, expected {desc.size}",
                                 expected=desc.digest)
        actual = hasher.digest()
        if actual != desc.digest:
            raise DigestMismatch(f"{what} from {self.host} hashed to {actual}",
                                 expected=desc.digest, actual=actual)

    # -- HTTP with auth, redirects and retries -------------------------------------------

    def _send(self, method: str, url: str, *, scopes: tuple[str, ...],
              headers: dict[str, str] | None = None, content: object = None,
              auth: bool = True, retry: bool = True) -> httpx.Response:
        """Send with auth (learned from 401s), redirects and retries; the response is
        streamed (the caller closes it). Only bytes bodies are replayed."""
        import httpx

        replayable = content is None or isinstance(content, bytes)
        attempt = 0
        auth_rounds = 0  # a second round for a challenge naming more scope
        while True:
            try:
                resp = self._send_once(method, url, scopes, headers or {}, content, auth)
            except httpx.TransportError as e:
                if not (retry and replayable) or attempt >= self.retries:
                    raise Unavailable(f"cannot reach registry {self.host}: {one_line(e)}",
                                      hint=transport_hint(e)) from None
                attempt += 1
                self._sleep(self._backoff(attempt))
                continue
            if resp.status_code == 401 and auth and replayable and auth_rounds < 2:
                challenges = parse_www_authenticate(resp.headers.get_list("WWW-Authenticate"))
                resp.close()
                self._authenticate(challenges, scopes)
                auth_rounds += 1
                continue
            if resp.status_code in RETRY_STATUS and retry and replayable \
                    and attempt < self.retries:
                delay = retry_after(resp.headers.get("Retry-After"))
                resp.close()
                attempt += 1
                self._sleep(delay if delay is not None else self._backoff(attempt))
                continue
            return resp

    def _send_once(self, method: str, url: str, scopes: tuple[str, ...],
                   headers: dict[str, str], content: object, auth: bool) -> httpx.Response:
        import httpx

        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(url)
            h = dict(headers)
            if auth and self._same_origin(url):
                value = self._authorization(scopes)
                if value:
                    h["Authorization"] = value
            req = self._client.build_request(method, url, headers=h, content=content)
            resp = self._client.send(req, stream=True)
            if resp.status_code in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                resp.close()
                if not (content is None or isinstance(content, bytes)):
                    raise Unavailable(f"registry {self.host} redirected a streamed upload")
                try:
                    url = str(resp.request.url.join(resp.headers["Location"]))
                except httpx.InvalidURL:
                    raise Unavailable(f"registry {self.host} redirected to a bad URL") from None
                if resp.status_code == 303:
                    method, content = "GET", None
                continue
            return resp
        raise Unavailable(f"registry {self.host}: more than {MAX_REDIRECTS} redirects")

    def _same_origin(self, url: str) -> bool:
        import httpx

        u = httpx.URL(url)
        return u.scheme == self.scheme and u.netloc.decode("ascii").lower() == \
            self.endpoint.lower()

    def _check_url(self, url: str) -> None:
        import httpx

        try:
            u = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise PermissionDenied(f"refusing malformed URL {url[:200]!r} from registry "
                                   f"{self.host}") from None
        if u.scheme == "https" and u.host:
            return
        netloc = u.netloc.decode("ascii")
        if u.scheme == "http" and (is_local_host(netloc) or
                                   (self.insecure and netloc.lower() == self.endpoint.lower())):
            return
        raise PermissionDenied(f"refusing {u.scheme or 'schemeless'} URL {url[:200]} "
                               f"from registry {self.host}: only https leaves this machine",
                               hint="mark the registry insecure if it really serves http")

    def _authorization(self, scopes: tuple[str, ...]) -> str | None:
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            return basic_header(*self._credentials) if self._credentials else None
        token = self._tokens.get(ch.realm, ch.service, scopes, self._clock())
        if token is None:
            token = self._fetch_token(ch, scopes)
        return "Bearer " + token

    def _authenticate(self, challenges: list[Challenge], scopes: tuple[str, ...]) -> None:
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.realm), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            self._challenge = bearer
            # insufficient_scope names what the registry wants: ask for it as well.
            self._tokens.invalidate(bearer.realm, bearer.service, scopes)
            self._fetch_token(bearer, merge_scopes(scopes, bearer.scopes))
            return
        if basic is not None:
            already = self._challenge is not None and self._challenge.scheme == "basic"
            self._challenge = basic
            if self._credentials is None:
                raise Unauthenticated(f"registry {self.host} requires authentication",
                                      hint=f"hutch login {self.host}")
            if already:
                raise Unauthenticated(f"registry {self.host} refused the credentials for "
                                      f"{self._credentials[0]!r}",
                                      hint=f"hutch login {self.host}")
            return
        raise Unauthenticated(f"registry {self.host} wants authentication hutch does not "
                              "support" if challenges else
                              f"registry {self.host} answered 401 without a challenge",
                              hint=f"hutch login {self.host}")

    def _fetch_token(self, ch: Challenge, scopes: tuple[str, ...]) -> str:
        import httpx

        realm = ch.realm
        self._check_url(realm)
        params: list[tuple[str, str]] = []
        if ch.service:
            params.append(("service", ch.service))
        params += [("scope", s) for s in scopes]
        headers = {}
        if self._credentials:
            params.append(("account", self._credentials[0]))
            headers["Authorization"] = basic_header(*self._credentials)
        url = httpx.URL(realm).copy_merge_params(params)
        attempt = 0
        while True:
            try:
                resp = self._client.send(self._client.build_request(
                    "GET", url, headers=headers), stream=True)
            except httpx.TransportError as e:
                if attempt >= self.retries:
                    raise Unavailable(f"cannot reach the token server of {self.host}: "
                                      f"{one_line(e)}") from None
                attempt += 1
                self._sleep(self._backoff(attempt))
                continue
            try:
                if resp.status_code in RETRY_STATUS and attempt < self.retries:
                    attempt += 1
                    self._sleep(self._backoff(attempt))
                    continue
                if resp.status_code in (401, 403):
                    who = f"as {self._credentials[0]!r}" if self._credentials else "anonymously"
                    raise Unauthenticated(
                        f"registry {self.host} refused a token {who} for "
                        f"{' '.join(scopes) or 'login'}", hint=f"hutch login {self.host}")
                if resp.status_code != 200:
                    self._raise_for(resp, f"token from {realm}")
                body = self._read_bounded(resp, MAX_TOKEN_BODY, "token response")
            finally:
                resp.close()
            break
        from hutch.util import fastjson

        try:
            token, expires_in = parse_token_response(fastjson.loads(body))
        except ValueError:
            raise Unavailable(f"token server of {self.host} answered with bad JSON") from None
        # Renew a little early, so a token does not expire between check and use.
        self._tokens.put(ch.realm, ch.service, scopes, token,
                         self._clock() + expires_in - min(30, expires_in / 4))
        return token

    def _backoff(self, attempt: int) -> float:
        return min(10.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)

    def _read_bounded(self, resp: httpx.Response, limit: int, what: str) -> bytes:
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise InvalidArgument(f"{what} is {declared} bytes, more than the "
                                  f"{limit >> 20} MiB limit")
        buf = bytearray()
        for chunk in resp.iter_bytes():
            buf += chunk
            if len(buf) > limit:
                raise InvalidArgument(f"{what} is more than the {limit >> 20} MiB limit")
        return bytes(buf)

    def _raise_for(self, resp: httpx.Response, what: str) -> None:
        """Turn an unexpected status into the matching hutch error, with the registry's
        own error code and message (spec.md "Error codes") when it sent them."""
        detail = ""
        if resp.request.method != "HEAD":
            try:
                body = self._read_bounded(resp, MAX_ERROR_BODY, "error body")
                detail = error_detail(body)
            except Exception:  # noqa: BLE001 - the status says enough
                detail = ""
        status = resp.status_code
        msg = f"{what}: {status} {resp.reason_phrase}" + (f" ({detail})" if detail else "")
        hint = None
        if status == 401:
            raise Unauthenticated(msg, hint=f"hutch login {self.host}", status=status)
        if status == 403:
            raise PermissionDenied(msg, status=status)
        if status == 404:
            raise NotFound(msg, status=status)
        if status in (400, 413, 414):
            raise InvalidArgument(msg, status=status)
        if status == 405:
            raise NotSupported(msg, status=status)
        if status in (409, 412, 416):
            raise FailedPrecondition(msg, status=status)
        raise Unavailable(msg, hint=hint, status=status)


def _raw(resp: httpx.Response) -> Iterator[bytes]:
    """The body as sent (no Content-Encoding decoding: the digest is of those bytes).
    A transport that read the body already (httpx.MockTransport) gets it whole."""
    if resp.is_stream_consumed:
        yield resp.content
    else:
        yield from resp.iter_raw()
