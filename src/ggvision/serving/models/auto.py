"""``modelKey: auto``: serve the fastest variant of the model store that agrees with its float
reference.

The choice is measured on this machine, once per store content: each classification variant the
component can load (its runtime installed, its file intact) runs the store's reference photos
(``reference.json``: the float PyTorch model's top-5 per photo) and is timed for
``autoSeconds``; the fastest whose top-1 agrees with the reference on at least
``autoMinAgreement`` of the photos wins. The result is cached in the component's work directory
(:data:`CACHE_FILE`) and reused on restart while the store's fingerprint (its ``index.json``,
``reference.json`` and every manifest, which carry the model files' checksums), the threads and
the backend are unchanged.

Cold start does not wait for the measurement: :meth:`AutoSelector.resolve` answers the cached
winner, else the component's default variant (else the first variant the store has), and the
component measures in the background and hot-swaps to the winner (:class:`AutoSelector` with
the service's swapper).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ggvision.serving.models.store import (
    DEFAULT_BACKEND,
    Model,
    ModelError,
    model_keys,
    store_root,
)

log = logging.getLogger(__name__)

AUTO_KEY = "auto"
CACHE_FILE = "model-auto.json"
CACHE_SCHEMA = 1
# The variants tried first on a cold start without a cached choice, when the component's own
# default is not in the store.
PROVISIONAL = ("tflite-int8", "onnx-int8", "tflite-fp32", "onnx-fp32")
# The float reference, in the store's root (``make models``) or in a reference/ directory of
# its own (a deployed store, where each artifact unpacks into a directory).
REFERENCE_FILES = ("reference.json", "reference/reference.json")
# At least this many timed runs per variant, whatever the budget.
MIN_RUNS = 5


class AutoSettings(Protocol):
    """What the measurement reads from a model component's configuration."""

    @property
    def model_key(self) -> str: ...
    @property
    def model_store_path(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def inference_threads(self) -> int: ...
    @property
    def auto_seconds(self) -> float: ...
    @property
    def auto_min_agreement(self) -> float: ...


@dataclass(slots=True)
class Trial:
    """One variant's measurement: median and p90 ms per inference over ``runs`` timed runs,
    the fraction of reference photos whose top-1 is the float reference's, or why it could not
    be measured."""

    variant: str
    ms: float | None = None
    p90_ms: float | None = None
    runs: int = 0
    agreement: float | None = None
    agreed: str = ""  # "7/7"
    error: str | None = None

    def eligible(self, min_agreement: float) -> bool:
        return (
            self.error is None and self.ms is not None and (self.agreement or 0.0) >= min_agreement
        )


@dataclass(slots=True)
class Choice:
    """What ``modelKey: auto`` serves and why (the status report's ``model_auto``)."""

    variant: str
    state: str  # provisional | measuring | cached | measured | failed
    reason: str
    fingerprint: str
    threads: int
    backend: str
    min_agreement: float
    trials: list[Trial] = field(default_factory=list)
    measured_at: float | None = None

    def report(self) -> dict[str, Any]:
        out = asdict(self)
        out["trials"] = [asdict(t) for t in self.trials]
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Choice:
        trials = [Trial(**t) for t in raw.get("trials", [])]
        fields = {k: raw[k] for k in cls.__slots__ if k in raw and k != "trials"}
        return cls(**fields, trials=trials)


# --- the store -----------------------------------------------------------------------------------
def fingerprint(root: Path) -> str:
    """A digest of what the choice depends on in the store: ``index.json``, ``reference.json``
    and every variant's manifest (names and bytes; a manifest carries its model's sha256)."""
    h = hashlib.sha256()
    root = Path(root)
    for name in ("index.json", *REFERENCE_FILES):
        path = root / name
        h.update(name.encode())
        h.update(path.read_bytes() if path.is_file() else b"-")
    for key in model_keys(root):
        h.update(key.encode())
        h.update((root / key / "manifest.json").read_bytes())
    return h.hexdigest()


def reference_photos(root: Path) -> list[tuple[str, np.ndarray, int]]:
    """The store's reference photos as (name, RGB/grey uint8 pixels, the float reference's
    top-1 index), from the store's :data:`REFERENCE_FILES` (the first there). A photo is a file
    (``file``, relative to its reference.json) or, as the store's
    build names them, a scikit-image sample (``skimage.data.NAME()``, ``[0]`` for the first of
    a pair). ModelError when the store has none or they cannot be read."""
    path = next((Path(root) / r for r in REFERENCE_FILES if (Path(root) / r).is_file()), None)
    if path is None:
        raise ModelError(
            f"modelKey auto needs the store's reference photos: no {' or '.join(REFERENCE_FILES)} "
            f"in {root}"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        photos: dict[str, Any] = raw["photos"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"modelKey auto needs the store's reference photos: {path}: {exc}"
        ) from exc
    out = []
    for name, photo in photos.items():
        top1 = int(photo["top5"][0]["index"])
        out.append((name, _photo_pixels(path.parent, name, photo), top1))
    if not out:
        raise ModelError(f"modelKey auto: {path} has no photos")
    return out


def _photo_pixels(root: Path, name: str, photo: dict[str, Any]) -> np.ndarray:
    if photo.get("file"):
        from PIL import Image

        file = (root / str(photo["file"])).resolve()
        if root.resolve() not in file.parents:
            raise ModelError(f"reference photo {name} points outside the store")
        with Image.open(file) as img:
            return np.asarray(img.convert("RGB"))
    source = str(photo.get("image", ""))
    prefix = "skimage.data."
    if not source.startswith(prefix) or "(" not in source:
        raise ModelError(f"reference photo {name}: unknown image source {source!r}")
    func = source[len(prefix) : source.index("(")]
    try:
        import skimage.data
    except ImportError as exc:
        raise ModelError(
            f"reference photo {name} is a scikit-image sample: install scikit-image"
        ) from exc
    loader = getattr(skimage.data, func, None)
    if loader is None or not func.isidentifier():
        raise ModelError(f"reference photo {name}: skimage.data has no {func}")
    loaded = loader()
    if source.split(")", 1)[1].startswith("[0]"):
        loaded = loaded[0]
    return np.asarray(loaded)


def candidates(root: Path, backend: str, tasks: Iterable[str] = ("classification",)) -> list[str]:
    """The variants ``auto`` may serve: the store's variants of these tasks (on ``backend``'s
    format when one is configured)."""
    wanted = set(tasks)
    out = []
    for key in model_keys(root):
        try:
            raw = json.loads((Path(root) / key / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # measured as an error by trial(), never chosen
        if raw.get("task", "classification") not in wanted:
            continue
        if backend and DEFAULT_BACKEND.get(str(raw.get("format"))) != backend:
            continue
        out.append(key)
    return out


# --- the measurement -----------------------------------------------------------------------------
Prepare = Callable[[str], Any]  # variant -> ActiveModel (loaded, warmed, checked)


def trial(
    variant: str,
    prepare: Prepare,
    photos: list[tuple[str, np.ndarray, int]],
    seconds: float,
    stop: threading.Event | None = None,
) -> Trial:
    """Load ``variant`` (``prepare``), count its top-1 agreement with the reference on
    ``photos``, then time its inference on the first photo for ``seconds`` (at least
    :data:`MIN_RUNS` runs); the backend is closed after."""
    from ggvision.serving.preprocess import preprocess

    result = Trial(variant)
    try:
        active = prepare(variant)
    except Exception as exc:  # boundary: a variant that cannot load is reported, not fatal
        result.error = str(exc)
        return result
    try:
        model: Model = active.model
        backend = active.backend
        inputs = [preprocess(pixels, model.manifest) for _, pixels, _ in photos]
        agreed = 0
        for x, (_, _, top1) in zip(inputs, photos, strict=True):
            scores = backend.infer(x)
            agreed += int(int(np.argmax(scores)) == top1)
        result.agreement = round(agreed / len(photos), 4)
        result.agreed = f"{agreed}/{len(photos)}"
        times: list[float] = []
        deadline = time.perf_counter() + seconds
        while len(times) < MIN_RUNS or time.perf_counter() < deadline:
            if stop is not None and stop.is_set():
                result.error = "stopped"
                return result
            t0 = time.perf_counter()
            backend.infer(inputs[0])
            times.append(time.perf_counter() - t0)
        times.sort()
        result.runs = len(times)
        result.ms = round(statistics.median(times) * 1000, 3)
        result.p90_ms = round(times[min(len(times) - 1, int(0.9 * len(times)))] * 1000, 3)
    except Exception as exc:  # boundary: a variant that cannot run is reported, not fatal
        result.error = f"cannot run: {exc}"
    finally:
        active.backend.close()
    return result


def decide(trials: list[Trial], min_agreement: float) -> tuple[str | None, str]:
    """The fastest eligible variant (None when there is none) and why, in words."""
    eligible = [t for t in trials if t.eligible(min_agreement)]
    excluded = [
        f"{t.variant} ({t.error or f'agreement {t.agreed} < {min_agreement:.0%}'})"
        for t in trials
        if not t.eligible(min_agreement)
    ]
    tail = f"; excluded: {', '.join(excluded)}" if excluded else ""
    if not eligible:
        return None, f"no variant agrees with the float reference{tail}"
    best = min(eligible, key=lambda t: t.ms or 0.0)
    ranked = sorted((t for t in eligible if t is not best), key=lambda t: t.ms or 0.0)
    others = ", ".join(f"{t.variant} {t.ms} ms" for t in ranked)
    reason = (
        f"fastest of {len(eligible)} agreeing variants: {best.variant} {best.ms} ms median, "
        f"top-1 {best.agreed}" + (f" (then {others})" if others else "") + tail
    )
    return best.variant, reason


@dataclass(frozen=True, slots=True)
class OneOff:
    """The settings of a choice made outside a component (:func:`choose_now`)."""

    model_store_path: str
    backend: str = ""
    inference_threads: int = 2
    auto_seconds: float = 1.0
    auto_min_agreement: float = 0.99
    model_key: str = AUTO_KEY


def choose_now(settings: OneOff, prepare: Prepare, *, role: str = "serving") -> Choice:
    """Measure the store's variants now (no cache) and return the choice; ModelError when no
    variant agrees with the reference."""
    return AutoSelector(None, role=role).measure(settings, prepare)


# --- the selector --------------------------------------------------------------------------------
class AutoSelector:
    """``modelKey: auto`` for one model component: the cached or provisional variant at once
    (:meth:`resolve`), the measurement in a background thread (:meth:`start`), the choice for
    the status report (:meth:`report`)."""

    def __init__(
        self,
        work_dir: Path | None,
        *,
        role: str,
        default_key: str = "",
        tasks: Iterable[str] = ("classification",),
    ) -> None:
        # None: no cache (a one-off choice, e.g. ``ggvision classify --variant auto``)
        self.path = Path(work_dir) / CACHE_FILE if work_dir is not None else None
        self.role = role
        self.default_key = default_key
        self.tasks = tuple(tasks)
        self._lock = threading.Lock()
        self._choice: Choice | None = None
        self._thread: threading.Thread | None = None
        # the measurement the thread runs next: (settings, prepare, serve)
        self._job: tuple[AutoSettings, Prepare, Callable[[Choice], None]] | None = None
        self._stop = threading.Event()

    # --- what serves now -------------------------------------------------------------------------
    def resolve(self, cfg: AutoSettings) -> str:
        """The variant to serve for ``cfg`` now: the cached choice when it was measured for
        this store, threads and backend, else a provisional one (measure with :meth:`start`)."""
        root = store_root(cfg.model_store_path)
        fp = fingerprint(root)
        cached = self._cached(cfg, fp)
        if cached is not None:
            with self._lock:
                self._choice = cached
            return cached.variant
        with self._lock:
            current = self._choice
            if current is not None and self._matches(current, cfg, fp):
                return current.variant
        keys = candidates(root, cfg.backend, self.tasks)
        order = [self.default_key, *PROVISIONAL, *keys]
        variant = next((k for k in order if k and k in keys), None)
        if variant is None:
            raise ModelError(f"modelKey auto: the model store {root} has no {self._tasks()} model")
        reason = f"not measured yet on this machine: {variant} serves until it is"
        choice = self._new(cfg, fp, variant, "provisional", reason)
        with self._lock:
            self._choice = choice
        return variant

    def pending(self) -> bool:
        """True when the current choice still wants a measurement."""
        with self._lock:
            return self._choice is not None and self._choice.state == "provisional"

    def report(self) -> dict[str, Any] | None:
        with self._lock:
            return self._choice.report() if self._choice is not None else None

    # --- the measurement -------------------------------------------------------------------------
    def start(self, cfg: AutoSettings, prepare: Prepare, serve: Callable[[Choice], None]) -> None:
        """Measure in a background thread, then cache the choice and call ``serve`` with it
        (the component swaps to its variant); nothing when none is pending. A measurement
        asked for while one runs (a deployment changed ``threads``) runs after it."""
        with self._lock:
            if self._choice is None or self._choice.state != "provisional":
                return
            self._choice.state = "measuring"
            self._job = (cfg, prepare, serve)
            if self._thread is not None:
                return  # the running thread takes the job next
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name=f"{self.role}-auto", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        with self._lock:
            thread, self._job = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._lock:
                job, self._job = self._job, None
                if job is None or self._stop.is_set():
                    self._thread = None
                    return
            self._run(*job)

    def measure(self, cfg: AutoSettings, prepare: Prepare) -> Choice:
        """Measure every candidate now (in this thread), cache and return the choice."""
        root = store_root(cfg.model_store_path)
        fp = fingerprint(root)
        photos = reference_photos(root)
        trials = []
        for key in candidates(root, cfg.backend, self.tasks):
            if self._stop.is_set():
                raise ModelError("modelKey auto: measurement stopped")
            trials.append(trial(key, prepare, photos, cfg.auto_seconds, self._stop))
            log.info(
                "auto: %s",
                asdict(trials[-1]),
                extra={"event": f"{self.role}.auto_trial"},
            )
        variant, reason = decide(trials, cfg.auto_min_agreement)
        if variant is None:
            raise ModelError(f"modelKey auto: {reason}")
        choice = self._new(cfg, fp, variant, "measured", reason)
        choice.trials = trials
        choice.measured_at = round(time.time(), 3)
        self._save(choice)
        with self._lock:
            # unless a newer configuration asked for another measurement meanwhile
            if self._choice is None or self._matches(self._choice, cfg, fp):
                self._choice = choice
        return choice

    def _run(self, cfg: AutoSettings, prepare: Prepare, serve: Callable[[Choice], None]) -> None:
        try:
            choice = self.measure(cfg, prepare)
        except Exception as exc:  # boundary: the provisional variant keeps serving
            with self._lock:
                if self._choice is not None and self._choice.state == "measuring":
                    self._choice.state = "failed"
                    self._choice.reason = (
                        f"measurement failed, keeping {self._choice.variant}: {exc}"
                    )
            log.error("auto: %s", exc, extra={"event": f"{self.role}.auto_failed"})
            return
        log.info(
            "auto: chose %s: %s",
            choice.variant,
            choice.reason,
            extra={"event": f"{self.role}.auto_chosen"},
        )
        if not self._stop.is_set():
            serve(choice)

    # --- the cache -------------------------------------------------------------------------------
    def _new(self, cfg: AutoSettings, fp: str, variant: str, state: str, reason: str) -> Choice:
        return Choice(
            variant=variant,
            state=state,
            reason=reason,
            fingerprint=fp,
            threads=cfg.inference_threads,
            backend=cfg.backend,
            min_agreement=cfg.auto_min_agreement,
        )

    @staticmethod
    def _matches(choice: Choice, cfg: AutoSettings, fp: str) -> bool:
        return (
            choice.fingerprint == fp
            and choice.threads == cfg.inference_threads
            and choice.backend == cfg.backend
            and choice.min_agreement == cfg.auto_min_agreement
        )

    def _cached(self, cfg: AutoSettings, fp: str) -> Choice | None:
        if self.path is None:
            return None
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if raw.get("schema") != CACHE_SCHEMA or raw.get("machine") != platform.machine():
                return None
            choice = Choice.from_json(raw["choice"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "auto: ignoring %s: %s", self.path, exc, extra={"event": f"{self.role}.auto_cache"}
            )
            return None
        if not self._matches(choice, cfg, fp):
            return None
        choice.state = "cached"
        return choice

    def _save(self, choice: Choice) -> None:
        if self.path is None:
            return
        data = {"schema": CACHE_SCHEMA, "machine": platform.machine(), "choice": choice.report()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:  # the choice still serves; it is measured again next start
            log.warning(
                "auto: cannot cache in %s: %s",
                self.path,
                exc,
                extra={"event": f"{self.role}.auto_cache"},
            )

    def _tasks(self) -> str:
        return "/".join(self.tasks)
