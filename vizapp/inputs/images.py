"""Reading images the way a model expects them, whatever Pillow can open.

RGB, grey, 16-bit and float, RGBA/LA (composited on white), CMYK, palette and
EXIF-rotated files all become an upright 8-bit RGB image; decompression bombs and
unreadable files raise :class:`~vizapp.core.errors.ImageError` naming the file.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vizapp.core.errors import ImageError

__all__ = ["MAX_ASPECT", "MAX_PIXELS", "SampleImage", "lab_samples", "load_image", "to_rgb", "sample_images"]

#: Largest image accepted (about 180 megapixels, twice Pillow's default warning level).
MAX_PIXELS = 2 * 89_478_485

#: Longest side / shortest side accepted. Models see a square centre crop of the image
#: resized to its shorter side: past 50:1 that crop shows under 2 % of the image's length.
MAX_ASPECT = 50


def _scale_to_uint8(array: np.ndarray, full_scale: float | None) -> np.ndarray:
    """16-bit data keeps its meaning (``full_scale`` 65535); 32-bit int and float are stretched."""
    values = array.astype(np.float64)
    if full_scale is not None:
        scaled = values / full_scale
    else:
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if 0.0 <= lo and hi <= 1.0 and array.dtype.kind == "f":
            lo, hi = 0.0, 1.0
        scaled = (np.nan_to_num(values, nan=lo, posinf=hi, neginf=lo) - lo) / (hi - lo if hi > lo else 1.0)
    return np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to upright 8-bit RGB."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image), 65535.0), "L").convert("RGB")
    if mode in ("I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image), None), "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _ratio_text(long: int, short: int) -> str:
    """``long / short`` with just enough decimals to show it is over ``MAX_ASPECT``
    (5001 x 100 is ``50.01``, not ``50``)."""
    decimals = 0
    while float(f"{long / short:.{decimals}f}") <= MAX_ASPECT and decimals < 9:
        decimals += 1
    return f"{long / short:.{decimals}f}"


def load_image(source: str | Path | bytes) -> Image.Image:
    """Open an image file (or bytes) as upright 8-bit RGB.

    Raises
    ------
    ImageError
        The file is missing, not an image, truncated, too large to decode safely, or
        longer than ``MAX_ASPECT`` times its width (checked from the header, before decoding).
    """
    name = "pasted image" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise ImageError(f"{name}: no such image file")
    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                w, h = im.size
                if max(w, h) > MAX_ASPECT * min(w, h):
                    raise ImageError(
                        f"{name}: {w}x{h} pixels is {_ratio_text(max(w, h), max(1, min(w, h)))}:1; models see a square "
                        f"centre crop, so images longer than {MAX_ASPECT}:1 are refused (crop it first)"
                    )
                im.load()
                return to_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: too many pixels to decode safely (limit {MAX_PIXELS:,})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name}: the image is damaged or truncated ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old


@dataclass(frozen=True)
class SampleImage:
    name: str
    path: Path


_SAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "hubble_deep_field",
            "ihc", "retina", "camera", "coins", "moon", "horse")


def lab_samples() -> list[SampleImage]:
    """Held-out images of the shapes and digits sets (``resources/samples``), one per class:
    what the models this project trains (``tinyvgg_shapes``, ``vit_digits``) were made for."""
    from vizapp.core.paths import resource

    folder = resource("samples")
    return [SampleImage(p.stem, p) for p in sorted(folder.glob("*.png"))]


def sample_images() -> list[SampleImage]:
    """The sample photographs that ship inside scikit-image's wheel (no download)."""
    try:
        import skimage.data
    except ImportError:
        return []
    folder = Path(skimage.data.__file__).parent
    found = []
    for name in _SAMPLES:
        for candidate in sorted(folder.glob(f"{name}.*")):
            if candidate.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif"):
                found.append(SampleImage(name, candidate))
                break
    return found
