"""The image metadata database: names, manifests, content references, snapshots, leases.

One SQLite file in WAL mode (readers never block the writer), standard library only.
Every public method is one transaction; writes take `BEGIN IMMEDIATE` so two hutch
processes serialise on the write lock up front instead of failing halfway with
SQLITE_BUSY, and the busy timeout makes parallel CLI calls wait rather than error.
`transaction()` groups several calls into one (e.g. record a manifest and name an image).

Content references form a graph (refs: parent digest -> child digest): an index points to
its manifests, a manifest to its config and layers. The GC roots are image targets and
unexpired leases; everything reachable from them is live (containerd's metadata GC, in
SQL: one recursive CTE). A lease protects what a pull is writing before any image names
it; the pull protocol is:
  add_lease(id, [digests so far]) -> write blobs -> record_* + put_image -> remove_lease.
`collect()` holds the write lock while it deletes, so a lease added before a pull checks
`store.exists()` can never race a collection.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence

from hutch.errors import InvalidArgument, NotFound
from hutch.linux.sqlite import no_checkpoint_on_close
from hutch.oci.digest import chain_ids
from hutch.util import fastjson
from hutch.util.record import field, record
from hutch.util.sqlite import SqliteStore

TYPE_CHECKING = False  # not typing's: importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any

Migration = Sequence[str]  # SQL statements run in one transaction

# Append only: migration i takes the schema from version i to i + 1. Never edit a
# released one; add another.
MIGRATIONS: tuple[Migration, ...] = (
    (
        """CREATE TABLE images (
            name TEXT PRIMARY KEY,
            target TEXT NOT NULL,
            media_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX images_target ON images(target)",
        # Edges of the content graph, what GC walks.
        """CREATE TABLE refs (
            parent TEXT NOT NULL,
            child TEXT NOT NULL,
            PRIMARY KEY (parent, child)
        ) WITHOUT ROWID""",
        "CREATE INDEX refs_child ON refs(child)",
        """CREATE TABLE index_manifests (
            index_digest TEXT NOT NULL,
            position INTEGER NOT NULL,
            manifest_digest TEXT NOT NULL,
            platform TEXT,
            PRIMARY KEY (index_digest, position)
        )""",
        """CREATE TABLE manifests (
            digest TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            media_type TEXT,
            platform TEXT,
            recorded REAL NOT NULL
        )""",
        """CREATE TABLE manifest_layers (
            manifest_digest TEXT NOT NULL REFERENCES manifests(digest) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            digest TEXT NOT NULL,
            media_type TEXT NOT NULL,
            size INTEGER,
            diff_id TEXT NOT NULL,
            chain_id TEXT NOT NULL,
            PRIMARY KEY (manifest_digest, position)
        )""",
        "CREATE INDEX manifest_layers_chain ON manifest_layers(chain_id)",
        """CREATE TABLE snapshots (
            chain_id TEXT NOT NULL,
            snapshotter TEXT NOT NULL,
            key TEXT NOT NULL,
            created REAL NOT NULL,
            PRIMARY KEY (chain_id, snapshotter)
        )""",
        """CREATE TABLE leases (
            id TEXT PRIMARY KEY,
            expires REAL,
            created REAL NOT NULL
        )""",
        """CREATE TABLE lease_content (
            lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
            digest TEXT NOT NULL,
            PRIMARY KEY (lease_id, digest)
        ) WITHOUT ROWID""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


@record(frozen=True)
class ImageRecord:
    name: str
    target: str  # digest of the manifest or index the name points to
    media_type: str
    size: int
    created: float
    updated: float
    labels: dict[str, str] = field(default_factory=dict)


@record(frozen=True)
class LayerRecord:
    digest: str  # the blob as distributed (compressed)
    media_type: str
    size: int | None
    diff_id: str  # digest of the uncompressed tar (config rootfs.diff_ids)
    chain_id: str  # image-spec config.md "Layer ChainID"


@record(frozen=True)
class ManifestRecord:
    digest: str
    config: str
    media_type: str | None
    platform: str | None
    layers: tuple[LayerRecord, ...]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    @property
    def chain_ids(self) -> list[str]:
        return [layer.chain_id for layer in self.layers]


@record(frozen=True)
class SnapshotRecord:
    chain_id: str
    key: str
    snapshotter: str
    created: float


# image-spec descriptor.md registered algorithms; keeps garbage out of the graph.
_DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")


def _check_digest(digest: object, what: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InvalidArgument(f"invalid {what} digest {str(digest)[:100]!r}", digest=digest)
    return digest


def _platform(value: object) -> str | None:
    """The platform as "os/arch[/variant]", from a string or an image-spec mapping."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, Mapping):
        parts = [value.get("os"), value.get("architecture"), value.get("variant")]
        return "/".join(str(p) for p in parts if p)
    raise InvalidArgument(f"invalid platform {value!r}: want 'os/arch[/variant]'")


def _layer_fields(layer: object) -> tuple[str, str, int | None]:
    """(digest, media type, size) from a tuple or a descriptor-like object."""
    if isinstance(layer, tuple | list):
        if len(layer) not in (2, 3):
            raise InvalidArgument(f"invalid layer {layer!r}: want (digest, media_type[, size])")
        digest, media_type = layer[0], layer[1]
        size = layer[2] if len(layer) == 3 else None
    elif isinstance(layer, Mapping):
        digest = layer.get("digest")
        media_type = layer.get("mediaType", layer.get("media_type"))
        size = layer.get("size")
    else:
        digest = getattr(layer, "digest", None)
        media_type = getattr(layer, "media_type", getattr(layer, "mediaType", None))
        size = getattr(layer, "size", None)
    if not isinstance(media_type, str) or not media_type:
        raise InvalidArgument(f"layer {digest} has no media type")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise InvalidArgument(f"layer {digest} has an invalid size {size!r}")
    return _check_digest(digest, "layer"), media_type, size


class MetadataStore(SqliteStore):
    """The metadata database at `path`, created and migrated on open.

    One connection per store object; use it from one thread. Many processes may open the
    same file at once. `timeout` is how long a write waits for another process's write
    lock before raising Unavailable.
    """

    configure = staticmethod(no_checkpoint_on_close)

    what = "metadata database"

    def __init__(
        self,
        path: str,
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        super().__init__(path, timeout=timeout, clock=clock, migrations=migrations,
                         foreign_keys=True)

    # -- images --------------------------------------------------------------------------

    def put_image(
        self,
        name: str,
        target: str,
        media_type: str,
        size: int,
        labels: Mapping[str, str] | None = None,
    ) -> ImageRecord:
        """Create or repoint the image `name` (keeps its creation time)."""
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"invalid image name {name!r}")
        if not isinstance(media_type, str) or not media_type:
            raise InvalidArgument(f"image {name}: invalid media type {media_type!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(f"image {name}: invalid size {size!r}")
        _check_digest(target, "image target")
        now = self._clock()
        labels_json = fastjson.dumps_sorted(dict(labels or {}))
        with self.transaction():
            self._execute(
                "INSERT INTO images (name, target, media_type, size, created, updated, labels) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "target = excluded.target, media_type = excluded.media_type, "
                "size = excluded.size, updated = excluded.updated, labels = excluded.labels",
                (name, target, media_type, size, now, now, labels_json),
            )
            return self.get_image(name)

    def get_image(self, name: str) -> ImageRecord:
        row = self._execute(
            "SELECT name, target, media_type, size, created, updated, labels "
            "FROM images WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no such image: {name}", image=name)
        return _image(row)

    def list_images(self) -> list[ImageRecord]:
        rows = self._execute(
            "SELECT name, target, media_type, size, created, updated, labels "
            "FROM images ORDER BY name"
        ).fetchall()
        return [_image(row) for row in rows]

    def delete_image(self, name: str) -> ImageRecord:
        """Remove the name (its content stays until collected); returns what it was."""
        with self.transaction():
            record = self.get_image(name)
            self._execute("DELETE FROM images WHERE name = ?", (name,))
            return record

    def tag(self, src_name: str, dst_name: str) -> ImageRecord:
        """Point `dst_name` at what `src_name` points to (replacing any old dst)."""
        with self.transaction():
            src = self.get_image(src_name)
            return self.put_image(dst_name, src.target, src.media_type, src.size, src.labels)

    def images_using(self, digest: str) -> list[str]:
        """Names of the images whose content graph contains `digest`."""
        rows = self._execute(
            "WITH RECURSIVE up(d) AS (SELECT ? UNION SELECT refs.parent FROM refs "
            "JOIN up ON refs.child = up.d) "
            "SELECT name FROM images WHERE target IN (SELECT d FROM up) ORDER BY name",
            (digest,),
        ).fetchall()
        return [row[0] for row in rows]

    # -- manifests and the content graph -------------------------------------------------

    def add_refs(self, parent: str, children: Sequence[str]) -> None:
        """Record that `parent` references `children` (any blob kind)."""
        _check_digest(parent, "parent")
        with self.transaction():
            for child in children:
                self._execute(
                    "INSERT OR IGNORE INTO refs (parent, child) VALUES (?, ?)",
                    (parent, _check_digest(child, "child")),
                )

    def record_index(self, index_digest: str, manifests: Sequence[tuple[str, object]]) -> None:
        """An image index and its (manifest digest, platform) entries, in order."""
        _check_digest(index_digest, "index")
        entries = [(_check_digest(d, "manifest"), _platform(p)) for d, p in manifests]
        with self.transaction():
            self._execute("DELETE FROM index_manifests WHERE index_digest = ?", (index_digest,))
            for position, (digest, platform) in enumerate(entries):
                self._execute(
                    "INSERT INTO index_manifests VALUES (?, ?, ?, ?)",
                    (index_digest, position, digest, platform),
                )
            self.add_refs(index_digest, [d for d, _ in entries])

    def record_manifest(
        self,
        manifest_digest: str,
        config_digest: str,
        layers: Sequence[object],
        diff_ids: Sequence[str],
        platform: object = None,
        *,
        media_type: str | None = None,
    ) -> ManifestRecord:
        """A manifest, its config and ordered layers. `layers` items are (digest,
        media_type[, size]) tuples, mappings or descriptor objects; `diff_ids` come from
        the config's rootfs and must pair up with the layers. Idempotent."""
        _check_digest(manifest_digest, "manifest")
        _check_digest(config_digest, "config")
        fields = [_layer_fields(layer) for layer in layers]
        if len(fields) != len(diff_ids):
            raise InvalidArgument(
                f"manifest {manifest_digest} has {len(fields)} layers but its config "
                f"lists {len(diff_ids)} diff_ids"
            )
        diffs = [_check_digest(d, "diff_id") for d in diff_ids]
        chains = chain_ids(diffs)
        with self.transaction():
            self._execute("DELETE FROM manifests WHERE digest = ?", (manifest_digest,))
            self._execute(
                "INSERT INTO manifests (digest, config, media_type, platform, recorded) "
                "VALUES (?, ?, ?, ?, ?)",
                (manifest_digest, config_digest, media_type, _platform(platform), self._clock()),
            )
            for position, ((digest, mtype, size), diff_id, chain_id) in enumerate(
                zip(fields, diffs, chains, strict=True)
            ):
                self._execute(
                    "INSERT INTO manifest_layers VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (manifest_digest, position, digest, mtype, size, diff_id, chain_id),
                )
            self.add_refs(manifest_digest, [config_digest, *(f[0] for f in fields)])
            return self.get_manifest(manifest_digest)

    def get_manifest(self, digest: str) -> ManifestRecord:
        with self._read():
            row = self._execute(
                "SELECT digest, config, media_type, platform FROM manifests WHERE digest = ?",
                (digest,),
            ).fetchone()
            if row is None:
                raise NotFound(f"manifest {digest} is not recorded", digest=digest)
            layers = self._execute(
                "SELECT digest, media_type, size, diff_id, chain_id FROM manifest_layers "
                "WHERE manifest_digest = ? ORDER BY position",
                (digest,),
            ).fetchall()
        return ManifestRecord(
            row[0], row[1], row[2], row[3], tuple(LayerRecord(*r) for r in layers)
        )

    def index_manifests(self, index_digest: str) -> list[tuple[str, str | None]]:
        """(manifest digest, platform) entries of a recorded index, in order."""
        rows = self._execute(
            "SELECT manifest_digest, platform FROM index_manifests WHERE index_digest = ? "
            "ORDER BY position",
            (index_digest,),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def platforms(self, name: str) -> list[str]:
        """The platforms image `name` has locally (recorded manifests only)."""
        with self._read():
            target = self.get_image(name).target
            rows = self._execute(
                "SELECT platform FROM manifests WHERE digest = ? UNION "
                "SELECT COALESCE(m.platform, i.platform) FROM index_manifests i "
                "JOIN manifests m ON m.digest = i.manifest_digest WHERE i.index_digest = ?",
                (target, target),
            ).fetchall()
        return sorted({row[0] for row in rows if row[0]})

    def resolve_manifest(self, name: str, platform: object = None) -> ManifestRecord:
        """The recorded manifest image `name` means on `platform` ("os/arch[/variant]"):
        its target itself, or the matching entry of its index (the only recorded one when
        no platform is given)."""
        want = _platform(platform)
        with self._read():
            image = self.get_image(name)
            try:
                manifest = self.get_manifest(image.target)
            except NotFound:
                manifest = None
            if manifest is not None:
                if want is None or manifest.platform in (None, want):
                    return manifest
                raise NotFound(f"image {name} has no manifest for platform {want}", image=name)
            recorded = [
                (digest, p)
                for digest, p in self.index_manifests(image.target)
                if self._execute("SELECT 1 FROM manifests WHERE digest = ?", (digest,)).fetchone()
            ]
            matches = [d for d, p in recorded if want is None or p == want]
            if want is None and len(matches) > 1:
                raise InvalidArgument(
                    f"image {name} has manifests for several platforms; name one",
                    image=name,
                )
            if not matches:
                what = f" for platform {want}" if want else ""
                raise NotFound(f"image {name} has no recorded manifest{what}", image=name)
            return self.get_manifest(matches[0])

    # -- leases --------------------------------------------------------------------------

    def add_lease(self, lease_id: str, digests: Sequence[str], expires: float | None) -> None:
        """Protect `digests` from GC until `remove_lease` or the absolute time `expires`
        (None: no expiry). Adding to an existing lease extends its set and expiry."""
        checked = [_check_digest(d, "leased") for d in digests]
        with self.transaction():
            self._execute(
                "INSERT INTO leases (id, expires, created) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET expires = excluded.expires",
                (lease_id, expires, self._clock()),
            )
            for digest in checked:
                self._execute(
                    "INSERT OR IGNORE INTO lease_content (lease_id, digest) VALUES (?, ?)",
                    (lease_id, digest),
                )

    def remove_lease(self, lease_id: str) -> bool:
        with self.transaction():
            return self._execute("DELETE FROM leases WHERE id = ?", (lease_id,)).rowcount > 0

    def expire_leases(self) -> int:
        """Drop leases whose time is up; returns how many."""
        with self.transaction():
            return self._execute(
                "DELETE FROM leases WHERE expires IS NOT NULL AND expires <= ?", (self._clock(),)
            ).rowcount

    # -- GC ------------------------------------------------------------------------------

    def gc_roots(self) -> set[str]:
        """Every digest still referenced: image targets and unexpired leases, and all
        that is reachable from them through recorded references."""
        rows = self._execute(
            "WITH RECURSIVE live(d) AS ("
            "  SELECT target FROM images"
            "  UNION SELECT c.digest FROM lease_content c JOIN leases l ON l.id = c.lease_id"
            "        WHERE l.expires IS NULL OR l.expires > ?"
            "  UNION SELECT refs.child FROM refs JOIN live ON refs.parent = live.d"
            ") SELECT d FROM live",
            (self._clock(),),
        ).fetchall()
        return {row[0] for row in rows}

    def forget_unreferenced(self, live: set[str] | None = None) -> int:
        """Drop metadata (manifests, index entries, references) of content no root
        reaches, and expired leases. Returns how many manifests and indexes went."""
        with self.transaction():
            self.expire_leases()
            live = self.gc_roots() if live is None else live
            parents = {r[0] for r in self._execute("SELECT DISTINCT parent FROM refs")}
            parents |= {r[0] for r in self._execute("SELECT digest FROM manifests")}
            parents |= {r[0] for r in self._execute("SELECT index_digest FROM index_manifests")}
            gone = 0
            for parent in sorted(parents - live):
                self._execute("DELETE FROM refs WHERE parent = ?", (parent,))
                indexes = self._execute(
                    "DELETE FROM index_manifests WHERE index_digest = ?", (parent,)
                ).rowcount
                # manifest_layers rows go with their manifest (ON DELETE CASCADE).
                manifests = self._execute("DELETE FROM manifests WHERE digest = ?", (parent,))
                gone += 1 if indexes or manifests.rowcount else 0
            return gone

    # -- snapshots -----------------------------------------------------------------------

    def record_snapshot(self, chain_id: str, key: str, snapshotter: str) -> SnapshotRecord:
        """The committed snapshot `key` of `snapshotter` holds the layers up to `chain_id`."""
        _check_digest(chain_id, "chain_id")
        now = self._clock()
        with self.transaction():
            self._execute(
                "INSERT INTO snapshots (chain_id, snapshotter, key, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(chain_id, snapshotter) DO UPDATE SET key = excluded.key, "
                "created = excluded.created",
                (chain_id, snapshotter, key, now),
            )
        return SnapshotRecord(chain_id, key, snapshotter, now)

    def snapshot_for(self, chain_id: str, snapshotter: str | None = None) -> SnapshotRecord | None:
        """The snapshot for `chain_id` (of `snapshotter`, or of any), None if unpacked nowhere."""
        sql = "SELECT chain_id, key, snapshotter, created FROM snapshots WHERE chain_id = ?"
        params: list[str] = [chain_id]
        if snapshotter is not None:
            sql += " AND snapshotter = ?"
            params.append(snapshotter)
        row = self._execute(sql + " ORDER BY created, snapshotter LIMIT 1", params).fetchone()
        return SnapshotRecord(*row) if row else None

    def remove_snapshot(self, chain_id: str, snapshotter: str | None = None) -> int:
        sql = "DELETE FROM snapshots WHERE chain_id = ?"
        params: list[str] = [chain_id]
        if snapshotter is not None:
            sql += " AND snapshotter = ?"
            params.append(snapshotter)
        with self.transaction():
            return self._execute(sql, params).rowcount

    def unused_snapshots(self, snapshotter: str | None = None) -> list[SnapshotRecord]:
        """Snapshots whose chain no live manifest has (candidates for removal)."""
        with self._read():
            live = self.gc_roots()
            rows = self._execute("SELECT manifest_digest, chain_id FROM manifest_layers")
            used = {chain_id for manifest, chain_id in rows if manifest in live}
            rows = self._execute(
                "SELECT chain_id, key, snapshotter, created FROM snapshots ORDER BY created"
            ).fetchall()
        return [
            SnapshotRecord(*row)
            for row in rows
            if row[0] not in used and (snapshotter is None or row[2] == snapshotter)
        ]


def _image(row: Sequence[Any]) -> ImageRecord:
    return ImageRecord(row[0], row[1], row[2], row[3], row[4], row[5], fastjson.loads(row[6]))
