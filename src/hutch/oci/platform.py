"""Platforms ("linux/arm64/v8"), normalised and matched as containerd's platforms package
does, so that an index entry written "arm64/v8" matches a host that says "aarch64".

Normalisation (containerd platforms.Normalize): os lowercase ("macos" -> "darwin");
architecture aliases (x86_64 -> amd64, aarch64 -> arm64, i386 -> 386, armhf -> arm/v7,
armel -> arm/v6); arm64's default variant v8 compares equal to no variant, arm's default
is v7; amd64 "v1" is no variant.

Matching (containerd platforms.Only): a host also runs older variants of its
architecture (arm/v7 runs v6 and v5; amd64/v3 runs v2 and v1; arm64 runs arm/v8..v5,
as containerd allows) — `rank()` orders candidates, best first.
"""

from __future__ import annotations

import os

from hutch.errors import InvalidArgument
from hutch.util.record import field, record

_KNOWN_OS = frozenset({
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
    "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos", "wasip1",
})
_KNOWN_ARCH = frozenset({
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
    "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc",
    "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
})


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch in ("i386", "i486", "i586", "i686", "x86", "386"):
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        elif variant and variant[0].isdigit():
            variant = "v" + variant
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch.startswith("armv") and arch[4:].isdigit():  # uname's armv7l style handled below
        return "arm", "v" + arch[4:]
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
        return "arm", variant
    if arch == "ppc64el":
        return "ppc64le", variant
    return arch, variant


@record(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> Platform:
        """"os", "os/arch", "os/arch/variant", or a lone "arch" (the host's os)."""
        parts = text.split("/") if isinstance(text, str) else []
        if not parts or len(parts) > 3 or any(not p or not _simple(p) for p in parts):
            raise InvalidArgument(f"invalid platform {str(text)[:100]!r}",
                                  hint="expected os[/arch[/variant]], e.g. linux/arm64/v8")
        if len(parts) == 1:
            word = parts[0].lower()
            if word in _KNOWN_OS or word == "macos":
                host = cls.host()
                return cls(word, host.architecture, host.variant).normalize()
            arch, variant = _normalize_arch(word, "")
            if arch not in _KNOWN_ARCH:
                raise InvalidArgument(f"unknown operating system or architecture {word!r}")
            return cls(cls.host().os, arch, variant)
        os_name = parts[0]
        arch = parts[1]
        variant = parts[2] if len(parts) == 3 else ""
        return cls(os_name, arch, variant).normalize()

    @classmethod
    def from_dict(cls, d: object) -> Platform:
        if not isinstance(d, dict):
            raise InvalidArgument("invalid platform: not an object")
        os_name, arch = d.get("os"), d.get("architecture")
        variant = d.get("variant") or ""
        if not isinstance(os_name, str) or not isinstance(arch, str) or \
                not isinstance(variant, str):
            raise InvalidArgument("invalid platform: os and architecture must be strings")
        features = d.get("os.features") or ()
        if not isinstance(features, (list, tuple)) or \
                not all(isinstance(f, str) for f in features):
            raise InvalidArgument("invalid platform: os.features must be strings")
        version = d.get("os.version") or ""
        if not isinstance(version, str):
            raise InvalidArgument("invalid platform: os.version must be a string")
        return cls(os_name, arch, variant, version, tuple(features))

    def to_dict(self) -> dict:
        d: dict = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        if self.variant:
            d["variant"] = self.variant
        return d

    @classmethod
    def host(cls) -> Platform:
        """The platform this machine runs (os.uname, like containerd's DefaultSpec)."""
        u = os.uname()
        machine = u.machine.lower()
        variant = ""
        if machine.startswith("armv"):  # armv7l, armv6l
            digits = "".join(c for c in machine[4:] if c.isdigit())
            machine, variant = "arm", digits
        arch, variant = _normalize_arch(machine, variant)
        return cls(u.sysname.lower(), arch, variant)

    def normalize(self) -> Platform:
        os_name = self.os.lower()
        if os_name == "macos":
            os_name = "darwin"
        arch, variant = _normalize_arch(self.architecture, self.variant)
        return Platform(os_name, arch, variant, self.os_version, self.os_features)

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return s + "/" + self.variant if self.variant else s

    def compatible(self) -> list[Platform]:
        """This platform and the ones it can also run, best first (containerd's vector)."""
        p = self.normalize()
        out = [p]
        if p.architecture == "amd64" and p.variant[:1] == "v" and p.variant[1:].isdigit():
            out += [Platform(p.os, "amd64", f"v{v}" if v > 1 else "")
                    for v in range(int(p.variant[1:]) - 1, 0, -1)]
        elif p.architecture == "arm" and p.variant[:1] == "v" and p.variant[1:].isdigit():
            out += [Platform(p.os, "arm", f"v{v}") for v in range(int(p.variant[1:]) - 1, 4, -1)]
        elif p.architecture == "arm64" and p.variant in ("", "v8"):
            out += [Platform(p.os, "arm", f"v{v}") for v in range(8, 4, -1)]
        return out

    def matches(self, other: Platform) -> bool:
        """True when an image for `other` runs here (os, architecture, variant)."""
        return self.rank(other) is not None

    def rank(self, other: Platform) -> int | None:
        """0 for an exact match, higher for a compatible one, None if it cannot run."""
        o = other.normalize()
        for i, p in enumerate(self.compatible()):
            if p.os == o.os and p.architecture == o.architecture and p.variant == o.variant:
                return i
        return None


def _simple(word: str) -> bool:
    return all(c.isalnum() or c in "._-" for c in word)


def parse(text: str) -> Platform:
    return Platform.parse(text)
