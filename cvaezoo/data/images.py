"""Image files into tensors (Pillow): one reader for image folders, CelebA-style folders and new images to classify."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cvaezoo.errors import MissingFileError, UserError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Pillow modes of up to 8 bits per channel, which Pillow converts to 8-bit grey ("L") or "RGB" itself
EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")
#: Pillow modes of deeper grey pixels and the largest value of their scale: unsigned 16-bit, 32-bit integers
#: (read on the 16-bit scale) and floats (already in [0, 1])
DEEP_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535, "F": 1}
GREY_MODES = ("1", "L", "LA", *DEEP_MODES)


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (any depth), sorted; hidden files and other suffixes are skipped."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise MissingFileError(f"image {path} not found")
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path} is not a readable image ({exc})") from None


def is_grey(path: Path) -> bool:
    """Whether the image has one channel: a grey mode, or a palette of grey entries only."""
    with _open(path) as picture:
        if picture.mode in ("P", "PA"):  # a palette: grey when every palette entry is
            rgb = np.asarray(picture.convert("RGB"))
            return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        return picture.mode in GREY_MODES


def _over_black(picture):
    """An 8-bit picture with an alpha channel or a transparent colour, composited onto opaque black."""
    from PIL import Image

    rgba = picture.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")


def _deep_to_unit(picture, path: Path):
    """A deep grey picture as a float ("F") picture in [0, 1], divided by the top of its mode's scale
    (:data:`DEEP_MODES`); values off that scale are refused rather than clipped."""
    from PIL import Image

    array = np.asarray(picture).astype(np.float32)
    top = DEEP_MODES[picture.mode]
    if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= top):
        found = f"{array.min():g}..{array.max():g}" if np.isfinite(array).all() else "NaN or infinite values"
        rule = "float pixels must lie in [0, 1]" if picture.mode == "F" else \
            "32-bit integer pixels must lie in 0..65535 (read as 16-bit)"
        raise UserError(f"{path}: {rule}, found {found}")
    return Image.fromarray(array / top)


def _converted(picture, path: Path, channels: int):
    """``picture`` as 8-bit grey ("L"), 8-bit "RGB" or, for deep grey modes, a float ("F") picture in [0, 1]."""
    if picture.mode in DEEP_MODES:
        return _deep_to_unit(picture, path)
    if picture.mode not in EIGHT_BIT_MODES:
        raise UserError(f"{path}: Pillow mode {picture.mode} is not supported (save the image as grey or RGB)")
    if "A" in picture.mode or "transparency" in picture.info:
        picture = _over_black(picture)
    return picture.convert("L" if channels == 1 else "RGB")


def read_image(path: Path, channels: int, size: int | None = None) -> Tensor:
    """One image as a (channels, H, W) float tensor in [0, 1]: converted to grey (1) or RGB (3) and, with
    ``size``, centre-cropped to a square and resized to size x size.

    Each Pillow mode is read on its own scale. 8-bit modes ("1", "L", "P", "RGB", "CMYK", "YCbCr", ...) are
    converted by Pillow and divided by 255; transparency (an alpha channel, or a palette's or PNG's
    transparent colour) is composited onto black, so a pixel keeps alpha/255 of its colour and a fully
    transparent one reads 0. Deep grey modes keep their levels: 16-bit ("I;16", "I;16B", ...) is divided by
    65535, 32-bit integers ("I") must lie in 0..65535 and are read as 16-bit, floats ("F") must lie in [0, 1];
    values outside are an error, not clipped (these modes have no alpha; a 16-bit PNG's transparent colour
    is ignored). Grey becomes RGB by repetition, colour becomes grey with Pillow's weights (ITU-R 601-2).
    Other modes (e.g. "LAB") are refused."""
    from PIL import Image

    with _open(path) as picture:
        try:
            picture = _converted(picture, path, channels)
        except OSError as exc:  # a truncated file fails when its pixels are read
            raise UserError(f"{path} is not a readable image ({exc})") from None
        if size is not None:
            side = min(picture.size)
            left, top = (picture.width - side) // 2, (picture.height - side) // 2
            picture = picture.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        array = np.asarray(picture, dtype=np.float32)
    array = np.clip(array, 0.0, 1.0) if picture.mode == "F" else array / 255.0
    if array.ndim == 2:
        array = np.repeat(array[..., None], channels, axis=-1)  # grey, repeated for RGB
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def pixel_levels(images: Tensor) -> int:
    """How many levels the pixels are on, for the default likelihood: 256 when every value is one of the
    8-bit values k/255 (8-bit files, and deeper ones holding 8-bit values, v * 257 in 16 bits), else 65536."""
    scaled = images * 255.0
    return 256 if torch.allclose(scaled, scaled.round(), rtol=0.0, atol=1e-3) else 65536


def read_images(paths: Sequence[Path], channels: int | None = None, size: int | None = None) -> Tensor:
    """Images as (N, C, H, W) in [0, 1]. ``channels`` None: 1 when every image is grey, else 3. ``size`` None:
    the images' own size, which must then be the same for all."""
    if channels not in (None, 1, 3):
        raise UserError(f"data.channels must be 1, 3 or null (decide from the images), got {channels}")
    if size is not None and size <= 0:
        raise UserError(f"data.image_size must be positive or null, got {size}")
    if channels is None:
        channels = 1 if all(is_grey(p) for p in paths) else 3
    images = [read_image(p, channels, size) for p in paths]
    shapes = {tuple(i.shape[1:]) for i in images}
    if len(shapes) > 1:
        first = {tuple(i.shape[1:]): p.name for p, i in zip(paths, images)}
        examples = ", ".join(f"{name} {h}x{w}" for (h, w), name in list(first.items())[:3])
        raise UserError(f"the images have different sizes ({examples}); set data.image_size to resize them")
    return torch.stack(images)


def expand_image_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files and folders (their image files, sorted) named on a command line, in the order given."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = image_files(item)
            if not files:
                raise UserError(f"{item} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(files)
        elif item.is_file():
            if item.suffix.lower() not in (*IMAGE_SUFFIXES, ".npy"):
                raise UserError(f"{item}: not an image ({', '.join(IMAGE_SUFFIXES)}) or a .npy batch of images")
            found.append(item)
        else:
            raise MissingFileError(f"{item} not found")
    return found


def to_shape(images: Tensor, shape: Sequence[int]) -> Tensor:
    """(N, C, H, W) images in [0, 1] converted to ``shape`` = (C', H', W'): grey from RGB with Pillow's weights
    (ITU-R 601-2), RGB from grey by repetition, and a bilinear (antialiased) resize to H' x W'."""
    channels, height, width = (int(s) for s in shape)
    if images.shape[1] == 3 and channels == 1:
        images = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif images.shape[1] == 1 and channels == 3:
        images = images.repeat(1, 3, 1, 1)
    if tuple(images.shape[2:]) != (height, width):
        images = torch.nn.functional.interpolate(images, size=(height, width), mode="bilinear", antialias=True,
                                                 align_corners=False).clamp(0, 1)
    return images


def array_images(array: np.ndarray, source: str) -> Tensor:
    """A .npy batch as (N, C, H, W) in [0, 1]: (N, H, W), (N, C, H, W) or (N, H, W, C) with C 1 or 3; uint8 is
    divided by 255, floats must already be finite and lie in [0, 1] (the first image at fault is named)."""
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[1] not in (1, 3) and array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise UserError(f"{source}: expected images of shape (N, H, W), (N, C, H, W) or (N, H, W, C) with C 1 or 3, "
                        f"got {array.shape}")
    if len(array) == 0:
        raise UserError(f"{source} holds no images (an array of shape {array.shape})")
    images = torch.from_numpy(np.ascontiguousarray(array)).float()
    if array.dtype == np.uint8:
        return images / 255.0
    pixels = images.flatten(1)
    for bad, what in ((~torch.isfinite(pixels), "non-finite pixel value{s} (NaN or inf)"),
                      ((pixels < 0) | (pixels > 1), "pixel value{s} outside [0, 1]")):
        if bad.any():  # a NaN would reach the Bernoulli draw, or be thresholded to 0 without a word
            rows = bad.any(1).nonzero().flatten().tolist()
            n = int(bad[rows[0]].sum())
            more = f" (and {len(rows) - 1} more images)" if len(rows) > 1 else ""
            raise UserError(f"{source}[{rows[0]}]: {n} {what.format(s='' if n == 1 else 's')}; float pixels must be "
                            f"finite and lie in [0, 1] (or store uint8 0..255){more}")
    return images


def read_npy(path: Path) -> np.ndarray:
    """A .npy file's array, never unpickled; an unreadable file is an error naming it."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = first_line(exc)
        raise UserError(f"{path} is not a readable .npy file ({reason})") from None


def load_inputs(inputs: Iterable[str | Path], shape: Sequence[int]) -> tuple[list[str], Tensor]:
    """New inputs for a model whose x has ``shape`` (C, H, W): image files, folders of them, or .npy batches.
    Returns a name per image (the file, or ``file.npy[i]``) and the images converted as :func:`to_shape`."""
    names: list[str] = []
    batches: list[Tensor] = []
    for path in expand_image_inputs(inputs):
        if path.suffix.lower() == ".npy":
            images = array_images(read_npy(path), str(path))
            names += [f"{path}[{i}]" for i in range(len(images))]
        else:
            channels, height, width = (int(s) for s in shape)
            images = read_image(path, 3 if channels == 3 else 1, height if height == width else None)[None]
            names.append(str(path))
        batches.append(to_shape(images, shape))
    return names, torch.cat(batches)
