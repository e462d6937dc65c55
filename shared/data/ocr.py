"""The OCR set: seeded text lines rendered with real TrueType fonts, with the challenges of seed answers 8 and 25.

Every line is drawn the same way (``render_line``):

1. its text (``line_text``): 1 to 3 words, random strings of letters and digits or made-up pronounceable words;
2. the glyphs drawn one by one in a font at 48 px as an ink mask, advancing by each glyph's width plus a
   tracking (slightly positive; negative with ``touching``, so that neighbours overlap);
3. ``slant`` shears the mask (-0.35 to 0.35), ``rotation`` turns it (-6 to 6 degrees);
4. the mask is cropped to its ink horizontally (the font's whole height is kept, so that the text height follows
   the font size and not the letters) and resized so that the font's height is a share of the line's height
   (``sizes``: the spec's ``min_text_height`` to 0.9, else 0.75), narrower where the text would not fit, and
   placed at random;
5. ink and paper colours (a dark ink on a light paper; ``low_contrast``: 0.2 to 0.35 apart in brightness) and
   the paper's grain (Gaussian, sd 0.02, on every line: no region of a scan is perfectly flat, and a flat one
   would put thousands of activations at one value, where the twins' rounding decides every kink and tie at
   once: on grainless lines the L2 probe's first-layer gradients differed by 56 times its tolerance, by 0.2
   of it with grain),
   ``uneven_background`` multiplies by a smooth illumination field (a ramp and a soft blob, 0.45 to 1.15),
   ``blur`` is a Gaussian blur (0.7 to 1.3 px), ``noise`` adds Gaussian noise (sd 0.04 to 0.08).

``fonts``: a random font of the spec's list (those found on this machine), else DejaVu Sans. The training and
test lines draw ``fonts`` and ``sizes`` always and each other challenge with the spec's ``challenge_rate``. The
challenge breakdown (``OCRData.challenges``) holds one set per challenge, the lines of the ``clean`` set (the
same texts, no challenge) with that challenge alone.

Preprocessing (``preprocess``) then runs the spec's options in ``PREPROCESSING`` order on the RGB image:
grayscale (ITU-R 601 luma), normalise (the 1st to 99th percentile stretched to [0, 1]), binarise (Otsu's
threshold: ink 0, paper 1), height (the rows that hold ink cropped and scaled to the line's height, the width
by the same factor), deskew (the rotation within +-8 degrees whose row profile of ink is the sharpest, undone).

Images are NHWC float32 in [0, 1]; labels are character ids (``CHARSET`` index + 1; 0 is CTC's blank).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..specs.ocr import BLANK, CHALLENGES, CHARSET, OCRDataSpec
from .validate import InputError

RENDER_SIZE = 48                  # font size of the glyph masks before they are fitted to the line
BASE_FONT = "DejaVuSans.ttf"      # the clean lines' font (Pillow's own default where DejaVu is missing)
BASE_TEXT_HEIGHT = 0.75           # the clean lines' font height, as a share of the line height
GRAIN = 0.02                      # sd of the paper's grain on every line
DISTORTIONS = tuple(c for c in CHALLENGES if c not in ("fonts", "sizes"))
_STREAMS = {"train": 0, "val": 1, "test": 2, "texts": 3}
_CHALLENGE_STREAM = 10
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts",
             str(Path.home() / ".fonts"), str(Path.home() / ".local/share/fonts"))
_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class OCRSplit:
    """images: [N, H, W, C] float32; texts: the N strings; fonts: the font of each line;
    challenges: per line, the challenges it was drawn with."""

    images: np.ndarray
    texts: tuple[str, ...]
    fonts: tuple[str, ...]
    challenges: tuple[tuple[str, ...], ...]
    max_length: int

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def targets(self) -> np.ndarray:
        """[N, 1 + max_length] int64: each line's label length, then its character ids, 0-padded."""
        return encode_targets(self.texts, self.max_length)

    def head(self, n: int) -> "OCRSplit":
        return OCRSplit(self.images[:n], self.texts[:n], self.fonts[:n], self.challenges[:n], self.max_length)


@dataclass(frozen=True)
class OCRData:
    """train / val / test, and ``challenges``: the breakdown sets by name (``clean`` first, then one per
    challenge), the same texts in each. fonts: the fonts of the spec found here (the data's identity
    depends on them: a machine without Liberation draws other lines)."""

    train: OCRSplit
    val: OCRSplit
    test: OCRSplit
    challenges: dict[str, OCRSplit]
    fonts: tuple[str, ...]


# ------------------------------------------------------------------------------------------- fonts


def font_path(name: str) -> str | None:
    """The file of font ``name`` in the usual font folders; None for ``default`` (Pillow's own) or if absent."""
    if name == "default":
        return None
    return _font_index().get(name)


@functools.cache
def _font_index() -> dict[str, str]:
    found: dict[str, str] = {}
    for folder in FONT_DIRS:
        if os.path.isdir(folder):
            for root, _, files in sorted(os.walk(folder)):
                for f in sorted(files):
                    if f.lower().endswith((".ttf", ".otf")):
                        found.setdefault(f, os.path.join(root, f))
    return found


def available_fonts(names: tuple[str, ...]) -> tuple[str, ...]:
    """The fonts of ``names`` that load here (``default`` always does)."""
    return tuple(n for n in names if n == "default" or font_path(n) is not None)


@functools.lru_cache(maxsize=64)
def load_font(name: str, size: int = RENDER_SIZE):
    """A Pillow font object: the TrueType file of ``name``, or Pillow's default TrueType font."""
    from PIL import ImageFont

    if name == "default":
        return ImageFont.load_default(size=size)
    path = font_path(name)
    if path is None:
        raise InputError(f"font {name!r}: not found in {list(FONT_DIRS)}; expected one of "
                         f"{sorted(_font_index())[:20]} or 'default'")
    return ImageFont.truetype(path, size)


# ------------------------------------------------------------------------------------------- text


def line_text(rng: np.random.Generator, spec: OCRDataSpec) -> str:
    """1 to 3 words, ``min_length`` to ``max_length`` characters in all (single spaces between words)."""
    length = int(rng.integers(spec.min_length, spec.max_length + 1))
    words, left = [], length
    while left > 0:
        if left <= 3 or len(words) == 2 or rng.random() < 0.35:
            size = left
        else:
            size = int(rng.integers(2, left - 1))   # leaves at least 2: a space and one more character
        words.append(_word(rng, size, rng.random() < spec.word_share))
        left -= size + 1
    return " ".join(words)


def _word(rng: np.random.Generator, size: int, pronounceable: bool) -> str:
    if not pronounceable:
        alphabet = CHARSET[1:]  # no space inside a word
        return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size))
    letters = []
    while len(letters) < size:
        letters.append(_CONSONANTS[rng.integers(len(_CONSONANTS))] if len(letters) % 2 == 0
                       else _VOWELS[rng.integers(len(_VOWELS))])
    return "".join(letters)


def encode_text(text: str) -> list[int]:
    """Character ids of ``text`` (``CHARSET`` index + 1); a clear error for a character outside it."""
    bad = sorted({c for c in text if c not in CHARSET})
    if bad:
        raise InputError(f"text {text!r}: characters {bad} are not in the charset; expected characters of "
                         f"{CHARSET!r}")
    return [CHARSET.index(c) + 1 for c in text]


def decode_ids(ids) -> str:
    """Character ids back to text (the blank and anything outside the charset dropped)."""
    return "".join(CHARSET[i - 1] for i in (int(v) for v in ids) if 1 <= i <= len(CHARSET))


def encode_targets(texts, max_length: int) -> np.ndarray:
    """[N, 1 + max_length] int64: label length, then the ids, 0-padded (0 is the blank, never a label)."""
    out = np.zeros((len(texts), 1 + max_length), np.int64)
    for i, text in enumerate(texts):
        ids = encode_text(text)
        if not 1 <= len(ids) <= max_length:
            raise InputError(f"texts[{i}]: expected 1 to {max_length} characters; received {len(ids)}: {text!r}")
        out[i, 0], out[i, 1:1 + len(ids)] = len(ids), ids
    return out


def check_targets(targets, n: int, max_length: int, steps: int, name: str = "targets") -> np.ndarray:
    """Validate packed OCR targets ([N, 1 + max_length] ints as ``encode_targets`` makes): lengths in
    [1, max_length], ids in [1, len(CHARSET)] up to the length and 0 after, and a label CTC can align to
    ``steps`` columns (its length plus its repeated neighbours at most ``steps``)."""
    targets = np.asarray(targets)
    if targets.ndim != 2 or targets.shape != (n, 1 + max_length) or not np.issubdtype(targets.dtype, np.integer):
        raise InputError(f"{name}: expected an integer array of shape [{n}, {1 + max_length}] (length, then "
                         f"ids); received shape {list(targets.shape)}, dtype {targets.dtype}")
    lengths, ids = targets[:, 0], targets[:, 1:]
    if lengths.min() < 1 or lengths.max() > max_length:
        raise InputError(f"{name}: expected label lengths in [1, {max_length}]; received {int(lengths.min())} to "
                         f"{int(lengths.max())}")
    inside = np.arange(max_length)[None, :] < lengths[:, None]
    if ids[inside].min() < 1 or ids[inside].max() > len(CHARSET):
        raise InputError(f"{name}: expected character ids in [1, {len(CHARSET)}] (0 is the blank); received "
                         f"{int(ids[inside].min())} to {int(ids[inside].max())}")
    if (ids[~inside] != BLANK).any():
        raise InputError(f"{name}: expected 0 after each label's length; received other ids there")
    repeats = ((ids[:, 1:] == ids[:, :-1]) & inside[:, 1:]).sum(axis=1)
    worst = int(np.argmax(lengths + repeats))
    if lengths[worst] + repeats[worst] > steps:
        raise InputError(f"{name}[{worst}]: a label of {int(lengths[worst])} characters with {int(repeats[worst])} "
                         f"repeats needs {int(lengths[worst] + repeats[worst])} columns; the model reads {steps}")
    return targets.astype(np.int64)


# ------------------------------------------------------------------------------------------- rendering


def render_line(text: str, font: str, challenges: tuple[str, ...], rng: np.random.Generator,
                spec: OCRDataSpec) -> np.ndarray:
    """[H, W, 3] float32 RGB in [0, 1]: ``text`` in ``font`` with ``challenges`` (module docstring)."""
    from PIL import Image

    height, width = spec.height, spec.width
    ink = _glyph_mask(text, load_font(font), "touching" in challenges, rng)
    if "slant" in challenges:
        ink = _shear(ink, float(rng.uniform(-0.35, 0.35)))
    if "rotation" in challenges:
        ink = ink.rotate(float(rng.uniform(-6.0, 6.0)), resample=Image.BILINEAR, expand=True)
    mask = np.asarray(ink, np.float32) / 255.0
    columns = np.flatnonzero(mask.max(axis=0) > 0.05)
    mask = mask[:, max(columns[0] - 2, 0):columns[-1] + 3] if columns.size else mask
    share = float(rng.uniform(spec.min_text_height, 0.9)) if "sizes" in challenges else BASE_TEXT_HEIGHT
    scale = min(share * height / mask.shape[0], (width - 2) / mask.shape[1])
    h, w = max(int(round(mask.shape[0] * scale)), 1), max(int(round(mask.shape[1] * scale)), 1)
    h, w = min(h, height), min(w, width)
    small = np.asarray(Image.fromarray(mask).resize((w, h), Image.BILINEAR), np.float32)
    canvas = np.zeros((height, width), np.float32)
    y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    canvas[y:y + h, x:x + w] = np.clip(small, 0.0, 1.0)
    paper = rng.uniform(0.7, 1.0, 3)
    gap = rng.uniform(0.2, 0.35) if "low_contrast" in challenges else rng.uniform(0.5, 0.85)
    colour = np.clip(paper - gap - rng.uniform(-0.05, 0.05, 3), 0.0, 1.0)
    image = paper * (1.0 - canvas[..., None]) + colour * canvas[..., None] + rng.normal(0.0, GRAIN, (height, width, 3))
    if "uneven_background" in challenges:
        image = image * _illumination(rng, height, width)[..., None]
    if "blur" in challenges:
        from scipy.ndimage import gaussian_filter

        image = gaussian_filter(image, sigma=(float(rng.uniform(0.7, 1.3)),) * 2 + (0.0,), mode="nearest")
    if "noise" in challenges:
        image = image + rng.normal(0.0, rng.uniform(0.04, 0.08), image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _glyph_mask(text: str, font, touching: bool, rng: np.random.Generator):
    """An 'L' image of the text's ink, glyph by glyph: the font's full height, advancing by each glyph's width
    plus a tracking of 0 to 6% of the size (touching: -14 to -8%, so that neighbours overlap)."""
    from PIL import Image, ImageDraw

    tracking = RENDER_SIZE * (rng.uniform(-0.14, -0.08) if touching else rng.uniform(0.0, 0.06))
    ascent, descent = font.getmetrics()
    advances = [font.getlength(c) for c in text]
    pad = RENDER_SIZE // 4
    width = int(sum(advances) + tracking * (len(text) - 1)) + 2 * pad + RENDER_SIZE
    image = Image.new("L", (max(width, 2 * pad + 1), ascent + descent + 2 * pad), 0)
    draw, x = ImageDraw.Draw(image), float(pad)
    for char, advance in zip(text, advances):
        draw.text((x, pad), char, fill=255, font=font)
        x += advance + tracking
    return image


def _shear(image, factor: float):
    """Slant: x' = x + factor * (y - centre), the canvas widened to keep every pixel."""
    from PIL import Image

    w, h = image.size
    extra = int(abs(factor) * h) + 1
    # PIL's affine maps output to input: x_in = x_out + factor * (y - h / 2) - extra / 2.
    return image.transform((w + extra, h), Image.AFFINE, (1.0, factor, -factor * h / 2 - extra / 2, 0.0, 1.0, 0.0),
                           resample=Image.BILINEAR)


def _illumination(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth [H, W] field from 0.45 to 1.15: a ramp in a random direction plus a soft bright or dark blob."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    cy, cx, sd = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.15, 0.4) * width
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sd * sd)) * rng.choice([-1.0, 1.0])
    field = 1.0 - rng.uniform(0.2, 0.45) * ramp + 0.25 * blob
    return np.clip(field, 0.45, 1.15).astype(np.float32)


# ------------------------------------------------------------------------------------------- preprocessing


def preprocess(images: np.ndarray, options: tuple[str, ...]) -> np.ndarray:
    """The spec's preprocessing options, in ``PREPROCESSING`` order, on [N, H, W, 3] RGB float32 images."""
    out = np.asarray(images, np.float32)
    if "grayscale" in options:
        out = (out @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    if "normalise" in options:
        lo = np.percentile(out, 1, axis=(1, 2, 3), keepdims=True)
        hi = np.percentile(out, 99, axis=(1, 2, 3), keepdims=True)
        out = np.clip((out - lo) / np.maximum(hi - lo, 1e-3), 0.0, 1.0)
    if "binarise" in options:
        out = np.stack([_binarise(img[..., 0]) for img in out])[..., None]
    if "height" in options:
        out = np.stack([_normalise_height(img) for img in out])
    if "deskew" in options:
        out = np.stack([_deskew(img) for img in out])
    return np.ascontiguousarray(out, np.float32)


def _ink(gray: np.ndarray) -> np.ndarray:
    """Where the ink is in a [H, W] image of dark text on light paper: below Otsu's threshold."""
    from skimage.filters import threshold_otsu

    if float(np.ptp(gray)) < 1e-6:
        return np.zeros(gray.shape, bool)
    return gray < threshold_otsu(gray)


def _binarise(gray: np.ndarray) -> np.ndarray:
    return np.where(_ink(gray), 0.0, 1.0).astype(np.float32)


def _normalise_height(image: np.ndarray) -> np.ndarray:
    """The rows holding ink, cropped and scaled to the full height; the width follows, left-aligned."""
    from PIL import Image

    height, width, channels = image.shape
    rows = np.flatnonzero(_ink(image.mean(axis=-1)).mean(axis=1) > 0.01)
    if rows.size < 2:
        return image
    top, bottom = max(rows[0] - 1, 0), min(rows[-1] + 2, height)
    columns = np.flatnonzero(_ink(image.mean(axis=-1))[top:bottom].any(axis=0))
    left, right = max(columns[0] - 1, 0), min(columns[-1] + 2, width)
    crop = image[top:bottom, left:right]
    scale = min(height / crop.shape[0], width / crop.shape[1])
    h, w = min(max(int(round(crop.shape[0] * scale)), 1), height), min(max(int(round(crop.shape[1] * scale)), 1), width)
    paper = float(np.median(image))
    out = np.full(image.shape, paper, np.float32)
    for c in range(channels):
        out[:h, :w, c] = np.asarray(Image.fromarray(crop[..., c]).resize((w, h), Image.BILINEAR), np.float32)
    return out


def _deskew(image: np.ndarray, max_angle: float = 8.0, step: float = 1.0) -> np.ndarray:
    """Undo the rotation in [-max_angle, max_angle] whose ink row profile has the largest variance."""
    from PIL import Image

    gray = image.mean(axis=-1)
    paper = float(np.median(gray))
    ink = Image.fromarray(_ink(gray).astype(np.float32))
    angles = np.arange(-max_angle, max_angle + step / 2, step)
    scores = [float(np.var(np.asarray(ink.rotate(a, resample=Image.BILINEAR), np.float32).sum(axis=1)))
              for a in angles]
    best = float(angles[int(np.argmax(scores))])
    if best == 0.0:
        return image
    channels = [np.asarray(Image.fromarray(image[..., c] - paper).rotate(best, resample=Image.BILINEAR),
                           np.float32) + paper for c in range(image.shape[-1])]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


# ------------------------------------------------------------------------------------------- splits


def load(spec) -> OCRData:
    """The splits and challenge sets of a task spec's data (``OCRSpec.data``), identical on every call."""
    return load_ocr(spec.data)


@functools.lru_cache(maxsize=4)
def load_ocr(spec: OCRDataSpec) -> OCRData:
    fonts = available_fonts(spec.fonts)
    if not fonts:
        raise InputError(f"data.fonts: none of {list(spec.fonts)} is installed; expected at least 'default'")
    sizes = {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test}
    splits = {name: _split(spec, fonts, n, _STREAMS[name], DISTORTIONS) for name, n in sizes.items()}
    return OCRData(**splits, challenges=challenge_sets(spec, fonts), fonts=fonts)


def _split(spec: OCRDataSpec, fonts: tuple[str, ...], n: int, stream: int,
           distortions: tuple[str, ...]) -> OCRSplit:
    """``n`` lines, each with a random font and size and each of ``distortions`` at the challenge rate.
    Line ``i`` comes from its own generator, so a split's first lines do not depend on its size."""
    texts, chosen, drawn, images = [], [], [], []
    for i in range(n):
        rng = np.random.default_rng((spec.seed, stream, i))
        text, font = line_text(rng, spec), fonts[int(rng.integers(len(fonts)))]
        challenges = ("fonts", "sizes", *(c for c in distortions if rng.random() < spec.challenge_rate))
        texts.append(text), chosen.append(font), drawn.append(challenges)
        images.append(render_line(text, font, challenges, rng, spec))
    return _finish(spec, images, texts, chosen, drawn)


def challenge_sets(spec: OCRDataSpec, fonts: tuple[str, ...]) -> dict[str, OCRSplit]:
    """``clean`` (the base font at the base size, nothing else) and, for each challenge, the same texts with
    that challenge alone."""
    base = BASE_FONT if BASE_FONT in fonts else fonts[0]
    texts = [line_text(np.random.default_rng((spec.seed, _STREAMS["texts"], i)), spec)
             for i in range(spec.n_per_challenge)]
    sets = {}
    for j, challenge in enumerate(("clean", *CHALLENGES)):
        images, chosen, drawn = [], [], []
        for i, text in enumerate(texts):
            rng = np.random.default_rng((spec.seed, _CHALLENGE_STREAM + j, i))
            font = fonts[int(rng.integers(len(fonts)))] if challenge == "fonts" else base
            challenges = () if challenge == "clean" else (challenge,)
            chosen.append(font), drawn.append(challenges)
            images.append(render_line(text, font, challenges, rng, spec))
        sets[challenge] = _finish(spec, images, texts, chosen, drawn)
    return sets


def _finish(spec: OCRDataSpec, images: list, texts: list, fonts: list, challenges: list) -> OCRSplit:
    return OCRSplit(preprocess(np.stack(images), spec.preprocess), tuple(texts), tuple(fonts), tuple(challenges),
                    spec.max_length)


def training_targets(split: OCRSplit, spec) -> np.ndarray:
    """The packed targets of ``split`` ([N, 1 + max_length] int64, ``OCRSplit.targets``)."""
    return split.targets


__all__ = ["BASE_FONT", "DISTORTIONS", "OCRData", "OCRSplit", "available_fonts", "challenge_sets", "check_targets",
           "decode_ids", "encode_targets", "encode_text", "font_path", "line_text", "load", "load_font",
           "preprocess", "render_line", "training_targets"]
