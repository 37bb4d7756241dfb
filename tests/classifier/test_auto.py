"""``modelKey: auto``: the real model files of a copy of the store (plus a variant whose
preprocessing is wrong, so it disagrees with the float reference, and one whose model file is
garbage), run by the real runtimes on the store's reference photos; a real classifier process on
the IPC core for the hot swap and the cache across restarts. No timing asserts: which variant is
fastest is the machine's business, only that the choice follows the measurements."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from ggvision_classifier.app import ROLE
from ggvision_classifier.config import ClassifierConfig

from ggvision.serving.models.auto import (
    CACHE_FILE,
    AutoSelector,
    Choice,
    Trial,
    decide,
    fingerprint,
    reference_photos,
)
from ggvision.serving.models.loading import ActiveModel, prepare_model
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.classifier.conftest import require_runtime
from tests.classifier.test_service import NAME, _result, recipe_defaults

REAL = ("tflite-int8", "onnx-int8", "tflite-fp32")
STATUS = f"local/status/{NAME}"


def make_store(store: Path, into: Path) -> Path:
    """tflite-int8, onnx-int8 and tflite-fp32 of the real store with its reference.json, plus
    ``skewed`` (tflite-fp32 fed raw 0..255 pixels: mean 0, std 1) and ``corrupt`` (garbage
    model bytes, no checksum)."""
    require_runtime("ai_edge_litert")
    require_runtime("onnxruntime")
    pytest.importorskip("skimage", reason="the store's reference photos are scikit-image's")
    for variant in REAL:
        if not (store / variant / "manifest.json").is_file():
            pytest.skip(f"variant {variant} is not in the model store")
        shutil.copytree(store / variant, into / variant)
    shutil.copy(store / "reference.json", into / "reference.json")
    skewed = into / "skewed"
    shutil.copytree(store / "tflite-fp32", skewed)
    manifest = json.loads((skewed / "manifest.json").read_text())
    manifest["variant"] = "skewed"
    manifest["preprocess"].update(mean=[0, 0, 0], std=[1, 1, 1])
    (skewed / "manifest.json").write_text(json.dumps(manifest))
    corrupt = into / "corrupt"
    shutil.copytree(store / "tflite-int8", corrupt)
    manifest = json.loads((corrupt / "manifest.json").read_text())
    manifest.pop("sha256", None)
    (corrupt / "manifest.json").write_text(json.dumps(manifest))
    (corrupt / manifest["file"]).write_bytes(b"TFL3 this is not a flatbuffer" * 1000)
    return into


@pytest.fixture(scope="module")
def auto_store(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(store, tmp_path_factory.mktemp("auto-store"))


def config(root: Path, **extra: Any) -> ClassifierConfig:
    raw = {"modelKey": "auto", "modelStorePath": str(root), "threads": 1, "autoSeconds": 0.2}
    return ClassifierConfig.from_raw({**raw, **extra})


def prepare_for(cfg: ClassifierConfig, loads: list[str] | None = None) -> Any:
    def prepare(variant: str) -> ActiveModel:
        if loads is not None:
            loads.append(variant)
        return prepare_model(cfg.model_copy(update={"model_key": variant}), events=ROLE)

    return prepare


def selector(work: Path) -> AutoSelector:
    return AutoSelector(work, role=ROLE, default_key="tflite-int8")


@pytest.fixture(scope="module")
def measured(auto_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Choice]:
    work = tmp_path_factory.mktemp("auto-work")
    cfg = config(auto_store)
    sel = selector(work)
    assert sel.resolve(cfg) == "tflite-int8"  # the component's default, before measuring
    assert sel.pending()
    return work, sel.measure(cfg, prepare_for(cfg))


def test_auto_picks_the_fastest_loadable_variant_that_agrees(measured: tuple[Path, Choice]) -> None:
    _, choice = measured
    trials = {t.variant: t for t in choice.trials}
    assert set(trials) == {*REAL, "skewed", "corrupt"}
    for variant in REAL:  # every real variant agrees with the float reference on all 7 photos
        assert trials[variant].error is None
        assert trials[variant].agreed == "7/7" and trials[variant].agreement == 1.0
        assert trials[variant].runs >= 5 and trials[variant].ms is not None
    assert choice.variant in REAL and choice.state == "measured"
    eligible = [trials[v] for v in REAL]
    assert trials[choice.variant].ms == min(t.ms or 0.0 for t in eligible)
    assert choice.variant in choice.reason and "7/7" in choice.reason


def test_a_variant_failing_agreement_or_loading_is_excluded(measured: tuple[Path, Choice]) -> None:
    _, choice = measured
    trials = {t.variant: t for t in choice.trials}
    skewed, corrupt = trials["skewed"], trials["corrupt"]
    assert skewed.error is None and skewed.agreement is not None and skewed.agreement < 0.99
    assert corrupt.error is not None and corrupt.ms is None
    assert choice.variant not in ("skewed", "corrupt")
    assert f"skewed (agreement {skewed.agreed} < 99%)" in choice.reason
    assert "corrupt (" in choice.reason


def test_the_choice_is_cached_and_reused_on_restart(
    auto_store: Path, measured: tuple[Path, Choice]
) -> None:
    work, choice = measured
    cached = json.loads((work / CACHE_FILE).read_text())
    assert cached["choice"]["variant"] == choice.variant
    assert cached["choice"]["fingerprint"] == fingerprint(auto_store)
    restarted = selector(work)
    cfg = config(auto_store)
    assert restarted.resolve(cfg) == choice.variant
    assert not restarted.pending()
    report = restarted.report()
    assert report is not None and report["state"] == "cached"
    assert report["trials"] == choice.report()["trials"]
    # Other threads are another measurement.
    assert selector(work).resolve(config(auto_store, threads=2)) == "tflite-int8"


def test_the_choice_is_measured_again_after_the_store_changes(store: Path, tmp_path: Path) -> None:
    root = make_store(store, tmp_path / "store")
    work = tmp_path / "work"
    cfg = config(root)
    first = selector(work)
    first.resolve(cfg)
    before = first.measure(cfg, prepare_for(cfg))
    # A new store version: the fastest variant is gone, the others' manifests unchanged.
    shutil.rmtree(root / before.variant)
    loads: list[str] = []
    again = selector(work)
    served = again.resolve(cfg)
    assert served != before.variant and again.pending()
    after = again.measure(cfg, prepare_for(cfg, loads))
    assert sorted(loads) == sorted({*REAL, "skewed", "corrupt"} - {before.variant})
    assert after.fingerprint != before.fingerprint and after.variant != before.variant
    assert after.variant in REAL


def test_decide_takes_the_fastest_agreeing_never_a_faster_disagreeing_one() -> None:
    trials = [
        Trial("fast-wrong", ms=1.0, runs=5, agreement=6 / 7, agreed="6/7"),
        Trial("slow", ms=3.0, runs=5, agreement=1.0, agreed="7/7"),
        Trial("mid", ms=2.0, runs=5, agreement=1.0, agreed="7/7"),
        Trial("broken", error="cannot load"),
    ]
    assert decide(trials, 0.99)[0] == "mid"
    assert decide(trials, 0.8)[0] == "fast-wrong"
    variant, reason = decide(trials[:1] + trials[3:], 0.99)
    assert variant is None and "no variant agrees" in reason


# --- the component ---------------------------------------------------------------------------
class Classifier:
    def __init__(self, core: CoreThread, root: Path, work: Path, photos: Path) -> None:
        cfg = {
            **recipe_defaults(),
            "modelKey": "auto",
            "threads": 1,
            "autoSeconds": 0.2,
            "statusIntervalSeconds": 0.3,
            "allowedDirectories": [str(photos)],
        }
        env = core.component_env(NAME, configuration=cfg)
        env["GGV_MODEL_STORE"] = str(root)
        self.core, self.photos = core, photos
        # Greengrass starts a component in its work directory: the cache goes there.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ggvision_classifier"], env=env, cwd=work
        )
        self.agent = AgentProcess(
            core.component_env(
                "com.test.Requester",
                pubsub_policy(publish=["local/inference"], subscribe=["local/result", STATUS]),
            )
        )
        self.statuses = self.agent("subscribe", topic=STATUS)["sub"]
        self.results = self.agent("subscribe", topic="local/result")["sub"]

    def status(self, where: Any, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.agent("events", sub=self.statuses, n=1, timeout=1)["events"]:
                report: dict[str, Any] = _result(e)
                if where(report):
                    return report
            assert self.proc.poll() is None, "the classifier exited"
        raise AssertionError("no matching status report")

    def ask(self, rid: str) -> dict[str, Any]:
        request = {"id": rid, "image": {"path": str(self.photos / "chelsea.jpg")}}
        self.agent("publish", topic="local/inference", json=request)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for e in self.agent("events", sub=self.results, n=10, timeout=1)["events"]:
                r = _result(e)
                if r["id"] == rid:
                    return r
        raise AssertionError(f"no answer to {rid}")

    def close(self) -> None:
        self.agent.close()
        self.proc.terminate()
        self.proc.wait(15)


@pytest.fixture
def classifier_run(auto_store: Path, tmp_path: Path, photo_files: dict[str, Path]) -> Iterator[Any]:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(photo_files["chelsea"], photos / "chelsea.jpg")
    work = tmp_path / "work"
    work.mkdir()

    @contextmanager
    def run() -> Iterator[Classifier]:
        with CoreThread() as core:
            c = Classifier(core, auto_store, work, photos)
            try:
                yield c
            finally:
                c.close()

    yield run, work


def _auto(report: dict[str, Any]) -> dict[str, Any]:
    auto: dict[str, Any] = report.get("model_auto") or {}
    return auto


def test_the_classifier_serves_at_once_swaps_to_the_winner_and_reuses_it(
    classifier_run: Any,
) -> None:
    run, work = classifier_run
    with run() as c:
        first = c.status(lambda r: r.get("model") is not None)
        assert _auto(first)["state"] in ("provisional", "measuring", "measured")
        assert c.ask("cold")["status"] == "ok"  # served while the measurement runs
        done = c.status(lambda r: _auto(r).get("state") == "measured")
        chosen = _auto(done)["variant"]
        assert chosen in REAL and len(_auto(done)["trials"]) == 5
        assert c.core.get_config(NAME)["modelKey"] == "auto"
        backend = "onnx" if chosen.startswith("onnx") else "tflite"
        served = c.status(lambda r: (r.get("model") or {}).get("backend") == backend)
        if chosen != "tflite-int8":  # the provisional variant: swapped to the winner
            assert served["last_swap"]["ok"] and served["last_swap"]["model_key"] == chosen
        answer = c.ask("after")
        assert answer["status"] == "ok" and answer["model"]["backend"] == backend
    assert json.loads((work / CACHE_FILE).read_text())["choice"]["variant"] == chosen
    with run() as c:  # restarted: the cached choice serves from the start, nothing re-measured
        report = c.status(lambda r: r.get("model") is not None)
        assert _auto(report)["state"] == "cached" and _auto(report)["variant"] == chosen
        assert report["model"]["backend"] == backend and report["last_swap"] is None


def test_classify_cli_variant_auto_measures_and_says_why(
    auto_store: Path, photo_files: dict[str, Path]
) -> None:
    from ggvision_classifier.classify_cli import run

    [result] = run([photo_files["coffee"]], store=auto_store, variant="auto", threads=1)
    model = result["model"]
    assert model["variant"] in REAL and model["auto"]["variant"] == model["variant"]
    assert model["auto"]["state"] == "measured"
    assert {t["variant"] for t in model["auto"]["trials"]} == {*REAL, "skewed", "corrupt"}
    assert result["predictions"][0]["label"] == "espresso"


def test_a_deployed_store_reads_its_reference_photos_from_files(
    store: Path, tmp_path: Path
) -> None:
    """reference/reference.json with the photos as files (no scikit-image needed) chooses as
    the store's root reference.json with scikit-image's samples does."""
    from PIL import Image

    root = make_store(store, tmp_path / "store")
    samples = reference_photos(root)
    ref = json.loads((root / "reference.json").read_text())
    (root / "reference.json").unlink()
    (root / "reference").mkdir()
    for name, pixels, _ in samples:
        Image.fromarray(pixels).save(root / "reference" / f"{name}.png")
        ref["photos"][name]["file"] = f"{name}.png"
    (root / "reference" / "reference.json").write_text(json.dumps(ref))
    from_files = reference_photos(root)
    assert [(n, t) for n, _, t in from_files] == [(n, t) for n, _, t in samples]
    # grey photos come back as RGB; the model sees the same pixels either way
    cfg = config(root)
    sel = selector(tmp_path / "work")
    sel.resolve(cfg)
    trials = {t.variant: t for t in sel.measure(cfg, prepare_for(cfg)).trials}
    assert trials["tflite-int8"].agreed == "7/7" and trials["skewed"].agreed != "7/7"


def test_a_measurement_asked_for_while_one_runs_follows_it(
    auto_store: Path, tmp_path: Path
) -> None:
    """A deployment that changes threads during the measurement gets its own afterwards (the
    earlier one, if it had not begun, is dropped: its configuration is gone)."""
    sel = selector(tmp_path)
    one, two = config(auto_store), config(auto_store, threads=2)
    served: list[Choice] = []
    sel.resolve(one)
    sel.start(one, prepare_for(one), served.append)
    sel.resolve(two)  # the reload's load_model: a new provisional choice
    sel.start(two, prepare_for(two), served.append)
    deadline = time.monotonic() + 100
    while not (served and served[-1].threads == 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    sel.stop()
    assert served and served[-1].threads == 2
    assert [c.threads for c in served] in ([2], [1, 2])
    report = sel.report()
    assert report is not None and report["threads"] == 2 and report["state"] == "measured"


def test_without_a_reference_the_default_keeps_serving_and_the_report_says_why(
    store: Path, tmp_path: Path
) -> None:
    root = make_store(store, tmp_path / "store")
    (root / "reference.json").unlink()
    sel = selector(tmp_path / "work")
    cfg = config(root)
    assert sel.resolve(cfg) == "tflite-int8"
    sel.start(cfg, prepare_for(cfg), lambda choice: None)
    deadline = time.monotonic() + 60
    while (sel.report() or {}).get("state") == "measuring" and time.monotonic() < deadline:
        time.sleep(0.05)
    sel.stop()
    report = sel.report()
    assert report is not None and report["state"] == "failed"
    assert report["variant"] == "tflite-int8" and "reference photos" in report["reason"]
    assert not (tmp_path / "work" / CACHE_FILE).exists()


def test_auto_on_the_built_store_component_measures_from_its_reference_artifact(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store component as a device unpacks it (each ZIP artifact into
    ``{artifacts:decompressedPath}/<zip name>/``, reference.zip included, no root
    reference.json) and no scikit-image: auto reads the reference PNGs, measures and chooses."""
    from tools import build_components as bc

    make_store(store, tmp_path / "copy")  # skips without the runtimes or the variants
    zips = [bc.REFERENCE_ZIP, *(f"{v}.zip" for v in REAL)]
    built = bc.build_model_store("1.0.1", zips, store, tmp_path / "artifacts")
    root = tmp_path / "decompressed"
    for artifact in built:
        shutil.unpack_archive(artifact, root / artifact.stem, "zip")
    assert not (root / "reference.json").exists()
    assert (root / "reference" / "reference.json").is_file()
    monkeypatch.setitem(sys.modules, "skimage", None)  # `import skimage` raises ImportError
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    cfg = config(root)
    sel = selector(tmp_path / "work")
    assert sel.resolve(cfg) == "tflite-int8"
    choice = sel.measure(cfg, prepare_for(cfg))
    trials = {t.variant: t for t in choice.trials}
    assert set(trials) == set(REAL)
    for variant in REAL:
        assert trials[variant].error is None and trials[variant].agreed == "7/7"
    assert choice.state == "measured" and choice.variant in REAL
    assert trials[choice.variant].ms == min(t.ms or 0.0 for t in trials.values())
    assert choice.fingerprint == fingerprint(root)
