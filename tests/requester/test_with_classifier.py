"""The requester end to end against the REAL classifier component: real model files, real photos
(scikit-image's samples as JPEG and PNG), real processes on a real IPC core."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image, ImageChops

from tests.requester.conftest import Classified, read_jsonl

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
PHOTOS = {
    "chelsea.jpg",
    "coffee.jpg",
    "astronaut.jpg",
    "rocket.jpg",
    "stereo_motorcycle.jpg",
    "camera.png",
    "clock.png",
}


def test_every_photo_is_answered_and_written_as_jsonl_csv_and_annotated_copies(
    classified: Classified, tmp_path: Path
) -> None:
    annotated = tmp_path / "annotated"
    run = classified.bench.run(
        {"imageDirectory": str(classified.images), "annotateDirectory": str(annotated)}
    )
    assert run.rc == 0, run.stderr
    by_image = run.by_image()
    assert set(by_image) == PHOTOS
    assert len({r["id"] for r in run.jsonl}) == len(PHOTOS)
    for record in run.jsonl:
        assert record["status"] == "ok", record
        assert record["error"] is None
        assert record["attempts"] == 1
        assert record["latency_ms"] > 0
        top = record["predictions"][0]
        assert (record["label"], record["score"]) == (top["label"], top["score"])
        assert len(record["predictions"]) == 5  # the classifier's topK
        assert record["image"] == str(classified.images / Path(record["image"]).name)
    assert by_image["chelsea.jpg"]["label"] in CATS
    assert by_image["coffee.jpg"]["label"] == "espresso"

    # The CSV holds the same answers, one row per request.
    assert len(run.csv) == len(run.jsonl)
    for row in run.csv:
        record = next(r for r in run.jsonl if r["id"] == row["id"])
        assert (row["image"], row["status"], row["label"], row["error_code"]) == (
            record["image"],
            "ok",
            record["label"],
            "",
        )
        assert float(row["score"]) == round(record["score"], 6)
        assert float(row["latency_ms"]) == round(record["latency_ms"], 3)
        assert row["attempts"] == "1"

    # Annotated copies: valid images of the original's size and format, visibly changed.
    assert {p.name for p in annotated.iterdir()} == PHOTOS
    for name in PHOTOS:
        with Image.open(classified.images / name) as original, Image.open(annotated / name) as copy:
            assert copy.format == original.format
            assert copy.size == original.size
            diff = ImageChops.difference(copy.convert("RGB"), original.convert("RGB"))
            assert diff.getbbox() is not None, f"{name} was not annotated"
            box = diff.getbbox()
            assert box is not None
            assert box[0] < 10 and box[1] < 10  # the label sits in the top-left corner

    summary = classified.bench.summary(run)
    assert (summary["count"], summary["ok"], summary["timeouts"], summary["errors"]) == (
        len(PHOTOS),
        len(PHOTOS),
        0,
        {},
    )
    lat = summary["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert lat["max"] == max(r["latency_ms"] for r in run.jsonl)
    assert summary["throughput_per_s"] > 0


def test_the_seed_request_form(classified: Classified) -> None:
    run = classified.bench.run(
        {
            "images": [
                str(classified.images / "coffee.jpg"),
                str(classified.images / "chelsea.jpg"),
            ],
            "requestForm": "seed",
        }
    )
    assert run.rc == 0, run.stderr
    by_image = run.by_image()
    assert by_image["coffee.jpg"]["label"] == "espresso"
    assert by_image["chelsea.jpg"]["label"] in CATS
    assert {r["transport"] for r in run.jsonl} == {"seed"}


def test_inline_transport_for_small_files(classified: Classified, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    with Image.open(classified.images / "chelsea.jpg") as img:
        img.resize((225, 150)).save(small / "chelsea.jpg", quality=90)
    # tmp_path is outside the classifier's allowedDirectories: only an inline image can work.
    run = classified.bench.run({"imageDirectory": str(small), "transport": "inline"})
    assert run.rc == 0, run.stderr
    [record] = run.jsonl
    assert (record["transport"], record["status"]) == ("inline", "ok")
    assert record["label"] in CATS


def test_error_answers_are_recorded_and_still_exit_zero(
    classified: Classified, tmp_path: Path
) -> None:
    broken = classified.images / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    outside = tmp_path / "outside.jpg"
    shutil.copy(classified.images / "coffee.jpg", outside)
    try:
        run = classified.bench.run(
            {"images": [str(broken), str(outside), str(classified.images / "coffee.jpg")]}
        )
    finally:
        broken.unlink()
    assert run.rc == 0, run.stderr
    codes = {Path(r["image"]).name: (r["error"] or {}).get("code") for r in run.jsonl}
    assert codes == {
        "broken.jpg": "IMAGE_DECODE_FAILED",
        "outside.jpg": "PATH_NOT_ALLOWED",
        "coffee.jpg": None,
    }
    assert {row["error_code"] for row in run.csv} == {"IMAGE_DECODE_FAILED", "PATH_NOT_ALLOWED", ""}
    summary = classified.bench.summary(run)
    assert summary["errors"] == {"IMAGE_DECODE_FAILED": 1, "PATH_NOT_ALLOWED": 1}
    assert summary["ok"] == 1


def test_the_command_line_for_people(classified: Classified, tmp_path: Path) -> None:
    jsonl, table, annotated = tmp_path / "cli.jsonl", tmp_path / "cli.csv", tmp_path / "ann"
    run = classified.bench.run(
        {"outputJsonl": "", "outputCsv": "", "repeat": 0},  # the flags override these
        args=[
            "--once",
            str(classified.images / "coffee.jpg"),
            str(classified.images / "clock.png"),
            "--jsonl",
            str(jsonl),
            "--csv",
            str(table),
            "--annotate",
            str(annotated),
            "--timeout",
            "10",
            "--retries",
            "1",
        ],
    )
    assert run.rc == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["image", "status", "label/error", "score", "ms", "tries"]
    assert lines[2].split()[:3] == ["coffee.jpg", "ok", "espresso"]
    assert lines[3].split()[:2] == ["clock.png", "ok"]
    assert "2 requests: 2 ok, errors: none, timeouts 0" in run.stdout
    assert "latency ms: p50" in run.stdout
    assert run.stderr == ""  # warnings only; nothing went wrong
    assert jsonl.read_text().count("\n") == 2
    assert table.read_text().count("\n") == 3
    assert {p.name for p in annotated.iterdir()} == {"coffee.jpg", "clock.png"}
    run.jsonl = read_jsonl(jsonl)
    assert classified.bench.summary(run)["ok"] == 2
