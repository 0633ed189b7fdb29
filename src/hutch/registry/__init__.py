"""OCI distribution API client: resolve, auth (bearer/basic), fetch, push, credentials.

May import: hutch.util, hutch.oci, hutch.errors, hutch.config; httpx lazily.
"""

# Cheap to import: the classes (and httpx behind them) load on first use.
_EXPORTS = {
    "RegistryClient": "hutch.registry.client",
    "CredentialStore": "hutch.registry.credentials",
    "login": "hutch.registry.credentials",
    "logout": "hutch.registry.credentials",
    "docker_config_path": "hutch.registry.credentials",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hutch.registry' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
