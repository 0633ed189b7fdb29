"""nftables through libnftables (the library behind the `nft` command), by ctypes.

`Nft().run(text)` does what `nft -f -` would do with `text`: the whole buffer is one
netlink transaction, applied atomically or not at all. `run_json(text)` returns what
`nft -j` prints, parsed (for `list ...` commands: {"nftables": [{"metainfo": ...}, ...]}).

Why the library and not the `nft` command: no fork+exec on `hutch run`'s path, and errors
come back as text we can turn into an OSError.

Quirks of libnftables (checked against nft 1.0.6):

- The netlink socket belongs to the network namespace that was current when the context
  was created, so an `Nft` made before a setns() keeps talking to the old namespace.
  Create the `Nft` in the namespace you mean.
- Output and error buffers are rewound when read; we read both after every command so
  that one command's messages never leak into the next one's.
- With NFT_CTX_OUTPUT_JSON set, the library first tries to parse the *input* as JSON
  and falls back to the text parser; text commands still work, so we set the flag only
  for run_json().
- JSON listings carry rule handles whether or not NFT_CTX_OUTPUT_HANDLE is set.
- nft 1.0.6 has no `destroy` (delete-if-exists, 1.0.8+): deleting something that is not
  there fails with ENOENT and aborts the whole batch. Callers use `add X; delete X` in one
  batch for tables and set elements, and look rule handles up first.
- Netlink failures are reported as text ("Error: Could not process rule: No such file or
  directory"); we map the strerror text back to its errno so callers can tell "already
  gone" (ENOENT) from real failures. Syntax errors become EINVAL.

libnftables is loaded on first use, not at import.
"""

from __future__ import annotations

import ctypes
import errno
import os

from hutch.errors import NotSupported

LIBRARY = "libnftables.so.1"

# include/nftables/libnftables.h (nftables 1.0.x)
NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_REVERSEDNS = 1 << 0
NFT_CTX_OUTPUT_SERVICE = 1 << 1
NFT_CTX_OUTPUT_STATELESS = 1 << 2
NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4
NFT_CTX_OUTPUT_ECHO = 1 << 5
NFT_CTX_OUTPUT_GUID = 1 << 6
NFT_CTX_OUTPUT_NUMERIC_PROTO = 1 << 7
NFT_CTX_OUTPUT_NUMERIC_PRIO = 1 << 8
NFT_CTX_OUTPUT_NUMERIC_SYMBOL = 1 << 9
NFT_CTX_OUTPUT_NUMERIC_TIME = 1 << 10
NFT_CTX_OUTPUT_TERSE = 1 << 11

_lib: ctypes.CDLL | None = None


def _libnftables() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as e:
        raise NotSupported(f"{LIBRARY} cannot be loaded: container networking needs it",
                           hint="install libnftables1 (nftables)") from e
    ctx = ctypes.c_void_p
    sigs = {
        "nft_ctx_new": (ctx, [ctypes.c_uint32]),
        "nft_ctx_free": (None, [ctx]),
        "nft_ctx_buffer_output": (ctypes.c_int, [ctx]),
        "nft_ctx_buffer_error": (ctypes.c_int, [ctx]),
        "nft_ctx_get_output_buffer": (ctypes.c_char_p, [ctx]),
        "nft_ctx_get_error_buffer": (ctypes.c_char_p, [ctx]),
        "nft_ctx_output_set_flags": (None, [ctx, ctypes.c_uint]),
        "nft_ctx_output_get_flags": (ctypes.c_uint, [ctx]),
        "nft_run_cmd_from_buffer": (ctypes.c_int, [ctx, ctypes.c_char_p]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    _lib = lib
    return lib


_STRERROR: dict[str, int] | None = None


def _errno_of(message: str) -> int:
    """The errno whose strerror() ends nft's message, else EINVAL (parser/evaluation
    errors such as "syntax error, unexpected ..." carry no errno)."""
    global _STRERROR
    if _STRERROR is None:
        _STRERROR = {os.strerror(code): code for code in sorted(errno.errorcode, reverse=True)}
    text = message.removeprefix("Error: ").split(";", 1)[0].strip()
    for candidate in (text, text.rsplit(": ", 1)[-1]):
        if candidate in _STRERROR:
            return _STRERROR[candidate]
    return errno.EINVAL


def first_error_line(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("Error:"):
            return line
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


class Nft:
    """One libnftables context, bound to the network namespace current at creation."""

    def __init__(self) -> None:
        lib = _libnftables()
        self._lib = lib
        self._ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not self._ctx:
            raise OSError(errno.ENOMEM, "nft_ctx_new: cannot create an nftables context")
        if lib.nft_ctx_buffer_output(self._ctx) or lib.nft_ctx_buffer_error(self._ctx):
            self.close()
            raise OSError(errno.ENOMEM, "nft_ctx_buffer_output: cannot buffer nft output")

    def run(self, cmds: str, *, echo: bool = False) -> str:
        """Run `cmds` (nft syntax, one command a line) as one transaction; return the
        text output (handles shown; with echo=True, what was added is echoed back)."""
        return self._run(cmds, NFT_CTX_OUTPUT_HANDLE | (NFT_CTX_OUTPUT_ECHO if echo else 0))

    def run_json(self, cmds: str, *, echo: bool = False) -> object:
        """Run `cmds`; return the JSON output parsed ({} when there is none)."""
        from hutch.util import fastjson

        flags = NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE
        out = self._run(cmds, flags | (NFT_CTX_OUTPUT_ECHO if echo else 0))
        return fastjson.loads(out) if out.strip() else {}

    def _run(self, cmds: str, flags: int) -> str:
        if self._ctx is None:
            raise ValueError("nft: context is closed")
        lib, ctx = self._lib, self._ctx
        lib.nft_ctx_output_set_flags(ctx, flags)
        rc = lib.nft_run_cmd_from_buffer(ctx, cmds.encode())
        # Read both buffers every time: reading is what rewinds them.
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        if rc != 0:
            line = first_error_line(err) or f"nft_run_cmd_from_buffer returned {rc}"
            raise OSError(_errno_of(line), f"nft: {line}")
        return out

    def close(self) -> None:
        if self._ctx is not None:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None

    def __enter__(self) -> Nft:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A context holds a netlink socket: free it when the object goes away.
        if getattr(self, "_ctx", None) is not None:
            self.close()
