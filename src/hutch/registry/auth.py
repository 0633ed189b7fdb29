"""Registry authentication pieces: WWW-Authenticate challenges, scopes, a token cache.

The flow (distribution's token spec, docs/spec/auth/token.md): a request answered 401
carries `WWW-Authenticate: Bearer realm=...,service=...,scope=...` (or `Basic realm=...`).
For Bearer we GET the realm with `service` and one `scope` per resource, sending the
user's credentials as Basic auth if we have them (anonymous otherwise), and retry with
`Authorization: Bearer <token>`. Tokens are cached per set of scopes until shortly before
they expire; a cached token whose scopes cover a request (push covers pull) is reused.
No httpx here: the client does the HTTP.
"""

from __future__ import annotations

import base64

from hutch.errors import InvalidArgument
from hutch.util.record import field, record

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@record(frozen=True)
class Challenge:
    scheme: str  # lowercase: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        s = self.params.get("scope", "")
        return tuple(s.split()) if s else ()


def parse_www_authenticate(values: list[str] | str) -> list[Challenge]:
    """Parse one or more WWW-Authenticate header values (RFC 7235 challenges, params
    as token=token or token="quoted", several challenges possibly in one value)."""
    if isinstance(values, str):
        values = [values]
    out: list[Challenge] = []
    for value in values:
        out.extend(_parse_one(value))
    return out


def _parse_one(s: str) -> list[Challenge]:
    challenges: list[Challenge] = []
    i, n = 0, len(s)
    current: Challenge | None = None

    def skip(chars: str) -> None:
        nonlocal i
        while i < n and s[i] in chars:
            i += 1

    while i < n:
        skip(" \t,")
        start = i
        while i < n and s[i] in _TOKEN_CHARS:
            i += 1
        word = s[start:i]
        if not word:
            i += 1  # junk character: skip it rather than loop forever
            continue
        skip(" \t")
        if i < n and s[i] == "=" and current is not None:
            i += 1
            skip(" \t")
            if i < n and s[i] == '"':
                i += 1
                buf = []
                while i < n and s[i] != '"':
                    if s[i] == "\\" and i + 1 < n:
                        i += 1
                    buf.append(s[i])
                    i += 1
                i += 1  # closing quote
                val = "".join(buf)
            else:
                start = i
                while i < n and s[i] not in ", \t":
                    i += 1
                val = s[start:i]
            current.params[word.lower()] = val
        else:
            current = Challenge(word.lower(), {})
            challenges.append(current)
    return challenges


def repository_scope(repo: str, *actions: str) -> str:
    return f"repository:{repo}:{','.join(actions)}"


def _scope_set(scopes: tuple[str, ...]) -> frozenset[tuple[str, str]]:
    """"repository:a/b:pull,push" -> {("repository:a/b", "pull"), ("repository:a/b", "push")}."""
    out = set()
    for scope in scopes:
        resource, _, actions = scope.rpartition(":")
        for action in actions.split(","):
            if action:
                out.add((resource, action))
    return frozenset(out)


def merge_scopes(*groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Union of scopes, one scope string per resource, in a stable order."""
    by_resource: dict[str, list[str]] = {}
    for group in groups:
        for resource, action in sorted(_scope_set(tuple(group))):
            acts = by_resource.setdefault(resource, [])
            if action not in acts:
                acts.append(action)
    return tuple(f"{r}:{','.join(sorted(a))}" for r, a in sorted(by_resource.items()))


def basic_header(user: str, password: str) -> str:
    raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class TokenCache:
    """Bearer tokens by (realm, service, scope set), each with a monotonic expiry."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, frozenset], tuple[str, float]] = {}

    def get(self, realm: str, service: str, scopes: tuple[str, ...], now: float) -> str | None:
        want = _scope_set(scopes)
        exact = self._tokens.get((realm, service, want))
        if exact and exact[1] > now:
            return exact[0]
        for (r, s, have), (token, expires) in self._tokens.items():
            if r == realm and s == service and want <= have and expires > now:
                return token
        return None

    def put(self, realm: str, service: str, scopes: tuple[str, ...], token: str,
            expires_at: float) -> None:
        self._tokens[(realm, service, _scope_set(scopes))] = (token, expires_at)

    def invalidate(self, realm: str, service: str, scopes: tuple[str, ...]) -> None:
        """Forget every token that get() could return for these scopes (it was refused)."""
        want = _scope_set(scopes)
        for key in [k for k in self._tokens
                    if k[0] == realm and k[1] == service and want <= k[2]]:
            del self._tokens[key]


def parse_token_response(doc: object) -> tuple[str, int]:
    """(token, expires_in seconds) from a token endpoint's JSON answer."""
    if not isinstance(doc, dict):
        raise InvalidArgument("token server answered with something other than a JSON object")
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise InvalidArgument("token server answered without a token")
    expires_in = doc.get("expires_in")
    # token.md: "If not provided, the token should be assumed to be valid for 60 seconds."
    if type(expires_in) is not int or expires_in <= 0:
        expires_in = 60
    return token, expires_in
