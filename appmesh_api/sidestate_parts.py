"""What a side-service snapshot leaves out or keeps beside it (``sidestate``'s helpers).

Two things made every save of a busy account slow, because a snapshot is a whole backend:

- moto's EC2 backend makes about 1,200 default AMIs, each with a snapshot and a volume,
  when it is created: 95 % of an EC2 snapshot's bytes and of its pickling time. An
  image still as moto made it is saved as its id and the few values moto draws anew each
  time (creation times, the snapshot's and volume's random ids); on load a fresh backend
  makes the defaults again and those values are put back. An image that differs in
  anything else (a changed attribute, say) is saved whole, as before.
- S3 objects' bytes: each is written once to ``s3-objects/<blake2b>`` (temporary file,
  fsync, rename) and the snapshot holds its digest, so a later write of that account does
  not write the bytes again. ``SideState`` deletes a file no snapshot refers to any more.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import pickle
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOB_FOLDER = "s3-objects"
#: Values moto draws anew each time it makes its default images (now, random ids).
_DRAWN = frozenset(("creation_date", "start_time", "create_time", "id"))
_BACK_REFERENCES = frozenset(("ec2_backend",))
_DEPTH = 3  # image -> snapshot -> volume -> zone


# -- EC2's default images -----------------------------------------------------------------


def _alike(live: Any, made: Any, path: tuple[str, ...], drawn: list[Any]) -> bool:
    """Whether ``live`` is what moto made (``made``), but for the values it draws anew,
    which are collected into ``drawn`` as (attribute path, value)."""
    mine, theirs = vars(live), vars(made)
    if mine.keys() != theirs.keys():
        return False
    for key, value in mine.items():
        if key in _BACK_REFERENCES:
            continue
        if key in _DRAWN and (path or key != "id"):
            drawn.append(((*path, key), value))
            continue
        other = theirs[key]
        if hasattr(value, "__dict__") and type(value) is type(other):
            if len(path) >= _DEPTH or not _alike(value, other, (*path, key), drawn):
                return False
        elif value is not other and value != other:
            return False
    return True


DEFAULTS_FOLDER = "ec2-defaults"
_CONTAINERS = (list, set, dict, tuple)


def _expected(model: Any) -> dict[str, Any]:
    """A copy of a model's attributes to compare it with later (C-level ``==``): its
    containers copied deeply (moto changes them in place), other values as they are."""
    return {
        k: copy.deepcopy(v) if isinstance(v, _CONTAINERS) else v for k, v in vars(model).items()
    }


@dataclass
class _Known:
    """One live backend's default images as first seen unchanged, and their drawn values."""

    backend: Any
    images: dict[str, tuple[Any, ...]]  # id -> (image, its attributes, snapshot, ..., volume, ...)
    table: str  # the digest of the file holding the drawn values
    everything: list[Any] = field(default_factory=list)  # every image, snapshot and volume
    expected: list[dict[str, Any]] = field(default_factory=list)  # and their attributes
    unchanged: dict[int, Any] = field(default_factory=dict)  # the reductions if none changed

    def __post_init__(self) -> None:
        for image, attrs, *inner in self.images.values():
            self.everything.append(image)
            self.expected.append(attrs)
            for model, model_attrs in zip(inner[::2], inner[1::2], strict=True):
                if model is not None:
                    self.everything.append(model)
                    self.expected.append(model_attrs)

    def none_changed(self, amis: dict[str, Any]) -> bool:
        """One C-level comparison of everything (the common case: a save that did not
        touch moto's images)."""
        ids, images = list(self.images), [each[0] for each in self.images.values()]
        if list(map(amis.get, ids)) != images:
            return False
        return list(map(vars, self.everything)) == self.expected


class Ec2Defaults:
    """Finds, in a live EC2 backend, the default images moto made and nobody changed.

    The first save of a backend compares each image with a fresh backend's (slow: tens of
    milliseconds) and writes the values moto drew to ``ec2-defaults/<digest>`` once; a
    later save compares all images' attributes with what they were then in one go, and
    image by image only when one of them changed.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._known: dict[tuple[str, str], _Known] = {}

    def _learn(self, backend: Any) -> _Known:
        made = type(backend)(region_name=backend.region_name, account_id=backend.account_id)
        images: dict[str, tuple[Any, ...]] = {}
        table: dict[str, tuple[Any, ...]] = {}
        for image_id, image in backend.amis.items():
            model = made.amis.get(image_id)
            drawn: list[Any] = []
            if model is None or not _alike(image, model, (), drawn):
                continue
            table[image_id] = tuple(drawn)
            parts: list[Any] = [image, _expected(image)]
            for inner in (getattr(image, "ebs_snapshot", None), _volume_of(image)):
                parts += [inner, None if inner is None else _expected(inner)]
            images[image_id] = tuple(parts)
        data = pickle.dumps(table, protocol=pickle.HIGHEST_PROTOCOL)
        digest = hashlib.blake2b(data, digest_size=20).hexdigest()
        if not (self.folder / digest).is_file():
            write_atomically(self.folder / digest, data)
        return _Known(backend, images, digest)

    def known(self, backend: Any) -> _Known:
        key = (backend.account_id, backend.region_name)
        if key not in self._known or self._known[key].backend is not backend:
            self._known[key] = self._learn(backend)
        return self._known[key]

    def reductions(self, backend: Any) -> tuple[dict[int, Any], str]:
        """``id(object)`` -> its reduction, for each unchanged default image and snapshot;
        and the digest of the drawn values' file."""
        known = self.known(backend)
        if not known.none_changed(backend.amis):
            return self._compare(backend, known), known.table
        if not known.unchanged:
            known.unchanged = self._compare(backend, known)
        return known.unchanged, known.table

    @staticmethod
    def _compare(backend: Any, known: _Known) -> dict[int, Any]:
        found: dict[int, Any] = {}
        amis = backend.amis
        for image_id, (image, attrs, snap, snap_attrs, vol, vol_attrs) in known.images.items():
            if amis.get(image_id) is not image or vars(image) != attrs:
                continue
            if snap is not None and (image.ebs_snapshot is not snap or vars(snap) != snap_attrs):
                continue
            if vol is not None and vars(vol) != vol_attrs:
                continue
            args = (backend.account_id, backend.region_name, image_id)
            found[id(image)] = (_default_image, args)
            if snap is not None:
                found[id(snap)] = (_default_image_snapshot, args)
        return found


def _volume_of(image: Any) -> Any:
    return getattr(getattr(image, "ebs_snapshot", None), "volume", None)


#: Fresh EC2 backends being loaded, by (account, region): their defaults fill the pickle.
_LOADING: dict[tuple[str, str], Any] = {}
_tables_in: list[Path] = []


def fresh_backend(cls: type, region: str, account: str, table: str) -> Any:
    """The root of an EC2 snapshot: a new backend, with moto's defaults given back the
    values drawn for them before, to load into."""
    made = cls(region_name=region, account_id=account)
    drawn = pickle.loads((_tables_in[-1] / table).read_bytes())
    for image_id, values in drawn.items():
        image = made.amis.get(image_id)
        if image is None:
            continue
        for path, value in values:
            holder = image
            for step in path[:-1]:
                holder = getattr(holder, step)
            setattr(holder, path[-1], value)
    _LOADING[(account, region)] = made
    return made


@contextlib.contextmanager
def loading_from(folder: Path) -> Iterator[None]:
    _tables_in.append(folder)
    try:
        yield
    finally:
        _tables_in.remove(folder)


def _default_image(account: str, region: str, image_id: str) -> Any:
    return _LOADING[(account, region)].amis[image_id]


def _default_image_snapshot(account: str, region: str, image_id: str) -> Any:
    return _default_image(account, region, image_id).ebs_snapshot


def loaded(account: str, region: str) -> None:
    """A snapshot is loaded: its fresh backend is the live one now."""
    _LOADING.pop((account, region), None)


# -- S3 object bytes ----------------------------------------------------------------------


_DIGEST = "_appmesh_blob"  # on a moto FakeKey: the digest of its bytes, once known
_patched = threading.Lock()
_loading_into: list[Blobs] = []


def _watch_values() -> None:
    """Forget a key's digest when moto sets its bytes (its setter reuses the buffer)."""
    from moto.s3.models import FakeKey

    with _patched:
        prop: Any = FakeKey.__dict__["value"]
        if getattr(prop.fset, "forgets_digest", False):
            return

        def setter(key: Any, value: Any, _set: Any = prop.fset) -> None:
            key.__dict__.pop(_DIGEST, None)
            _set(key, value)

        setter.forgets_digest = True  # type: ignore[attr-defined]
        FakeKey.value = property(prop.fget, setter)  # type: ignore[method-assign,assignment,unused-ignore]


class Blobs:
    """S3 object bytes by content under ``folder``, written once each."""

    def __init__(self, folder: Path) -> None:
        from moto.s3.models import FakeKey

        _watch_values()
        self.folder = folder
        self.key_type = FakeKey
        self.on_disk: set[str] = set()

    def path(self, digest: str) -> Path:
        return self.folder / digest

    def scan(self) -> None:
        self.on_disk = {p.name for p in self.folder.glob("*")} if self.folder.is_dir() else set()

    def reduce(self, key: Any, refs: set[str]) -> Any:
        """A FakeKey without its bytes: the digest of a file holding them instead."""
        digest = key.__dict__.get(_DIGEST) or self._store(key)
        refs.add(digest)
        state = {k: v for k, v in vars(key).items() if k not in ("_value_buffer", "lock")}
        state[_DIGEST] = digest
        return _new_key, (type(key),), state, None, None, _fill_key

    def _store(self, key: Any) -> str:
        try:
            data = key.value
        except ValueError:  # a disposed key's buffer is closed; moto pickles it as empty
            data = b""
        digest = hashlib.blake2b(data, digest_size=20).hexdigest()
        if digest not in self.on_disk and not self.path(digest).is_file():
            write_atomically(self.path(digest), data)
        self.on_disk.add(digest)
        key.__dict__[_DIGEST] = digest
        return digest

    def collect(self, referenced: set[str]) -> None:
        """Delete the files no snapshot refers to."""
        for digest in sorted(self.on_disk - referenced):
            self.path(digest).unlink(missing_ok=True)
            self.on_disk.discard(digest)

    @contextlib.contextmanager
    def loading(self, refs: set[str]) -> Iterator[None]:
        self.refs = refs
        _loading_into.append(self)
        try:
            yield
        finally:
            _loading_into.remove(self)


def _new_key(cls: type) -> Any:
    return object.__new__(cls)


def _fill_key(key: Any, state: dict[str, Any]) -> None:
    blobs = _loading_into[-1]
    digest = state[_DIGEST]
    blobs.refs.add(digest)
    key.__setstate__({**state, "value": blobs.path(digest).read_bytes()})
    key.__dict__[_DIGEST] = digest  # the setter forgot it; the bytes are the file's


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    with scratch.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(scratch, path)
