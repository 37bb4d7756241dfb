"""Real photos as few-shot classes, for imprinting tests and benchmarks: scikit-image's bundled
photos (several distinct objects), each seen through random crops, flips and scale changes
(seeded), and its ``lfw_subset.npy`` (100 faces, 100 non-faces: a ready two-class set).
Needs scikit-image (a test dependency) and Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# class label -> scikit-image photo; chelsea (the cat) is left out: it stays an ImageNet object.
OBJECTS: dict[str, str] = {
    "astronaut": "astronaut",
    "rocket": "rocket",
    "camera": "camera",
    "motorcycle": "stereo_motorcycle",
    "coffee": "coffee",
    "retina": "retina",
}


# Photos of other things (none of OBJECTS): what a learned class must not take in ``extend``.
OTHERS = (
    "chelsea",
    "clock",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "coins",
    "moon",
    "page",
    "text",
    "brick",
    "grass",
    "gravel",
    "cell",
    "colorwheel",
    "logo",
)


def photo(name: str) -> np.ndarray:
    """A scikit-image photo as uint8 RGB (grey replicated)."""
    import skimage.data

    if name == "stereo_motorcycle":
        img = np.asarray(skimage.data.stereo_motorcycle()[0])  # type: ignore[no-untyped-call]
    else:
        img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def views(img: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """``count`` views of ``img``: a random crop (45-95 % of the short side, anywhere), a flip
    half the time, rescaled to a random 0.5-1.5x size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    out = []
    for _ in range(count):
        side = int(rng.uniform(0.45, 0.95) * min(h, w))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        crop = img[top : top + side, left : left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        size = max(64, int(side * rng.uniform(0.5, 1.5)))
        pil = Image.fromarray(np.ascontiguousarray(crop))
        pil = pil.resize((size, size), Image.Resampling.BICUBIC)
        out.append(np.asarray(pil, dtype=np.uint8))
    return out


def object_views(count: int, seed: int) -> dict[str, list[np.ndarray]]:
    """label -> ``count`` views of each object photo (a different ``seed``: different views)."""
    return {
        label: views(photo(name), count, seed * 1000 + i)
        for i, (label, name) in enumerate(OBJECTS.items())
    }


def lfw() -> dict[str, list[np.ndarray]]:
    """``lfw_subset.npy``: {"face": 100, "other": 100} 25x25 grey images as uint8 RGB."""
    import skimage.data

    path = Path(skimage.data.__file__).parent / "lfw_subset.npy"
    data = np.load(path)
    rgb = [np.stack([np.asarray(x * 255, np.uint8)] * 3, axis=-1) for x in data]
    return {"face": rgb[:100], "other": rgb[100:]}


def write_folder(root: Path, classes: dict[str, list[np.ndarray]]) -> Path:
    """One folder per class of PNG files (``ggvision learn --data``'s layout)."""
    from PIL import Image

    for label, images in classes.items():
        d = Path(root) / label
        d.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return Path(root)
