"""Turn user files into model inputs for `keraslab predict`.

* :func:`load_image` reads any Pillow-readable picture and returns a float32
  28x28 array in [0, 1] in Fashion-MNIST's convention (light garment on a black
  background, centred by centre of mass).
* :func:`read_texts` collects `--text` strings and review files (one review per
  line) into a list of strings for a text model.

Everything a user can get wrong raises :class:`keraslab.errors.KeraslabError`
with a one-line message that names the file and a hint on how to fix it.
See docs/predict.md for the user-facing description of these steps.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from keraslab.errors import KeraslabError

__all__ = [
    "IMAGE_SIZE",
    "FOREGROUND_THRESHOLD",
    "load_image",
    "read_texts",
]

#: Side of the square images Fashion-MNIST models expect.
IMAGE_SIZE = 28

#: A pixel belongs to the garment when it is brighter than the background level
#: by more than this many grey levels (of 255). 5% of full scale, the same
#: "closeness" Fashion-MNIST used when it trimmed product photos.
FOREGROUND_THRESHOLD = 0.05 * 255

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- images


def load_image(path: PathLike, *, centre: str = "box") -> np.ndarray:
    """Read an image file and return it as a Fashion-MNIST-style float32 (28, 28) array in [0, 1].

    Steps (docs/predict.md describes them for users):

    1. Open with Pillow (PNG, JPEG, GIF, BMP, TIFF, WebP, ...; the first frame
       of an animation) and apply the EXIF orientation.
    2. Composite any transparency onto white, then convert to 8-bit-range
       grayscale (16-bit images are scaled from 0..65535).
    3. If the outer ring of pixels is mostly light (median > 127), invert, so a
       dark garment on white (a product photo) becomes a light garment on black.
    4. Refuse an image with no foreground: no pixel brighter than the
       background level (median of the outer ring) by more than
       :data:`FOREGROUND_THRESHOLD`.
    5. An image that is already 28x28 is returned as is (pixels / 255).
       Anything else: the background level is mapped to black, the image is
       cropped to the bounding box of the foreground, resized (LANCZOS) so its
       longest edge is 28 keeping the aspect ratio, and pasted into a black
       28x28 canvas, centred.

    `centre` chooses how the short edge is centred. ``"box"`` (default)
    centres the garment's bounding box, offset ``ceil((28 - extent) / 2)``,
    which is what the Fashion-MNIST data actually does: its README says "put
    the image to the center of the canvas", and in the t10k images the margin
    before the garment equals that offset for 94-99.8% of images per axis; the
    bounding-box centre varies by < 0.35 px within a class, the centre of mass
    by up to 2 px. (Fashion-MNIST also sharpened; we do not.)
    ``"mass"`` puts the centre of mass on the canvas centre (MNIST-style),
    clipped so the garment stays inside the canvas.
    """
    if centre not in ("box", "mass"):
        raise ValueError(f"centre must be 'box' or 'mass', not {centre!r}")
    path = Path(path)
    img = _open_image(path)
    gray = _to_gray(img, path)  # float32, 0..255, shape (height, width)

    border = _border(gray)
    if np.median(border) > 127:
        gray = np.float32(255) - gray
        border = np.float32(255) - border
    background = float(np.median(border))

    foreground = gray > background + FOREGROUND_THRESHOLD
    if not foreground.any():
        raise KeraslabError(
            f"{path}: no garment found (nothing stands out from the background)",
            "use a photo of a single garment on a plain background that fills most of the frame",
        )

    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return np.clip(gray / np.float32(255), 0, 1).astype(np.float32)

    # Map the background level to black, keeping the brighter range.
    if background > 0:
        gray = np.clip((gray - background) * np.float32(255 / (255 - background)), 0, 255)

    rows = np.flatnonzero(foreground.any(axis=1))
    cols = np.flatnonzero(foreground.any(axis=0))
    crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    height, width = crop.shape
    scale = IMAGE_SIZE / max(height, width)
    new_w = min(IMAGE_SIZE, max(1, round(width * scale)))
    new_h = min(IMAGE_SIZE, max(1, round(height * scale)))
    resized = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32)).resize(
        (new_w, new_h), Image.Resampling.LANCZOS
    )
    patch = np.clip(np.asarray(resized, dtype=np.float32), 0, 255)  # LANCZOS may overshoot

    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    top = _centred_offset(patch, axis=0, centre=centre)
    left = _centred_offset(patch, axis=1, centre=centre)
    canvas[top : top + new_h, left : left + new_w] = patch
    return np.clip(canvas / np.float32(255), 0, 1).astype(np.float32)


def _open_image(path: Path) -> Image.Image:
    if not path.exists():
        raise KeraslabError(f"{path}: no such file", "check the path and spelling")
    if path.is_dir():
        raise KeraslabError(f"{path} is a directory, not an image", "pass image files, e.g. shoe.jpg")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise KeraslabError(f"{path}: cannot read ({exc.strerror or exc})", "check the file's permissions")
    if size == 0:
        raise KeraslabError(f"{path} is empty (0 bytes)", "pass a PNG or JPEG image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()  # decode now, so truncated/corrupt data fails here
            img = ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        if isinstance(exc, UnidentifiedImageError):
            what = "is not a readable image (unknown format or not a picture)"
        else:
            what = "is too large to open safely"
        raise KeraslabError(f"{path} {what}", "pass a PNG, JPEG or other common image file") from exc
    except PermissionError as exc:
        raise KeraslabError(f"{path}: permission denied", "check the file's permissions") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise KeraslabError(
            f"{path} is a corrupt or truncated image ({detail})",
            "re-export or re-download the picture as PNG or JPEG",
        ) from exc
    return img


def _to_gray(img: Image.Image, path: Path) -> np.ndarray:
    """Grayscale float32 array in 0..255; transparency composited onto white."""
    mode = img.mode
    try:
        if mode in _SIXTEEN_BIT_MODES:
            arr = np.asarray(img).astype(np.float32) * np.float32(255 / 65535)
        elif mode == "I":
            # 32-bit integer: in practice a 16-bit PNG/TIFF; 8-bit range if nothing exceeds 255.
            arr = np.asarray(img).astype(np.float64)
            arr = arr * (255 / 65535) if arr.max() > 255 else arr
            arr = np.clip(arr, 0, 255).astype(np.float32)
        elif mode == "F":
            arr = np.asarray(img).astype(np.float32)
            arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
            arr = arr * np.float32(255) if arr.max() <= 1.0 else arr
            arr = np.clip(arr, 0, 255).astype(np.float32)
        elif mode in _ALPHA_MODES or "transparency" in img.info:
            rgba = img.convert("RGBA")
            alpha = np.asarray(rgba.getchannel("A")).astype(np.float32) / np.float32(255)
            luma = np.asarray(rgba.convert("RGB").convert("L")).astype(np.float32)
            arr = luma * alpha + np.float32(255) * (1 - alpha)
        elif mode == "L":
            arr = np.asarray(img).astype(np.float32)
        else:  # 1, P, RGB, CMYK, YCbCr, LAB, HSV, ...
            if mode != "RGB":
                img = img.convert("RGB")
            arr = np.asarray(img.convert("L")).astype(np.float32)
    except (ValueError, OSError) as exc:
        raise KeraslabError(
            f"{path}: cannot convert image mode {mode!r} to grayscale ({exc})",
            "re-save the picture as an 8-bit RGB PNG or JPEG",
        ) from exc
    if arr.ndim != 2 or arr.size == 0:
        raise KeraslabError(f"{path}: image has no pixels", "pass a PNG or JPEG image file")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _border(gray: np.ndarray) -> np.ndarray:
    """The outer one-pixel ring, each pixel once."""
    if gray.shape[0] <= 2 or gray.shape[1] <= 2:
        return gray.ravel()
    return np.concatenate([gray[0, :], gray[-1, :], gray[1:-1, 0], gray[1:-1, -1]])


def _centred_offset(patch: np.ndarray, axis: int, centre: str) -> int:
    """Offset along `axis` that centres the patch ("box") or its centre of mass ("mass")."""
    extent = patch.shape[axis]
    if centre == "box":
        return (IMAGE_SIZE - extent + 1) // 2
    profile = patch.sum(axis=1 - axis).astype(np.float64)
    total = profile.sum()
    mass_centre = (profile * np.arange(extent)).sum() / total if total > 0 else (extent - 1) / 2
    offset = int(round((IMAGE_SIZE - 1) / 2 - mass_centre))
    return min(max(offset, 0), IMAGE_SIZE - extent)


# --------------------------------------------------------------------------- texts


def read_texts(texts: list[str] | None, files: list[PathLike] | None) -> list[str]:
    """Collect reviews: every `--text` string first, then each file's lines, in order.

    * A `--text` that is empty or only whitespace is an error; otherwise it is
      passed through unchanged.
    * Files are UTF-8 (a leading UTF-8 BOM is dropped), one review per line;
      CRLF/CR line endings are accepted, line endings are stripped and blank
      (whitespace-only) lines are skipped. A file with no non-blank line, a
      missing file, a directory or a file that is not valid UTF-8 (the error
      names the byte offset) is an error.
    * Long reviews, HTML (e.g. ``<br />``) and non-English text are passed
      through unchanged: the model's own TextVectorization standardizes and
      truncates them.
    * Neither texts nor files: error.
    """
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    texts = list(texts or [])
    files = list(files or [])
    if not texts and not files:
        raise KeraslabError(
            "no reviews to predict",
            'pass --text "some review" or a text file with one review per line',
        )

    reviews: list[str] = []
    for number, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            raise KeraslabError(f"--text #{number} is not a string ({type(text).__name__})")
        if not text.strip():
            raise KeraslabError(
                f"--text #{number} is empty",
                'give the review text, e.g. --text "A wonderful film"',
            )
        reviews.append(text)
    for file in files:
        reviews.extend(_read_review_file(Path(file)))
    return reviews


_UTF8_BOM = b"\xef\xbb\xbf"


def _read_review_file(path: Path) -> list[str]:
    if not path.exists():
        raise KeraslabError(f"{path}: no such file", "check the path, or pass the review with --text")
    if path.is_dir():
        raise KeraslabError(f"{path} is a directory", "pass a text file with one review per line")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeraslabError(f"{path}: cannot read ({exc.strerror or exc})", "check the file's permissions") from exc

    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    try:
        content = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data[:offset].count(b"\n") + 1
        converted = path.with_name(f"{path.stem}.utf8.txt")
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = f"it looks like UTF-16; convert it: iconv -f utf-16 -t utf-8 {path} > {converted}"
        else:
            hint = f"convert it, e.g. iconv -f latin1 -t utf-8 {path} > {converted}"
        raise KeraslabError(
            f"{path} is not UTF-8: byte 0x{data[offset]:02x} at offset {offset} (line {line}) is invalid",
            hint,
        ) from exc

    lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    reviews = [line for line in lines if line.strip()]
    if not reviews:
        raise KeraslabError(
            f"{path} has no reviews (it is empty or every line is blank)",
            "put one review per line",
        )
    return reviews
