"""Micro-batching benchmark: results/s of each backend at batch 1, 2, 4 and 8, per thread count.

For each classification variant of the model store with its default backend, loaded as the
classifier loads it (:func:`ggvision.serving.models.loading.prepare_model`), a timed loop of
:meth:`~ggvision.serving.models.backends.base.Backend.infer_batch` on preprocessed photos (the
same photos in every run) after a warm-up at that batch size. A backend whose model is fixed to
batch 1 (ONNX from the store, DLR) runs the batch one input after the other: its row shows what
batching a loop costs (nothing) and is marked ``unbatched``.

The gain of batch N is results/s at N over results/s at 1, in the same run and thread count;
``maxBatch``'s default is chosen from it (README: Micro-batching). Every batched result is also
checked against the same input run alone (max abs difference of the scores).

Usage: python -m bench.batching [--variants V ...] [--threads T ...] [--seconds S] [--out DIR]
Writes DIR/batching.json and DIR/batching.md (default build/bench).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import _report
from ggvision.serving.models.loading import prepare_model
from ggvision.serving.preprocess import preprocess

BATCHES = (1, 2, 4, 8)
ROUNDS = 5
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "cat", "hubble_deep_field", "moon")


@dataclass(frozen=True)
class Settings:
    """What :func:`prepare_model` reads (the fields of a classifier's configuration)."""

    model_key: str
    model_store_path: str
    threads: int
    model_store_layout: str = "ggvision"
    backend: str = ""
    delegate: str = ""
    delegate_fallback: str = "error"

    @property
    def model_resource_key(self) -> dict[str, str]:
        return {}

    @property
    def delegate_options(self) -> dict[str, str]:
        return {}

    @property
    def inference_threads(self) -> int:
        return self.threads

    def model_identity(self) -> tuple[Any, ...]:
        return (self.model_key, self.threads)


def photos(manifest: Any) -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in PHOTOS:
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        out.append(preprocess(image[..., :3], manifest))
    return out


def measure(store: Path, variant: str, threads: int, seconds: float) -> dict[str, Any]:
    active = prepare_model(Settings(variant, str(store), threads))
    backend = active.backend
    inputs = photos(active.model.manifest)
    alone = [backend.infer(t) for t in inputs]
    row: dict[str, Any] = {
        "variant": variant,
        "backend": backend.name,
        "threads": threads,
        "batchable": backend.batchable,
        "results_per_s": {},
        "max_abs_diff": 0.0,
    }
    batches = {n: [inputs[i % len(inputs)] for i in range(n)] for n in BATCHES}
    for batch in batches.values():
        for _ in range(3):  # warm-up (the first run at a new batch size re-plans the graph)
            outs = backend.infer_batch(batch)
        diff = max(float(np.abs(o - alone[i % len(inputs)]).max()) for i, o in enumerate(outs))
        row["max_abs_diff"] = max(row["max_abs_diff"], diff)
    # Interleaved rounds (b1, b2, b4, b8, b1, ...), the median round per size: the machine's
    # load drifts over a run, and every size sees the same drift.
    rates: dict[int, list[float]] = {n: [] for n in BATCHES}
    for _ in range(ROUNDS):
        for n, batch in batches.items():
            done, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds / ROUNDS or done < 2 * n:
                backend.infer_batch(batch)
                done += n
            rates[n].append(done / elapsed)
    for n in BATCHES:
        row["results_per_s"][str(n)] = round(statistics.median(rates[n]), 1)
    backend.close()
    base = row["results_per_s"]["1"]
    row["gain"] = {k: round(v / base, 2) for k, v in row["results_per_s"].items()}
    return row


def main(argv: list[str] | None = None) -> int:
    p = _report.parser("bench.batching", __doc__)
    p.add_argument("--variants", nargs="*", default=None)
    p.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    p.add_argument("--seconds", type=float, default=3.0, help="per batch size")
    args = p.parse_args(argv)
    run = _report.Run()
    store = _report.model_store()
    index = json.loads((store / "index.json").read_text())
    variants = args.variants or [
        v["variant"]
        for v in index["variants"]
        if v.get("task", "classification") == "classification"
    ]
    rows = []
    for variant in variants:
        for threads in args.threads:
            try:
                rows.append(measure(store, variant, threads, args.seconds))
            except Exception as exc:  # boundary: a runtime missing here skips its rows
                print(f"{variant} @ {threads} threads: skipped ({exc})")
                continue
            r = rows[-1]
            print(
                f"{variant:24} t={threads} {'batched' if r['batchable'] else 'unbatched':9} "
                + "  ".join(
                    f"b{k}={v:7.1f}/s x{r['gain'][k]:.2f}" for k, v in r["results_per_s"].items()
                )
                + f"  maxdiff={r['max_abs_diff']:.2g}"
            )
    lines = [
        "| variant | backend | threads | batched | "
        + " | ".join(f"b{n} results/s (x b1)" for n in BATCHES)
        + " | max abs diff |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in BATCHES) + " | --- |",
    ]
    for r in rows:
        cells = [f"{r['results_per_s'][str(n)]} (x{r['gain'][str(n)]})" for n in BATCHES]
        lines.append(
            f"| {r['variant']} | {r['backend']} | {r['threads']} | "
            f"{'yes' if r['batchable'] else 'no (fixed batch 1)'} | "
            + " | ".join(cells)
            + f" | {r['max_abs_diff']:.2g} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batching.json").write_text(
        json.dumps({"setup": run.machine(), "rows": rows}, indent=2) + "\n"
    )
    (args.out / "batching.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"load before: {run.load_before}, cpus: {os.cpu_count()}, wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
