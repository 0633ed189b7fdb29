"""The exception hierarchy of hutch. Imports nothing from hutch.

A few classes with context, in the spirit of gRPC status codes. Only the CLI and the API
turn them into exit codes or HTTP statuses; everything below raises.
"""

from __future__ import annotations


class HutchError(Exception):
    """Base of every error hutch raises on purpose. `str()` is one line for the user."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, **context: object) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
        self.context = context

    def __str__(self) -> str:
        return self.message


class NotFound(HutchError):
    """The named thing (container, image, file) does not exist."""


class AlreadyExists(HutchError):
    """A thing with that name or id exists already."""


class InvalidArgument(HutchError):
    """Bad input: a flag, a spec field, a reference."""


class FailedPrecondition(HutchError):
    """The request is fine but the state does not allow it (e.g. delete a running container)."""


class PermissionDenied(HutchError):
    """The kernel or a policy said no."""


class Unauthenticated(HutchError):
    """A registry wants credentials we do not have or that it refused."""


class Unavailable(HutchError):
    """A service (registry, daemon) cannot be reached right now."""


class NotSupported(HutchError):
    """The host or this version of hutch cannot do what was asked."""


class SpecError(InvalidArgument):
    """An OCI runtime spec (config.json) is malformed or hostile. `field` names the key."""

    def __init__(self, message: str, *, field: str | None = None, **context: object) -> None:
        super().__init__(message, field=field, **context)
        self.field = field
