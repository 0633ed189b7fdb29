"""A misbehaving reverse proxy on 127.0.0.1 in front of a test registry.

Tests point `hutch pull` at the proxy (`127.0.0.1:PORT/repo:tag`; the registry client
speaks plain http to loopback hosts) and arm faults that hit chosen requests:

    with FaultyProxy(registry.host) as proxy:
        proxy.add(Fault(kind="blob", digest=d, corrupt_at=100))          # flip a byte
        proxy.add(Fault(kind="blob", truncate_at=4096, times=2))         # 2 short bodies
        proxy.add(Fault(kind="blob", status=503, times=3))               # then it works
        proxy.add(Fault(kind="manifest", body=b"...", digest_header="match"))

Faults (one per matching request, first armed first; `times=None` forever):
  status        answer this status (with `retry_after`) instead of forwarding
  redirect_to   answer 307 to the same path on another 127.0.0.1 port
  body          serve these bytes instead of upstream's (manifest lies, oversize)
  corrupt_at    flip the byte at this offset of the blob (Range-aware)
  append        send these extra bytes after the body (a blob longer than declared)
  truncate_at   stop the body at this offset of the blob (Range-aware); `honest_length`
                True sends a matching Content-Length (a short body the server calls
                complete), False keeps upstream's length and closes (a dropped connection)
  declared_extra  add this to Content-Length, send the real body, close (a lying length)
  rate          bytes per second (slows every matching body; combine with times=None)

Every request is recorded (`requests`: method, path, headers, status) so tests can count
blob GETs or check which headers reached a server. The proxy adds `upstream_headers` to
what it forwards (a side server standing in for a blob store needs the registry's
credentials of its own). Threads are daemons; `stop()` (or leaving `with`) ends them.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<ref>[^/]+)$")
_MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
        "te", "trailer", "host", "content-length"}
_CHUNK = 64 << 10


@dataclass
class Fault:
    kind: str = "blob"               # "blob", "manifest" or "any"
    digest: str | None = None        # blob digest / manifest reference to match, or any
    method: str = "GET"              # "GET", "HEAD" or "*"
    times: int | None = 1            # how many requests it hits; None = every one
    status: int | None = None
    retry_after: str | None = None
    redirect_to: int | None = None
    body: bytes | None = None
    media_type: str | None = None    # Content-Type for `body`
    digest_header: str = "match"     # with `body`: "match", "keep" (upstream's) or "drop"
    corrupt_at: int | None = None
    append: bytes = b""
    truncate_at: int | None = None
    honest_length: bool = True
    declared_extra: int = 0
    rate: float | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method != "*" and self.method != method:
            return False
        m = None
        if self.kind in ("blob", "any"):
            m = _BLOB.match(path)
        if m is None and self.kind in ("manifest", "any"):
            m = _MANIFEST.match(path)
        if m is None:
            return False
        return self.digest is None or m.group("ref") == self.digest


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    fault: bool = False


@dataclass
class FaultyProxy:
    upstream: str                                  # "127.0.0.1:PORT"
    upstream_headers: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                proxy._handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    # -- control -------------------------------------------------------------------------

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def blob_gets(self, digest: str | None = None) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and _BLOB.match(r.path)
                    and (digest is None or r.path.endswith("/" + digest))]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> FaultyProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------------

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.matches(method, path):
                    f.hits += 1
                    return f
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        seen = Seen(h.command, h.path, {k: v for k, v in h.headers.items()})
        with self._lock:
            self.requests.append(seen)
        length = int(h.headers.get("Content-Length") or 0)
        req_body = h.rfile.read(length) if length else None
        fault = self._take(h.command, path)
        seen.fault = fault is not None
        h.close_connection = True
        try:
            if fault is not None and fault.status is not None:
                seen.status = fault.status
                body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
                h.send_response(fault.status)
                if fault.retry_after is not None:
                    h.send_header("Retry-After", fault.retry_after)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(body)))
                h.send_header("Connection", "close")
                h.end_headers()
                if h.command != "HEAD":
                    h.wfile.write(body)
                return
            if fault is not None and fault.redirect_to is not None:
                seen.status = 307
                h.send_response(307)
                h.send_header("Location", f"http://127.0.0.1:{fault.redirect_to}{h.path}")
                h.send_header("Content-Length", "0")
                h.send_header("Connection", "close")
                h.end_headers()
                return
            self._forward(h, req_body, fault, seen)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _forward(self, h: BaseHTTPRequestHandler, req_body: bytes | None,
                 fault: Fault | None, seen: Seen) -> None:
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        headers.update(self.upstream_headers)
        if fault is not None and fault.body is not None:
            headers.pop("Range", None)
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            conn.request(h.command, h.path, body=req_body, headers=headers)
            resp = conn.getresponse()
            out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
            status = resp.status
            upstream_len = resp.getheader("Content-Length")
            if fault is not None and fault.body is not None:
                resp.read()
                self._send_body(h, fault, out_headers, status)
                seen.status = status
                return
            if h.command == "HEAD" or upstream_len is None:
                data = resp.read() if h.command != "HEAD" else b""
                seen.status = status
                h.send_response(status)
                for k, v in out_headers:
                    h.send_header(k, v)
                h.send_header("Content-Length", upstream_len if h.command == "HEAD" and
                              upstream_len else str(len(data)))
                h.send_header("Connection", "close")
                h.end_headers()
                h.wfile.write(data)
                return
            seen.status = status
            self._stream(h, resp, status, out_headers, int(upstream_len), fault)
        finally:
            conn.close()

    def _send_body(self, h: BaseHTTPRequestHandler, fault: Fault,
                   out_headers: list[tuple[str, str]], status: int) -> None:
        import hashlib

        body = fault.body or b""
        h.send_response(200 if status in (200, 206) else status)
        for k, v in out_headers:
            low = k.lower()
            if low == "content-type" and fault.media_type:
                continue
            if low == "docker-content-digest" and fault.digest_header != "keep":
                continue
            if low in ("content-range", "etag"):
                continue
            h.send_header(k, v)
        if fault.media_type:
            h.send_header("Content-Type", fault.media_type)
        if fault.digest_header == "match":
            h.send_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(body).hexdigest())
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _stream(self, h: BaseHTTPRequestHandler, resp: http.client.HTTPResponse, status: int,
                out_headers: list[tuple[str, str]], length: int, fault: Fault | None) -> None:
        start = 0
        for k, v in out_headers:
            if k.lower() == "content-range":
                m = re.match(r"bytes (\d+)-", v)
                start = int(m.group(1)) if m else 0
        send_len = length
        close_early = False
        if fault is not None:
            cut = None if fault.truncate_at is None else max(0, fault.truncate_at - start)
            if cut is not None and cut < length:
                send_len = cut
                close_early = not fault.honest_length
            send_len += len(fault.append)
        declared = send_len
        if close_early:
            declared = length + len(fault.append)
        if fault is not None and fault.declared_extra:
            declared = send_len + fault.declared_extra
            close_early = True
        h.send_response(status)
        for k, v in out_headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(declared))
        h.send_header("Connection", "close")
        h.end_headers()
        rate = fault.rate if fault is not None else None
        began = time.monotonic()
        sent = 0
        limit = send_len - (len(fault.append) if fault is not None else 0)
        while sent < limit:
            chunk = resp.read(min(_CHUNK, limit - sent, int(rate / 10) + 1 if rate else _CHUNK))
            if not chunk:
                break
            if fault is not None and fault.corrupt_at is not None:
                rel = fault.corrupt_at - start - sent
                if 0 <= rel < len(chunk):
                    b = bytearray(chunk)
                    b[rel] ^= 0xFF
                    chunk = bytes(b)
            h.wfile.write(chunk)
            sent += len(chunk)
            if rate:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        if fault is not None and fault.append:
            h.wfile.write(fault.append)
        h.wfile.flush()
        if close_early:
            # Shut the socket so the client sees the body end before Content-Length.
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
