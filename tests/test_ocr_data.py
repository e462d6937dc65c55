"""The OCR set: seeded lines in real fonts, the challenge sets, the preprocessing options, the packed targets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from shared.data import InputError
from shared.data import ocr as O
from shared.specs import SpecError, get_spec
from shared.specs.ocr import CHALLENGES, CHARSET, OCRDataSpec


@pytest.fixture(scope="module")
def spec():
    return get_spec("ocr", "tiny")


@pytest.fixture(scope="module")
def data(spec):
    return O.load(spec)


def test_lines_are_seeded_and_shaped(spec, data):
    again = O.load_ocr.__wrapped__(spec.data)
    np.testing.assert_array_equal(again.test.images, data.test.images)
    assert again.test.texts == data.test.texts
    h, w, c = spec.input_shape
    assert data.train.images.shape == (spec.data.n_train, h, w, c) and data.train.images.dtype == np.float32
    assert 0.0 <= data.train.images.min() and data.train.images.max() <= 1.0
    lengths = [len(t) for t in data.train.texts]
    assert min(lengths) >= spec.data.min_length and max(lengths) <= spec.data.max_length
    assert all(set(t) <= set(CHARSET) and t == t.strip() and "  " not in t for t in data.train.texts)
    # A split's first lines do not depend on its size.
    bigger = O.load_ocr.__wrapped__(dataclasses.replace(spec.data, n_test=spec.data.n_test + 5))
    np.testing.assert_array_equal(bigger.test.images[:4], data.test.images[:4])


def test_fonts_are_real_and_varied(data):
    assert "default" in data.fonts and len(data.fonts) >= 2
    assert len(set(data.train.fonts)) >= 2
    assert O.font_path("DejaVuSans.ttf") is None or O.font_path("DejaVuSans.ttf").endswith("DejaVuSans.ttf")
    with pytest.raises(InputError, match=r"font 'NoSuchFont.ttf': not found"):
        O.load_font("NoSuchFont.ttf")


def test_challenge_sets_share_their_texts(spec, data):
    sets = data.challenges
    assert list(sets) == ["clean", *CHALLENGES]
    for name, split in sets.items():
        assert split.texts == sets["clean"].texts and len(split) == spec.data.n_per_challenge
        assert all(c == (() if name == "clean" else (name,)) for c in split.challenges)
    # Each challenge changes the pixels of the same texts.
    for name in CHALLENGES:
        assert not np.array_equal(sets[name].images, sets["clean"].images), name


def test_targets_pack_length_then_ids(spec, data):
    targets = data.train.targets
    assert targets.shape == (spec.data.n_train, 1 + spec.data.max_length) and targets.dtype == np.int64
    for text, row in zip(data.train.texts[:20], targets[:20]):
        assert row[0] == len(text) and O.decode_ids(row[1:1 + row[0]]) == text and not row[1 + row[0]:].any()
    O.check_targets(targets, len(targets), spec.data.max_length, spec.steps)


def _line(spec, challenges=(), text="read me 42"):
    return O.render_line(text, "DejaVuSans.ttf" if O.font_path("DejaVuSans.ttf") else "default", challenges,
                         np.random.default_rng(0), dataclasses.replace(spec.data, height=32, width=128))


def test_preprocessing_options(spec):
    raw = np.stack([_line(spec), _line(spec, ("low_contrast",))])
    gray = O.preprocess(raw, ("grayscale",))
    assert gray.shape == (2, 32, 128, 1)
    np.testing.assert_allclose(gray[..., 0], raw @ np.array([0.299, 0.587, 0.114], np.float32), atol=1e-6)
    normal = O.preprocess(raw, ("grayscale", "normalise"))
    assert np.ptp(gray[1]) < 0.5 < np.ptp(normal[1])   # low contrast stretched to the full range
    binary = O.preprocess(raw, ("grayscale", "normalise", "binarise"))
    assert set(np.unique(binary)) == {0.0, 1.0} and 0.02 < (binary == 0).mean() < 0.5   # ink is the minority


def test_height_normalisation_fills_the_line(spec):
    small = dataclasses.replace(spec.data, height=32, width=128)
    line = O.render_line("abc", "default", ("sizes",), np.random.default_rng(3), small)[None]
    gray = O.preprocess(line, ("grayscale", "normalise"))
    tall = O.preprocess(line, ("grayscale", "normalise", "height"))
    rows = lambda img: int((img[0, ..., 0] < 0.5).any(axis=1).sum())  # noqa: E731
    assert rows(tall) > rows(gray) and rows(tall) >= 24


def test_deskew_undoes_a_rotation(spec):
    from PIL import Image

    line = O.preprocess(_line(spec)[None], ("grayscale", "normalise"))[0]
    turned = np.asarray(Image.fromarray(line[..., 0] - 1.0).rotate(5, resample=Image.BILINEAR), np.float32) + 1.0
    straight = O.preprocess(np.repeat(turned[None, ..., None], 3, axis=-1), ("grayscale", "deskew"))[0, ..., 0]

    def profile_sharpness(img):
        return float(np.var((img < 0.5).sum(axis=1)))

    assert profile_sharpness(straight) > profile_sharpness(turned)


def test_bad_data_specs_name_the_value():
    with pytest.raises(SpecError, match=r"data.preprocess\[1\]: expected one of .*received: 'sharpen'"):
        OCRDataSpec(preprocess=("grayscale", "sharpen"))
    with pytest.raises(SpecError, match=r"'binarise' thresholds one channel and needs 'grayscale'"):
        OCRDataSpec(preprocess=("binarise",))
    with pytest.raises(SpecError, match=r"data.max_length: expected an integer in \[5, 64\]; received: 3"):
        OCRDataSpec(min_length=5, max_length=3)
    spec = get_spec("ocr", "tiny")
    with pytest.raises(SpecError, match=r"data.width: the pools divide it by 2, so it must be a multiple of 2"):
        dataclasses.replace(spec, data=dataclasses.replace(spec.data, width=63))
    with pytest.raises(SpecError, match=r"data.max_length: 20 characters need up to 39 columns"):
        dataclasses.replace(spec, data=dataclasses.replace(spec.data, max_length=20))
