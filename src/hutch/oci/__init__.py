"""OCI data: the runtime spec (config.json) and, later, image manifests, indexes, configs,
digests, references and platforms.

Pure data. No I/O beyond reading the file being parsed (`spec.load_spec` reads
config.json; `spec.validate` looks at the bundle's rootfs), no ctypes, no subprocesses.
May import only the standard library and `hutch.errors` — never `hutch.linux`, so that
constants the kernel needs (CLONE_*, MS_*) are copied here as plain numbers. The runtime
imports this package before fork on every create: keep imports light (no jsonschema,
no dataclasses/inspect, no regular expressions compiled per call).
"""
