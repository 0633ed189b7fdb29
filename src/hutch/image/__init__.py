"""Images: names and tags, the pull/push/save/load/import pipeline, unpacking into
snapshots, garbage collection.

May import: hutch.content, hutch.registry, hutch.archive, hutch.snapshot, hutch.mount,
hutch.oci, hutch.linux, hutch.util, hutch.config, hutch.errors. Never hutch.runtime.
"""
