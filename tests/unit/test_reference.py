"""References, digests and platforms parse and normalise as docker and containerd do."""

from __future__ import annotations

import pytest

from hutch.errors import InvalidArgument
from hutch.oci.digest import Digest, DigestMismatch, Hasher, sha256_of
from hutch.oci.platform import Platform
from hutch.oci.reference import Reference

pytestmark = pytest.mark.unit

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, domain, path, tag, digest", [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("user/app", "docker.io", "user/app", "latest", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/library/busybox:x", "docker.io", "library/busybox", "x", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/a/b/c:v1", "localhost:5000", "a/b/c", "v1", None),
    ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", "latest", None),
    ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
    ("quay.io/org/app", "quay.io", "org/app", "latest", None),
    ("Example/app", "Example", "app", "latest", None),  # uppercase first part: a domain
    ("busybox@" + D, "docker.io", "library/busybox", None, D),
    ("reg.example:443/a:t@" + D, "reg.example:443", "a", "t", D),
    ("my_repo__x/y-z.w--v", "docker.io", "my_repo__x/y-z.w--v", "latest", None),
])
def test_parse_normalises_like_docker(text, domain, path, tag, digest):
    r = Reference.parse(text)
    assert (r.domain, r.path, r.tag, r.digest) == (domain, path, tag, digest)


@pytest.mark.parametrize("text, canonical, familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app:1", "docker.io/user/app:1", "user/app:1"),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    ("localhost:5000/app@" + D, "localhost:5000/app@" + D, "localhost:5000/app@" + D),
    ("quay.io/a:t@" + D, "quay.io/a:t@" + D, "quay.io/a:t@" + D),
])
def test_str_is_canonical_and_familiar_is_short(text, canonical, familiar):
    r = Reference.parse(text)
    assert str(r) == canonical
    assert r.familiar() == familiar
    assert Reference.parse(str(r)) == r


def test_locator_prefers_the_digest():
    assert Reference.parse("a:t@" + D).locator == D
    assert Reference.parse("a:t").locator == "t"
    assert Reference.parse("a").with_digest(D).locator == D
    assert Reference.parse("a@" + D).with_tag("v2").tag == "v2"


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("Busybox", "lowercase"),
    ("docker.io/Library/busybox", "lowercase"),
    ("localhost:5000/App", "lowercase"),
    ("busybox:-bad", "invalid tag"),
    ("busybox:" + "t" * 129, "invalid tag"),
    ("busybox:a/b", "invalid registry"),
    ("my_repo.name/x", "invalid registry"),
    ("0123456789abcdef" * 4, "hexadecimal"),
    ("busybox@sha256:abc", "sha256 needs 64"),
    ("busybox@md5:" + "a" * 32, "unsupported algorithm"),
    ("a/" + "b" * 260, "255"),
    ("a//b", "invalid repository name"),
    ("a/b/", "invalid repository name"),
    ("/a", "invalid"),
    ("a b", "whitespace"),
    ("a_/b", "invalid repository name"),
    ("-host.com/a", "invalid registry"),
    ("localhost:5000/", "empty repository name"),
])
def test_bad_references_are_refused_with_a_reason(text, words):
    with pytest.raises(InvalidArgument) as e:
        Reference.parse(text)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_digest_validates_and_is_a_string():
    d = Digest(D)
    assert d == D and isinstance(d, str)
    assert d.algorithm == "sha256" and d.encoded == "ab" * 32
    assert Digest("sha512:" + "0" * 128).algorithm == "sha512"
    assert {d: 1}[D] == 1


@pytest.mark.parametrize("bad", [
    "", "sha256", "sha256:", "sha256:" + "A" * 64, "sha256:" + "a" * 63,
    "sha256:" + "a" * 65, "sha512:" + "a" * 64, "md5:" + "a" * 32, "sha256:../../etc/passwd",
    "SHA256:" + "a" * 64, "sha256:" + "g" * 64,
])
def test_malformed_digests_are_invalid_argument(bad):
    with pytest.raises(InvalidArgument):
        Digest(bad)


def test_hasher_streams_and_matches_sha256_of():
    h = Hasher()
    for part in (b"hello ", b"", b"world"):
        h.update(part)
    assert h.size == 11
    assert h.digest() == sha256_of(b"hello world") == Digest.from_bytes(b"hello world")
    assert h.digest() == ("sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
    assert Hasher("sha512").digest().algorithm == "sha512"
    copy = h.copy()
    copy.update(b"!")
    assert h.size == 11 and copy.size == 12


def test_verify_raises_digest_mismatch_naming_both():
    d = sha256_of(b"a")
    d.verify(b"a")
    with pytest.raises(DigestMismatch) as e:
        d.verify(b"b")
    assert e.value.expected == d and e.value.actual == sha256_of(b"b")


@pytest.mark.parametrize("text, expected", [
    ("linux/amd64", ("linux", "amd64", "")),
    ("linux/x86_64", ("linux", "amd64", "")),
    ("Linux/AMD64/v1", ("linux", "amd64", "")),
    ("linux/amd64/v3", ("linux", "amd64", "v3")),
    ("linux/arm64/v8", ("linux", "arm64", "")),
    ("linux/aarch64", ("linux", "arm64", "")),
    ("linux/arm64/9", ("linux", "arm64", "v9")),
    ("linux/arm", ("linux", "arm", "v7")),
    ("linux/armhf", ("linux", "arm", "v7")),
    ("linux/armel", ("linux", "arm", "v6")),
    ("linux/arm/6", ("linux", "arm", "v6")),
    ("linux/i386", ("linux", "386", "")),
    ("macos/arm64", ("darwin", "arm64", "")),
    ("windows/amd64", ("windows", "amd64", "")),
    ("linux/ppc64le", ("linux", "ppc64le", "")),
])
def test_platform_parse_normalises_like_containerd(text, expected):
    p = Platform.parse(text)
    assert (p.os, p.architecture, p.variant) == expected


def test_platform_parse_single_word_fills_in_from_the_host():
    host = Platform.host()
    assert Platform.parse("linux") == Platform("linux", host.architecture, host.variant)
    p = Platform.parse("arm64")
    assert (p.os, p.architecture) == (host.os, "arm64")


@pytest.mark.parametrize("bad", ["", "linux/", "a/b/c/d", "linux/amd 64", "nonsense"])
def test_platform_parse_refuses_garbage(bad):
    with pytest.raises(InvalidArgument):
        Platform.parse(bad)


def test_host_platform_is_normalised():
    p = Platform.host()
    assert p.os == "linux"
    assert p.architecture in ("amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64")
    assert p == p.normalize()


@pytest.mark.parametrize("host, image, rank", [
    ("linux/amd64", "linux/amd64", 0),
    ("linux/amd64", "linux/x86_64", 0),
    ("linux/amd64", "linux/amd64/v1", 0),
    ("linux/amd64", "linux/amd64/v2", None),
    ("linux/amd64/v3", "linux/amd64/v2", 1),
    ("linux/amd64/v3", "linux/amd64", 2),
    ("linux/arm64", "linux/arm64/v8", 0),
    ("linux/arm64/v8", "linux/arm64", 0),
    ("linux/arm64", "linux/arm/v7", 2),
    ("linux/arm/v7", "linux/arm/v6", 1),
    ("linux/arm/v6", "linux/arm/v7", None),
    ("linux/amd64", "windows/amd64", None),
    ("linux/amd64", "linux/arm64", None),
])
def test_platform_matching_ranks_exact_before_compatible(host, image, rank):
    h, i = Platform.parse(host), Platform.parse(image)
    assert h.rank(i) == rank
    assert h.matches(i) == (rank is not None)


def test_platform_dict_round_trip():
    d = {"architecture": "arm64", "os": "linux", "variant": "v8", "os.features": ["x"]}
    p = Platform.from_dict(d)
    assert p.to_dict() == d
    with pytest.raises(InvalidArgument):
        Platform.from_dict({"os": "linux", "architecture": 5})
