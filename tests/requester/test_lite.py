"""The requester on a core with the ``lite`` profile (Greengrass nucleus lite's 10,000-byte IPC
messages), against the real classifier: with ``transport: inline`` an image whose request fits
one Lite message goes inline, a bigger one goes by path (the requester learns the limit from
how the Nucleus answers SubscribeToValidateConfigurationUpdates), and every photo is answered."""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from ggvision_requester.config import RequesterConfig
from ggvision_requester.images import build_request
from PIL import Image

from ggvision.bus import LITE_MAX_MESSAGE_BYTES
from ggvision.core.limits import LiteLimits
from ggvision.testing.harness import CoreThread
from tests.requester.conftest import Bench, photo_files, stop, store  # noqa: F401 - fixtures


def test_the_bus_and_the_core_agree_on_lites_message_size() -> None:
    assert LiteLimits().max_message_bytes == LITE_MAX_MESSAGE_BYTES


def test_an_inline_request_that_would_not_fit_goes_by_path(tmp_path: Path) -> None:
    cfg = RequesterConfig(transport="inline")
    small, big = tmp_path / "small.jpg", tmp_path / "big.jpg"
    small.write_bytes(b"\xff\xd8" + b"\0" * 4000)
    big.write_bytes(b"\xff\xd8" + b"\0" * 6000)
    assert build_request(cfg, "a", small, max_message_bytes=10_000)[1] == "inline"
    assert build_request(cfg, "b", big, max_message_bytes=10_000)[1] == "path"
    assert build_request(cfg, "c", big)[1] == "inline"  # no limit known: as before
    # The estimate holds: the inline request, as the bus publishes it, fits.
    request, _ = build_request(cfg, "a", small, max_message_bytes=10_000)
    published = json.dumps(
        {"topic": "local/inference", "publishMessage": {"binaryMessage": {"message": ""}}}
    )
    wire = len(published) + len(base64.b64encode(json.dumps(request).encode()))
    assert wire + 200 < 10_000  # 200: the event-stream headers of a PublishToTopic


def test_inline_requests_on_lite_fit_or_go_by_path(
    store: Path,  # noqa: F811
    photo_files: dict[str, Path],  # noqa: F811
) -> None:
    from tests.classifier.test_service import start_classifier

    images = Path(tempfile.mkdtemp(prefix="ggv-req-", dir="/tmp"))
    out = Path(tempfile.mkdtemp(prefix="ggv-req-out-", dir="/tmp"))
    try:
        shutil.copy(photo_files["chelsea"], images / "chelsea.jpg")  # ~40 KB: by path
        buf = io.BytesIO()
        rng = np.random.default_rng(3)
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
        assert len(buf.getvalue()) < 4500
        (images / "tiny.jpg").write_bytes(buf.getvalue())
        with CoreThread(profile="lite") as core:
            proc = start_classifier(core, store, {"allowedDirectories": [str(images)]})
            bench = Bench(core, out)
            try:
                run = bench.run({"imageDirectory": str(images), "transport": "inline"})
            finally:
                bench.close()
                stop(proc)
        assert run.rc == 0, run.stderr
        by_image = run.by_image()
        assert {Path(k).name for k in by_image} == {"chelsea.jpg", "tiny.jpg"}
        assert all(r["status"] == "ok" for r in run.jsonl), run.jsonl
        transports = {Path(r["image"]).name: r["transport"] for r in run.jsonl}
        assert transports == {"chelsea.jpg": "path", "tiny.jpg": "inline"}
    finally:
        shutil.rmtree(images, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
