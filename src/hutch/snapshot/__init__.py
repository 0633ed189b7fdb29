"""Snapshotters behind one protocol (prepare/view/commit/remove/mounts): overlay
(default), btrfs, native copy. They return Mount lists; they never mount for the caller.

May import: hutch.mount, hutch.linux, hutch.util, hutch.errors, hutch.config.
"""
