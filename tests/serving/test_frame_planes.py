"""Frame planes: the camera makes each frame also at the model's input size, and the model's
input made from that plane is the one its own preprocessing makes of the full frame, bit for
bit, on real photos and for every variant of the real model stores. The fallbacks (a plane of
another spec, an overwritten plane, a request without planes) serve the full frame."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from ggvision_camera.transport import RingTransport

from ggvision.contract import (
    ErrorCode,
    FrameImage,
    PlaneSpec,
    RequestError,
    parse_request,
    request_json,
)
from ggvision.serving.images import ImageLoader
from ggvision.serving.models import backends
from ggvision.serving.models.store import Model
from ggvision.serving.preprocess import PlaneEncoder, PlaneTensor, make_plane
from ggvision.serving.tasks import get_task
from ggvision.serving.tasks.base import Task
from ggvision.serving.tasks.detection import Geometry, fit
from tests.camera.conftest import photo, video_frame
from tests.classifier.conftest import require_runtime, store_root
from tests.detector.conftest import store_path as detect_store_path

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")
RUNTIME = {"tflite": "ai_edge_litert", "onnx": "onnxruntime", "torchscript": "torch"}


def _models(root: Path) -> list[Path]:
    index = root / "index.json"
    if not index.is_file():
        return []
    variants = json.loads(index.read_text())["variants"]
    return [root / v["dir"] for v in variants if (root / v["dir"] / "manifest.json").is_file()]


MODEL_DIRS = _models(store_root()) + _models(detect_store_path())


def _model(directory: Path) -> Model:
    return Model.load(directory, verify_sha256=False)


def task_for(model: Model) -> Task:
    return get_task(model.manifest.task).bind(model)


def _frames() -> Iterator[tuple[str, np.ndarray]]:
    for name in PHOTOS:
        yield name, photo(name)
    yield "640x480", video_frame("chelsea", (640, 480))


def _encoder(model: Model) -> PlaneEncoder:
    encoder = task_for(model).plane_encoder(model)
    assert encoder is not None
    return encoder


@pytest.mark.parametrize("directory", MODEL_DIRS, ids=lambda d: f"{d.parent.name}/{d.name}")
def test_the_input_made_from_a_plane_is_the_full_frame_input_bit_for_bit(
    directory: Path,
) -> None:
    pytest.importorskip("skimage", reason="scikit-image provides the sample photos")
    model = _model(directory)
    task = task_for(model)
    encoder = _encoder(model)
    for name, frame in _frames():
        full, context = task.prepare(frame, model)
        plane = make_plane(frame, encoder.spec)
        assert plane.shape == (encoder.spec.height, encoder.spec.width, 3), name
        made = encoder.encode(plane)
        assert made.dtype == full.dtype and made.shape == full.shape, name
        assert np.array_equal(made, full), f"{directory.name} on {name}"
        h, w = frame.shape[:2]
        tensor, geometry = task.prepare(PlaneTensor(made, (w, h)), model)
        assert tensor is made
        assert geometry == context  # a detector's letterbox/stretch geometry, else None


@pytest.mark.parametrize("color", ["RGB", "BGR"])
@pytest.mark.parametrize("resize_only", [False, True])
def test_colour_order_and_stretch_are_part_of_the_plane(color: str, resize_only: bool) -> None:
    pytest.importorskip("skimage", reason="scikit-image provides the sample photos")
    dirs = _models(store_root())
    if not dirs:
        pytest.skip("no model store")
    model = _model(dirs[0])
    manifest = model.manifest.model_copy(
        update={
            "preprocess": model.manifest.preprocess.model_copy(
                update={"color": color, "resize_only": resize_only}
            )
        }
    )
    changed = Model(model.directory, manifest, model.labels)
    encoder = _encoder(changed)
    assert encoder.spec.color == color
    assert encoder.spec.fit == ("stretch" if resize_only else "crop")
    frame = photo("astronaut")
    full, _ = task_for(changed).prepare(frame, changed)
    assert np.array_equal(encoder.encode(make_plane(frame, encoder.spec)), full)
    rgb = make_plane(frame, encoder.spec.model_copy(update={"color": "RGB"}))
    if color == "BGR":
        assert np.array_equal(make_plane(frame, encoder.spec), rgb[:, :, ::-1])


# --- through the ring: the camera's transport and the classifier's loader ----------------------
@pytest.fixture
def int8_model() -> Model:
    directory = store_root() / "tflite-int8"
    if not (directory / "manifest.json").is_file():
        pytest.skip("no tflite-int8 variant in the model store")
    return _model(directory)


def _transport(tmp_path: Path, specs: Sequence[PlaneSpec]) -> RingTransport:
    return RingTransport(
        "ggv-plane-test",
        slots=3,
        slot_bytes=640 * 512 * 3,
        directory=tmp_path,
        planes=lambda: specs,
    )


def _request(image: FrameImage) -> FrameImage:
    """The image as the classifier parses it from the request on the bus."""
    wire = json.loads(json.dumps(request_json("r-1", image, source="cam")))
    parsed = parse_request(wire).image
    assert isinstance(parsed, FrameImage)
    return parsed


def _loader(tmp_path: Path) -> ImageLoader:
    return ImageLoader([], max_bytes=1 << 20, max_pixels=1 << 24, frame_directory=str(tmp_path))


def test_a_frame_request_with_the_models_plane_is_served_from_it(
    tmp_path: Path, int8_model: Model
) -> None:
    pytest.importorskip("skimage", reason="scikit-image provides the sample photos")
    encoder = _encoder(int8_model)
    transport, loader = _transport(tmp_path, [encoder.spec]), _loader(tmp_path)
    try:
        for name, frame in _frames():
            if frame.nbytes > transport.writer.slot_bytes:
                continue
            image = _request(transport.image(frame))
            assert image.frame.planes is not None and len(image.frame.planes) == 1
            got = loader.load(image, encoder)
            assert isinstance(got, PlaneTensor), name
            assert got.source_size == (frame.shape[1], frame.shape[0])
            full, _ = task_for(int8_model).prepare(frame, int8_model)
            assert np.array_equal(got.tensor, full), name
            # The request without a plane encoder (a model that takes none): the full frame.
            assert np.array_equal(loader.load(image), frame)
        assert loader.planes["used"] >= 4
        assert loader.planes["mismatch"] == loader.planes["stale"] == 0
    finally:
        loader.close()
        transport.close()
    assert not list(tmp_path.iterdir())  # the frame ring and the plane ring are gone


def test_a_plane_of_another_spec_falls_back_to_the_full_frame(
    tmp_path: Path, int8_model: Model
) -> None:
    encoder = _encoder(int8_model)
    other = encoder.spec.model_copy(update={"crop_fraction": 1.0})
    transport, loader = _transport(tmp_path, [other]), _loader(tmp_path)
    frame = video_frame("coffee", (640, 480))
    try:
        got = loader.load(_request(transport.image(frame)), encoder)
    finally:
        loader.close()
        transport.close()
    assert isinstance(got, np.ndarray) and np.array_equal(got, frame)
    assert loader.planes["mismatch"] == 1 and loader.planes["used"] == 0


def test_an_old_form_request_has_no_planes_and_serves_the_full_frame(
    tmp_path: Path, int8_model: Model
) -> None:
    transport, loader = _transport(tmp_path, []), _loader(tmp_path)
    frame = video_frame("astronaut", (640, 480))
    try:
        image = transport.image(frame)
        wire = request_json("r-1", image)
        assert set(wire["image"]["frame"]) == {"ring", "slot", "seq"}  # v1 as it always was
        got = loader.load(_request(image), _encoder(int8_model))
    finally:
        loader.close()
        transport.close()
    assert isinstance(got, np.ndarray) and np.array_equal(got, frame)
    assert loader.planes["none"] == 1


def test_an_overwritten_plane_falls_back_to_the_full_frame_then_to_stale(
    tmp_path: Path, int8_model: Model
) -> None:
    encoder = _encoder(int8_model)
    transport, loader = _transport(tmp_path, [encoder.spec]), _loader(tmp_path)
    frame = video_frame("chelsea", (640, 480))
    try:
        image = _request(transport.image(frame))
        plane_ring = next(iter(transport._plane_rings.values()))
        blank = np.zeros((encoder.spec.height, encoder.spec.width, 3), np.uint8)
        for _ in range(plane_ring.slots):  # the plane's slot now holds another frame
            plane_ring.write(blank)
        got = loader.load(image, encoder)
        assert isinstance(got, np.ndarray) and np.array_equal(got, frame)
        assert loader.planes["stale"] == 1
        for _ in range(transport.writer.slots):  # and now the frame's too
            transport.image(frame)
        with pytest.raises(RequestError) as err:
            loader.load(image, encoder)
    finally:
        loader.close()
        transport.close()
    assert err.value.code == ErrorCode.IMAGE_NOT_FOUND and "stale" in err.value.message
    assert loader.planes["stale"] == 2


def test_a_plane_whose_slot_does_not_hold_the_specs_size_is_not_used(
    tmp_path: Path, int8_model: Model
) -> None:
    encoder = _encoder(int8_model)
    liar = encoder.spec.model_copy(update={"width": 200, "height": 200})
    transport, loader = _transport(tmp_path, [liar]), _loader(tmp_path)
    frame = video_frame("coffee", (640, 480))
    try:
        image = _request(transport.image(frame))
        forged = image.frame.model_copy(
            update={
                "planes": [
                    p.model_copy(update={"spec": encoder.spec}) for p in image.frame.planes or []
                ]
            }
        )
        got = loader.load(FrameImage(frame=forged), encoder)
    finally:
        loader.close()
        transport.close()
    assert isinstance(got, np.ndarray) and np.array_equal(got, frame)
    assert loader.planes["unreadable"] == 1


# --- the real runtimes answer the same on the plane as on the full frame -----------------------
def _predict(model: Model) -> Callable[[np.ndarray], list[int]]:
    require_runtime(RUNTIME[model.manifest.format])
    backend = backends.create(model.manifest.format, model)
    backend.load()
    task = task_for(model)

    def top5(tensor: np.ndarray) -> list[int]:
        out = task.postprocess(backend.infer(tensor), model, top_k=5, threshold=0.0)
        return [p.index for p in out.predictions]

    return top5


@pytest.mark.parametrize("variant", ["tflite-int8", "onnx-fp32"])
def test_the_real_model_answers_the_same_from_the_plane(tmp_path: Path, variant: str) -> None:
    pytest.importorskip("skimage", reason="scikit-image provides the sample photos")
    directory = store_root() / variant
    if not (directory / "manifest.json").is_file():
        pytest.skip(f"no {variant} variant in the model store")
    model = _model(directory)
    top5, encoder = _predict(model), _encoder(model)
    transport, loader = _transport(tmp_path, [encoder.spec]), _loader(tmp_path)
    try:
        for name, frame in _frames():
            if frame.nbytes > transport.writer.slot_bytes:
                continue
            got = loader.load(_request(transport.image(frame)), encoder)
            assert isinstance(got, PlaneTensor)
            full, _ = task_for(model).prepare(frame, model)
            assert top5(got.tensor) == top5(full), name
    finally:
        loader.close()
        transport.close()


def test_detector_geometry_from_a_plane_matches_fit() -> None:
    pytest.importorskip("skimage", reason="scikit-image provides the sample photos")
    dirs = [d for d in _models(detect_store_path()) if d.name.startswith("centernet")]
    if not dirs:
        pytest.skip("no letterboxing detector in the detection store")
    model = _model(dirs[0])
    encoder = _encoder(model)
    assert encoder.spec.fit == "letterbox"
    frame = video_frame("astronaut", (640, 480))
    tensor, geometry = fit(frame, model)
    assert geometry == Geometry.letterbox(640, 480, encoder.spec.width)
    assert np.array_equal(encoder.encode(make_plane(frame, encoder.spec)), tensor)
