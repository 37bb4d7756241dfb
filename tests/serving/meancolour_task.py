"""A toy second task, "mean_colour", as one plug-in file: its preprocessing (the whole image as
RGB in 0..1, NCHW, resized to the model's side), its check (three outputs) and its
postprocessing (the per-channel mean in 0..255, in the result's ``output``). Its model is any
model that averages each channel (the test builds a TorchScript one)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ggvision.serving import Model, ModelError, Task, TaskOutput
from ggvision.serving.preprocess import ImageLike

NAME = "mean_colour"


class MeanColourTask(Task):
    name = NAME

    def preprocess(self, image: ImageLike, model: Model) -> np.ndarray:
        if isinstance(image, np.ndarray):
            image = Image.fromarray(np.ascontiguousarray(image[:, :, :3]))
        rgb = image.convert("RGB")
        side = model.manifest.preprocess.resize
        if rgb.size != (side, side):
            rgb = rgb.resize((side, side), Image.Resampling.BILINEAR)
        pixels = np.asarray(rgb, dtype=np.float32) / np.float32(255.0)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))[None]

    def check(self, model: Model, output: np.ndarray) -> None:
        if output.size != 3:
            raise ModelError(f"a mean colour model outputs 3 values, not {output.size}")

    def postprocess(
        self, output: np.ndarray, model: Model, *, top_k: int, threshold: float
    ) -> TaskOutput:
        r, g, b = (round(float(v) * 255.0, 4) for v in output)
        return TaskOutput(output={"mean_colour": {"r": r, "g": g, "b": b}})
