"""Content-addressed blob store: ingest (resumable, atomic), verify, delete, walk.

May import: hutch.util, hutch.oci, hutch.errors, hutch.config. Never the layers above
(image, runtime, engine, cli).
"""

from hutch.content.store import BlobInfo, IngestStatus, LocalContentStore
from hutch.content.writer import Writer

__all__ = ["BlobInfo", "IngestStatus", "LocalContentStore", "Writer"]
