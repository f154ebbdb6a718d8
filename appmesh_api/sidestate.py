"""The embedded moto's state (Cloud Map, ACM, ACM PCA, SSM, CloudWatch, ...) in the data dir.

moto keeps every side service in memory. With a data directory, each of its backends (one
per service, account and region) is pickled to ``<data-dir>/moto/<service>/<account>/
<region>.pickle`` after every write to that service, *before* the response leaves: the
edge buffers the response of a write, this module saves, and only then is it sent, so an
acknowledged write survives ``kill -9``. A file is replaced atomically (temporary file,
fsync, rename) and only when its bytes changed. Reads (``Describe*``, ``List*``,
``Get*``... and REST ``GET``/``HEAD``) save nothing. Everything saved comes back when
``serve`` starts.

A write to CloudFormation saves every service of the account (a stack writes to many),
and each resource step of a stack saves that resource's service before the stack itself
is saved (``cloudformation.persistence``), so a stack never names a moto resource that
its service's snapshot lacks.

What moto holds that pickle refuses is reduced to what rebuilds it: locks come back
unlocked, cryptography keys and certificates as DER, ``defaultdict`` factories that are
lambdas as an equivalent picklable factory, and references to another service's backend
as a reference to that live backend. A service that still does not pickle (a running
thread, say) is named once in the log and stays in memory only. moto's unchanged default
EC2 images and S3 object bytes stay out of the pickles (``sidestate_parts``), so a save
costs what the account made, not what moto holds.

Loading a pickle runs code: the data directory is trusted as the user's own.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import pickle
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appmesh_api import sidestate_parts as parts

log = logging.getLogger("appmesh_local.side_services")

FOLDER = "moto"
_SUFFIX = ".pickle"
#: Operation names that only read, on every protocol that names its operations.
_READ_PREFIXES = (
    "Describe", "List", "Get", "BatchGet", "Discover", "Search", "Query", "Scan", "Lookup",
    "Head", "Select", "Simulate", "Check", "Validate", "Estimate", "Preview",
)  # fmt: skip
_READ_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
#: moto serves some services from another's app: ELB's app answers ELBv2 too.
_SERVED_TOGETHER = {"elb": ("elb", "elbv2")}
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))
#: Services whose state is kept another way (or not at all), with why.
NOT_SAVED = {
    "cloudformation": "stacks are saved by appmesh-local's CloudFormation layer",
    "moto_api": "moto's own admin API",
}


def is_write(method: str, operation: str) -> bool:
    """Whether a side-service request may change state (unknown: yes, to be safe).

    ``operation`` is the edge's name for it: the operation for awsJson, awsQuery and CBOR,
    ``"METHOD /path"`` for REST protocols, whose reads are GET and HEAD.
    """
    if operation.startswith(f"{method} "):
        return method not in _READ_METHODS
    return not operation.startswith(_READ_PREFIXES)


# -- pickling what moto holds -------------------------------------------------------------


def _backend_dicts() -> list[Any]:
    """Every BackendDict moto has instantiated (a service used at least once)."""
    from moto.core.base_backend import BackendDict

    instances = BackendDict._instances  # type: ignore[misc]  # a class-level list in moto
    unique = {id(found): found for found in instances}
    return list(unique.values())


_SERVICES: dict[type, str] = {}


def _service_of(backend_class: type) -> str | None:
    """The service whose BackendDict holds backends of this class (once one exists)."""
    if backend_class not in _SERVICES:
        for backend_dict in _backend_dicts():
            if issubclass(backend_class, backend_dict.backend):
                _SERVICES[backend_class] = str(backend_dict.service_name)
    return _SERVICES.get(backend_class)


def service_of_model(model: type) -> str | None:
    """The service whose backend a CloudFormation model's resources live in.

    A model may say (``moto_service``); else the first moto package in its classes names
    it (appmesh-local's subclasses of moto's EC2 models are EC2's).
    """
    named = getattr(model, "moto_service", None)
    if named:
        return str(named)
    for cls in model.__mro__:
        parts = cls.__module__.split(".")
        if parts[0] != "moto" or len(parts) < 2 or parts[1] in ("core", "cloudformation"):
            continue
        for backend_dict in _backend_dicts():
            if backend_dict.backend.__module__.startswith(f"moto.{parts[1]}."):
                return str(backend_dict.service_name)
    return None


def _live_backend(service: str, account: str, region: str) -> Any:
    """The backend another pickle referred to: restored first if it was saved too."""
    loader = _Loading.current
    if loader is not None:
        loader.ensure(service, account, region)
    from moto.backends import get_backend

    return get_backend(service)[account][region]  # type: ignore[call-overload]


def bucket_owners(names: Iterable[str]) -> tuple[str, ...]:
    """The accounts owning these S3 buckets: moto finds a bucket by its global name, so a
    write signed by one account may land in another's bucket."""
    owners = getattr(_live_backend_dict("s3"), "bucket_accounts", {})
    return tuple(sorted({owners[name][1] for name in names if name in owners}))


def _live_backend_dict(service: str) -> Any:
    from moto.backends import get_backend

    return get_backend(service)  # type: ignore[call-overload]


def _private_key(der: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_der_private_key(der, password=None)


def _public_key(der: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_der_public_key(der)


def _factory_of(sample: Any) -> Callable[[], Any]:
    """A picklable factory making what a lambda factory made (an empty container)."""
    if isinstance(sample, defaultdict):
        inner = sample.default_factory
        return functools.partial(defaultdict, _picklable_factory(inner) if inner else None)
    if type(sample) in (dict, list, set, int, float, str, tuple) and sample == type(sample)():
        return type(sample)
    raise pickle.PicklingError(f"cannot rebuild a defaultdict factory making {sample!r}")


def _picklable_factory(factory: Callable[[], Any]) -> Callable[[], Any]:
    if getattr(factory, "__name__", "") != "<lambda>":
        return factory
    return _factory_of(factory())


def _new_defaultdict(cls: type[defaultdict], factory: Any) -> defaultdict:
    """An empty ``defaultdict`` (or subclass, whose ``__init__`` may want other arguments)."""
    made = cls.__new__(cls)
    defaultdict.__init__(made, factory)
    return made


def _certificate(der: bytes) -> Any:
    from cryptography import x509

    return x509.load_der_x509_certificate(der)


def _csr(der: bytes) -> Any:
    from cryptography import x509

    return x509.load_der_x509_csr(der)


def _reduce_lock(obj: Any) -> Any:
    return (threading.RLock if "RLock" in type(obj).__name__ else threading.Lock), ()


def _reduce_defaultdict(obj: Any) -> Any:
    factory = obj.default_factory
    factory = _picklable_factory(factory) if factory is not None else None
    state = getattr(obj, "__dict__", None) or None
    return _new_defaultdict, (type(obj), factory), state, None, iter(obj.items())


def _reduce_certificate(obj: Any) -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return _certificate, (obj.public_bytes(Encoding.DER),)


def _reduce_csr(obj: Any) -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return _csr, (obj.public_bytes(Encoding.DER),)


def _reduce_private_key(obj: Any) -> Any:
    from cryptography.hazmat.primitives import serialization as s

    der = obj.private_bytes(s.Encoding.DER, s.PrivateFormat.PKCS8, s.NoEncryption())
    return _private_key, (der,)


def _reduce_public_key(obj: Any) -> Any:
    from cryptography.hazmat.primitives import serialization as s

    return _public_key, (obj.public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo),)


def _reduce_backend_dict(obj: Any) -> Any:
    return _live_backend_dict, (obj.service_name,)


def _reduce_account_backend(obj: Any) -> Any:
    return _live_account_backend, (obj.service_name, obj.account_id)


def _live_account_backend(service: str, account: str) -> Any:
    return _live_backend_dict(service)[account]


_Reducer = Callable[[Any], Any]


_REDUCERS: dict[type, _Reducer | None] = {}
_BACKEND_TYPES: dict[type, bool] = {}


def _reducer_for(cls: type) -> _Reducer | None:
    if cls not in _REDUCERS:
        _REDUCERS[cls] = _choose_reducer(cls)
    return _REDUCERS[cls]


def _choose_reducer(cls: type) -> _Reducer | None:
    """How to pickle instances of ``cls`` when pickle's own way fails (None: its own way).

    Decided once per type: the pickler asks for every object, and moto's EC2 alone holds
    tens of thousands.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import (
        dh,
        dsa,
        ec,
        ed448,
        ed25519,
        rsa,
        x448,
        x25519,
    )
    from moto.core.base_backend import AccountSpecificBackend, BackendDict

    private = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, dsa.DSAPrivateKey, dh.DHPrivateKey,
               ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey, x25519.X25519PrivateKey,
               x448.X448PrivateKey)  # fmt: skip
    public = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, dsa.DSAPublicKey, dh.DHPublicKey,
              ed25519.Ed25519PublicKey, ed448.Ed448PublicKey, x25519.X25519PublicKey,
              x448.X448PublicKey)  # fmt: skip
    choices: list[tuple[Any, _Reducer]] = [
        (_LOCK_TYPES, _reduce_lock),
        (BackendDict, _reduce_backend_dict),
        (AccountSpecificBackend, _reduce_account_backend),
        (defaultdict, _reduce_defaultdict),
        (x509.Certificate, _reduce_certificate),
        (x509.CertificateSigningRequest, _reduce_csr),
        (private, _reduce_private_key),
        (public, _reduce_public_key),
    ]
    for kinds, reducer in choices:
        if issubclass(cls, kinds):
            return reducer
    return None


def _is_backend(cls: type) -> bool:
    if cls not in _BACKEND_TYPES:
        from moto.core.base_backend import BaseBackend

        _BACKEND_TYPES[cls] = issubclass(cls, BaseBackend)
    return _BACKEND_TYPES[cls]


class _Pickler(pickle.Pickler):
    """pickle with reductions for what moto's models hold and pickle refuses.

    With a ``snapshot`` (saving a backend to the data dir), moto's default EC2 images are
    left out and S3 object bytes are written beside, as ``snapshot`` decides.
    """

    def __init__(self, stream: io.BytesIO, root: Any, snapshot: _Snapshot | None = None) -> None:
        super().__init__(stream, protocol=pickle.HIGHEST_PROTOCOL)
        self.root = root
        self.snapshot = snapshot

    def reducer_override(self, obj: Any) -> Any:
        if self.snapshot is not None:
            special = self.snapshot.reduce(obj)
            if special is not None:
                return special
        cls = type(obj)
        if _is_backend(cls):
            if obj is self.root:
                return NotImplemented
            service = _service_of(cls)
            if service is None:
                raise pickle.PicklingError(f"no moto service holds {cls.__name__}")
            return _live_backend, (service, obj.account_id, obj.region_name)
        reducer = _reducer_for(cls)
        return NotImplemented if reducer is None else reducer(obj)


class _Snapshot:
    """What one save of a backend to the data dir pickles differently (``sidestate_parts``)."""

    def __init__(
        self, root: Any, special: dict[int, Any], table: str, blobs: parts.Blobs | None
    ) -> None:
        self.root = root
        self.special = special
        self.table = table
        self.blobs = blobs
        self.refs: set[str] = set()  # the S3 object files this snapshot refers to

    def reduce(self, obj: Any) -> Any:
        found = self.special.get(id(obj))
        if found is not None:
            return found
        if obj is self.root and self.special:  # EC2: load into a fresh backend's defaults
            args = (type(obj), obj.region_name, obj.account_id, self.table)
            return parts.fresh_backend, args, vars(obj)
        if self.blobs is not None and type(obj) is self.blobs.key_type:
            return self.blobs.reduce(obj, self.refs)
        return None


def dumps(obj: Any, root: Any = None, snapshot: _Snapshot | None = None) -> bytes:
    """Pickle ``obj`` (a backend, or a resource of one) with moto's reductions."""
    stream = io.BytesIO()
    _Pickler(stream, root, snapshot).dump(obj)
    return stream.getvalue()


def loads(data: bytes) -> Any:
    return pickle.loads(data)


# -- the snapshots ------------------------------------------------------------------------


@dataclass(frozen=True)
class Touched:
    """What one write may have changed: these services' backends of one account."""

    services: tuple[str, ...]
    account: str | None  # None: not known (an unsigned write): every account
    region: str
    regions_before: dict[str, frozenset[str]]
    also: tuple[str, ...] = ()  # other accounts the write reaches (an S3 bucket's owner)


@dataclass
class _Measure:
    writes: int = 0
    seconds: float = 0.0
    largest: int = 0


class SideState:
    """Saves and restores the embedded moto's backends under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._digests: dict[tuple[str, str, str], bytes] = {}
        self._locks: dict[str, threading.RLock] = defaultdict(threading.RLock)
        self._guard = threading.Lock()
        self._refused: set[str] = set()
        self.restored: set[tuple[str, str]] = set()  # (service, account) that came back
        self.measure = _Measure()
        self.ready = threading.Event()  # set once ``restore`` is done: requests wait for it
        self._defaults = parts.Ec2Defaults(self.folder / parts.DEFAULTS_FOLDER)
        self._blobs: parts.Blobs | None = None
        self._blob_refs: dict[tuple[str, str, str], set[str]] = {}

    def blobs(self) -> parts.Blobs:
        if self._blobs is None:
            self._blobs = parts.Blobs(self.folder / parts.BLOB_FOLDER)
            self._blobs.scan()
        return self._blobs

    # paths
    def path(self, service: str, account: str, region: str) -> Path:
        return self.folder / service / account / f"{region}{_SUFFIX}"

    def lock(self, service: str) -> threading.RLock:
        with self._guard:
            return self._locks[service]

    # saving
    def before(self, backend_name: str, account: str | None, region: str) -> Touched:
        """Note which region backends exist before a write (it may create one)."""
        if backend_name in NOT_SAVED:
            return Touched((), account, region, {})
        names = _SERVED_TOGETHER.get(backend_name, (backend_name,))
        services = tuple(str(_live_backend_dict(name).service_name) for name in names)
        return Touched(services, account, region, {s: self._regions(s, account) for s in services})

    @staticmethod
    def _regions(service: str, account: str | None) -> frozenset[str]:
        backend_dict = _live_backend_dict(service)
        accounts = backend_dict.values() if account is None else [dict.get(backend_dict, account)]
        return frozenset(name for each in accounts if each for name in each)

    @contextlib.contextmanager
    def writing(self, touched: Touched) -> Iterator[None]:
        """Run one write, then save what it touched (one write per service at a time)."""
        with contextlib.ExitStack() as held:
            for service in touched.services:
                held.enter_context(self.lock(service))
            yield
            for service in touched.services:
                before = touched.regions_before[service]
                self.save_service(service, touched.account, touched.region, before)
                for other in sorted(set(touched.also) - {touched.account or ""}):
                    self.save_service(service, other, touched.region, before)

    def save_service(
        self,
        service: str,
        account: str | None,
        region: str | None,
        before: frozenset[str] | None = None,
    ) -> None:
        """Save the region backends of ``service`` a write in ``region`` may have changed:
        that region's, any the write created (``before`` held the others), and all the
        account's if it named none of them (IAM and S3 keep theirs per partition)."""
        backend_dict = _live_backend_dict(service)
        accounts = list(backend_dict.keys()) if account is None else [account]
        with self.lock(service):
            for each in accounts:
                regions = dict.get(backend_dict, each)
                if not regions:
                    continue
                names = set(regions.keys())
                known = names if before is None else before
                chosen = ({region} & names) | (names - known) if region else names
                for name in sorted(chosen or names):
                    self.save(service, each, name, dict.__getitem__(regions, name))

    def save_account(self, account: str) -> None:
        """Every service's backends of ``account`` (after a CloudFormation write)."""
        for backend_dict in _backend_dicts():
            service = str(backend_dict.service_name)
            if service not in NOT_SAVED and dict.get(backend_dict, account):
                self.save_service(service, account, None)

    def forget(self) -> None:
        """moto was reset (``/moto-api/reset``): its snapshots are gone too."""
        for path in sorted(self.folder.glob(f"*/*/*{_SUFFIX}")):
            path.unlink(missing_ok=True)
        self._digests.clear()
        self._blob_refs.clear()
        self.blobs().collect(set())
        for table in (self.folder / parts.DEFAULTS_FOLDER).glob("*"):
            table.unlink(missing_ok=True)

    def save(self, service: str, account: str, region: str, backend: Any) -> None:
        if service in self._refused:
            return
        started = time.perf_counter()
        snapshot = self._snapshot(service, backend)
        try:
            data = self._pickle(backend, snapshot)
        except Exception as error:  # any refusal: this service stays in memory
            self._refused.add(service)
            log.warning(
                "side service %s: its state cannot be saved (%s: %s); it is kept in memory only",
                service,
                type(error).__name__,
                error,
            )
            return
        key = (service, account, region)
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if self._digests.get(key) != digest:
            parts.write_atomically(self.path(service, account, region), data)
            self._digests[key] = digest
        if snapshot.blobs is not None:  # only now may a file the old snapshot named go
            self._blob_refs[key] = snapshot.refs
            snapshot.blobs.collect(set().union(*self._blob_refs.values()))
        self.measure.writes += 1
        self.measure.seconds += time.perf_counter() - started
        self.measure.largest = max(self.measure.largest, len(data))

    def _snapshot(self, service: str, backend: Any) -> _Snapshot:
        special, table = self._defaults.reductions(backend) if service == "ec2" else ({}, "")
        return _Snapshot(backend, special, table, self.blobs() if service == "s3" else None)

    @staticmethod
    def _pickle(backend: Any, snapshot: _Snapshot) -> bytes:
        """Pickle, retrying when a concurrent read resized a dict under the pickler."""
        for _attempt in range(4):
            try:
                snapshot.refs = set()
                return dumps(backend, root=backend, snapshot=snapshot)
            except RuntimeError:
                continue
        snapshot.refs = set()
        return dumps(backend, root=backend, snapshot=snapshot)

    # restoring
    def restore(self) -> int:
        """Bring back every saved backend; returns how many came back."""
        if not self.folder.is_dir():
            return 0
        loading = _Loading(self)
        with loading.active():
            for path in sorted(self.folder.glob(f"*/*/*{_SUFFIX}")):
                service, account = path.parent.parent.name, path.parent.name
                loading.ensure(service, account, path.stem)
        if self._blob_refs or (self.folder / parts.BLOB_FOLDER).is_dir():
            self.blobs().collect(set().union(*self._blob_refs.values()))
        return loading.count

    def install(self, service: str, account: str, region: str, backend: Any) -> None:
        backend_dict = _live_backend_dict(service)
        dict.__setitem__(backend_dict[account], region, backend)
        self.restored.add((service, account))
        owners = getattr(backend_dict, "bucket_accounts", None)
        if service == "s3" and owners is not None:  # S3's global bucket names, kept beside
            for name in getattr(backend, "buckets", {}):
                owners[name] = (region, account)

    def has(self, service: str, account: str) -> bool:
        """Whether ``service``'s state of ``account`` came back from a snapshot."""
        return (service, account) in self.restored

    def summary(self) -> str:
        """Where the state is, how big, and what saving it cost (for the stop's log line)."""
        files = list(self.folder.glob(f"*/*/*{_SUFFIX}")) if self.folder.is_dir() else []
        size = sum(path.stat().st_size for path in files)
        done = self.measure
        cost = f"{done.seconds * 1000 / done.writes:.2f} ms" if done.writes else "-"
        return (
            f"state in {self.folder} ({len(files)} backend snapshots, {size} bytes; "
            f"{done.writes} saves this run, {cost} each, largest {done.largest} bytes)"
        )


class _Loading:
    """One restore: loads each snapshot once, before any pickle that refers to it."""

    current: _Loading | None = None

    def __init__(self, state: SideState) -> None:
        self.state = state
        self.done: set[tuple[str, str, str]] = set()
        self.count = 0

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        _Loading.current = self
        try:
            yield
        finally:
            _Loading.current = None

    def ensure(self, service: str, account: str, region: str) -> None:
        key = (service, account, region)
        path = self.state.path(service, account, region)
        if key in self.done or not path.is_file():
            return
        self.done.add(key)
        data = path.read_bytes()
        refs: set[str] = set()
        try:
            folder = self.state.folder / parts.DEFAULTS_FOLDER
            with self.state.blobs().loading(refs), parts.loading_from(folder):
                backend = loads(data)
        except Exception as error:  # an old or broken file costs its state only
            problem = f"{type(error).__name__}: {error}"
            log.warning("side service %s not restored from %s: %s", service, path, problem)
            blobs = self.state.blobs()  # which object files it names is not known: keep all
            self.state._blob_refs[key] = set(blobs.on_disk) if service == "s3" else set()
            return
        finally:
            parts.loaded(account, region)
        if refs:
            self.state._blob_refs[key] = refs
        self.state.install(service, account, region, backend)
        self.state._digests[key] = hashlib.blake2b(data, digest_size=16).digest()
        self.count += 1


# The server's one state: moto's backends are process-wide, and so is what saves them.
_active: SideState | None = None


def activate(state: SideState | None) -> None:
    global _active
    _active = state


def active() -> SideState | None:
    return _active
