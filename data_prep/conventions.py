"""Input conventions: how a dataset's image files become the arrays a learner
is trained on.

One function, `convert`, turns a decoded image into a `[H, W, C]` uint8 array
by a dataset's convention; the dataset readers use it for their files, and
prediction uses it for a user's images, so a trained model always sees its
inputs as it saw its training data. A convention is plain data
(`as_dict`), written into every exported SavedModel's metadata so that a
client without this project can convert images the same way.
"""

import dataclasses

import numpy as np
from PIL import Image

RESAMPLING = {"lanczos": Image.Resampling.LANCZOS,
              "bilinear": Image.Resampling.BILINEAR,
              "box": Image.Resampling.BOX}


@dataclasses.dataclass(frozen=True)
class InputConvention:
  """Attributes:
    height, width: array size; images of another size are resized.
    channels: 1 (grayscale, PIL mode "L") or 3 (RGB).
    resize: PIL resampling filter name ("lanczos", "bilinear", "box").
    invert: the array holds 255 - value: the source files are dark strokes on
      a light background and the learner sees light strokes on black.
    description: one sentence for people.
  """
  height: int
  width: int
  channels: int
  resize: str
  invert: bool
  description: str

  def as_dict(self) -> dict:
    out = dataclasses.asdict(self)
    out["value_range"] = [0.0, 1.0]
    out["scale"] = "float32 value / 255 after the conversion"
    return out

  @classmethod
  def from_dict(cls, d: dict) -> "InputConvention":
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})

  @property
  def shape(self) -> tuple[int, int, int]:
    return (self.height, self.width, self.channels)


OMNIGLOT = InputConvention(
    height=28, width=28, channels=1, resize="lanczos", invert=True,
    description="Grayscale; the official files' black strokes on white are "
                "inverted to white strokes (1) on black (0); 105x105 "
                "resized to 28x28 with a Lanczos filter.")

MINI_IMAGENET = InputConvention(
    height=84, width=84, channels=3, resize="bilinear", invert=False,
    description="RGB; resized to 84x84 with a bilinear filter; values / 255.")

CUB = InputConvention(
    height=84, width=84, channels=3, resize="bilinear", invert=False,
    description="RGB; the whole image resized to 84x84 with a bilinear "
                "filter; values / 255.")

BY_DATASET = {"omniglot": OMNIGLOT, "mini_imagenet": MINI_IMAGENET,
              "cub": CUB}


def convert(image: Image.Image, convention: InputConvention,
            invert: bool | None = None) -> np.ndarray:
  """A PIL image -> `[H, W, C]` uint8 by `convention`.

  Args:
    invert: override the convention's inversion (None: the convention's).
  """
  image = image.convert("L" if convention.channels == 1 else "RGB")
  if convention.invert if invert is None else invert:
    image = Image.fromarray(255 - np.asarray(image, dtype=np.uint8))
  size = (convention.width, convention.height)
  if image.size != size:
    image = image.resize(size, RESAMPLING[convention.resize])
  array = np.asarray(image, dtype=np.uint8)
  return array.reshape(convention.shape)
