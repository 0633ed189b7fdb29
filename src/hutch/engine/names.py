"""Container names: docker's validity rule and its "adjective_surname" generator.

moby daemon/names.go: a name matches `^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$` (so at least two
characters); docker keeps names with a leading "/" (the root of its old link graph) and
accepts them with or without it. hutch stores them without the slash.

moby pkg/namesgenerator: "<adjective>_<surname>", a digit appended on retries. The words
below are our own list (all kind adjectives: docker had to special-case "boring_wozniak").
"""

from __future__ import annotations

import os
import re

from hutch.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    import random

NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_VALID = re.compile(r"^/?" + NAME_CHARS + r"+$")

ADJECTIVES = (
    "agile", "amber", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp",
    "daring", "eager", "fearless", "fluffy", "gentle", "glad", "golden", "happy", "hardy",
    "honest", "humble", "jolly", "keen", "kind", "lively", "lucid", "lucky", "merry",
    "mighty", "modest", "nimble", "noble", "patient", "placid", "polite", "proud", "quiet",
    "quirky", "rapid", "serene", "sharp", "shiny", "silent", "smooth", "sober", "steady",
    "sunny", "swift", "tender", "tidy", "vivid", "wise", "witty", "zealous", "zen",
)  # fmt: skip

# People who shaped computing, mathematics and science.
SURNAMES = (
    "agnesi", "babbage", "bartik", "bell", "boole", "borg", "church", "codd", "curie",
    "darwin", "dijkstra", "einstein", "engelbart", "euler", "fermat", "feynman", "franklin",
    "gauss", "goldberg", "goodall", "hamilton", "hodgkin", "hopper", "hypatia", "johnson",
    "kepler", "knuth", "kowalevski", "lamarr", "lamport", "liskov", "lovelace", "mccarthy",
    "meitner", "mirzakhani", "newton", "noether", "pascal", "perlman", "ritchie", "sammet",
    "shannon", "shaw", "somerville", "tesla", "thompson", "torvalds", "turing", "wilson",
    "wing", "wozniak", "yalow",
)  # fmt: skip


def new_id() -> str:
    """A container id: 64 random hex digits. moby pkg/stringid: never all digits in the
    12-character short form, which some tools would parse as a number."""
    while True:
        value = os.urandom(32).hex()
        if not value[:12].isdigit():
            return value


def random_name(retry: int = 0, rng: random.Random | None = None) -> str:
    """A name like "brave_turing"; with `retry` > 0 a digit is appended, as docker does,
    to widen the space when the plain names collide."""
    pick = rng or _URANDOM
    name = f"{pick.choice(ADJECTIVES)}_{pick.choice(SURNAMES)}"
    if retry > 0:
        name += str(pick.randrange(10))
    return name


class _Urandom:
    """random.choice/randrange from os.urandom: the random module costs ~0.5 ms to
    import on every `run`, for two picks (modulo bias of 2**-24 is no matter here)."""

    @staticmethod
    def choice(seq):
        return seq[int.from_bytes(os.urandom(4), "little") % len(seq)]

    @staticmethod
    def randrange(n: int) -> int:
        return int.from_bytes(os.urandom(4), "little") % n


_URANDOM = _Urandom()


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and _VALID.match(name) is not None


def check_name(name: object) -> str:
    """The name without docker's optional leading "/"; InvalidArgument if it breaks the
    rule (message as docker's)."""
    if not is_valid_name(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only {NAME_CHARS} are allowed", name=name
        )
    assert isinstance(name, str)
    return name.removeprefix("/")
