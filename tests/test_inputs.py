"""keraslab.inputs on real data: Fashion-MNIST t10k images and IMDB test reviews."""

from __future__ import annotations

import functools
import gzip
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keraslab.errors import KeraslabError
from keraslab.inputs import load_image, read_texts

DATA = Path("/work/shared/data")
FASHION_TEST_IMAGES = DATA / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
FASHION_TEST_LABELS = DATA / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
IMDB_ARCHIVE = DATA / "imdb" / "aclImdb_v1.tar.gz"


@functools.cache
def fashion_test() -> tuple[np.ndarray, np.ndarray]:
    """t10k images (10000, 28, 28) uint8 and labels, read straight from the IDX files."""
    if not FASHION_TEST_IMAGES.exists():
        pytest.skip(f"{FASHION_TEST_IMAGES} not available")
    with gzip.open(FASHION_TEST_IMAGES) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION_TEST_LABELS) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def one_per_class() -> list[np.ndarray]:
    images, labels = fashion_test()
    return [images[int(np.flatnonzero(labels == c)[0])] for c in range(10)]


@functools.cache
def imdb_reviews(count: int = 200) -> tuple[str, ...]:
    """The first `count` reviews of aclImdb/test/neg (real text: HTML, accents, cp1252 dashes)."""
    if not IMDB_ARCHIVE.exists():
        pytest.skip(f"{IMDB_ARCHIVE} not available")
    reviews = []
    with tarfile.open(IMDB_ARCHIVE, "r|gz") as tar:
        for member in tar:
            if member.isfile() and member.name.startswith("aclImdb/test/neg/"):
                reviews.append(tar.extractfile(member).read().decode("utf-8"))
                if len(reviews) == count:
                    break
    return tuple(reviews)


def as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def check_output(out: np.ndarray) -> None:
    assert out.shape == (28, 28)
    assert out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


def assert_user_error(path, *words) -> KeraslabError:
    with pytest.raises(KeraslabError) as info:
        load_image(path)
    line = info.value.one_line()
    assert "\n" not in line
    assert str(path) in line
    for word in words:
        assert word in line.lower()
    return info.value


# --------------------------------------------------------------------------- images: round trips


def test_png_of_test_image_round_trips_exactly(tmp_path):
    images, _ = fashion_test()
    for i in range(50):
        path = tmp_path / f"{i}.png"
        Image.fromarray(images[i]).save(path)
        out = load_image(path)
        check_output(out)
        np.testing.assert_array_equal(out, as_float(images[i]))


def test_jpeg_of_test_image_is_close(tmp_path):
    for i, image in enumerate(one_per_class()):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(image).save(path, quality=95)
        out = load_image(path)
        check_output(out)
        assert np.abs(out - as_float(image)).mean() < 0.01


def test_rgb_png_round_trips_exactly(tmp_path):
    image = one_per_class()[0]
    path = tmp_path / "rgb.png"
    Image.fromarray(np.stack([image] * 3, axis=-1)).save(path)
    np.testing.assert_array_equal(load_image(path), as_float(image))


def test_palette_png_round_trips_exactly(tmp_path):
    image = one_per_class()[3]
    pal = Image.frombytes("P", (28, 28), image.tobytes())
    pal.putpalette(bytes(v for level in range(256) for v in (level, level, level)))
    path = tmp_path / "palette.png"
    pal.save(path)
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(load_image(path), as_float(image))


def test_palette_with_transparent_index(tmp_path):
    # Dark garment on a background index that is transparent and coloured red: red must not leak in.
    image = one_per_class()[5]
    pal = Image.frombytes("P", (28, 28), (255 - image).tobytes())
    colours = [(level, level, level) for level in range(256)]
    colours[255] = (255, 0, 0)
    pal.putpalette(bytes(v for colour in colours for v in colour))
    path = tmp_path / "palette_transparent.png"
    pal.save(path, transparency=255)
    np.testing.assert_array_equal(load_image(path), as_float(image))


def test_16_bit_grayscale(tmp_path):
    image = one_per_class()[9]
    path = tmp_path / "sixteen.png"
    Image.fromarray(image.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_allclose(load_image(path), as_float(image), atol=1e-6)


def test_rgba_transparent_background_28x28(tmp_path):
    # Black ink whose opacity is the garment intensity; transparent pixels carry junk colour.
    image = one_per_class()[7]
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = image
    rgba[image == 0, :3] = (200, 30, 90)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    np.testing.assert_allclose(load_image(path), as_float(image), atol=1e-6)


def test_rgba_transparent_background_large(tmp_path):
    for i, image in enumerate(one_per_class()):
        big = np.asarray(Image.fromarray(image).resize((112, 112), Image.Resampling.NEAREST))
        rgba = np.zeros((150, 130, 4), np.uint8)
        rgba[..., :3] = (0, 200, 0)  # fully transparent green: must be ignored
        garment = rgba[20:132, 9:121]
        garment[..., :3] = 0
        garment[..., 3] = big
        path = tmp_path / f"rgba_{i}.png"
        Image.fromarray(rgba).save(path)
        out = load_image(path)
        check_output(out)
        assert correlation(out, as_float(image)) > 0.9


def test_dark_garment_on_white_product_photo(tmp_path):
    # What a shop photo looks like: 280x200 RGB, white background, dark (tinted) garment off-centre.
    images, _ = fashion_test()
    correlations = []
    for i in range(40):
        image = images[i]
        big = np.asarray(Image.fromarray(255 - image).resize((168, 168), Image.Resampling.BICUBIC))
        photo = np.full((200, 280, 3), 255, np.uint8)
        tint = np.array([0.55, 0.6, 0.9])  # navy-ish fabric
        photo[12:180, 90:258] = (big[..., None] * tint + 255 * (1 - tint) * (big[..., None] / 255)).astype(np.uint8)
        path = tmp_path / f"photo_{i}.jpg"
        Image.fromarray(photo).save(path, quality=90)
        out = load_image(path)
        check_output(out)
        assert np.median(out[image == 0]) < 0.01  # the white background became black
        correlations.append(correlation(out, as_float(image)))
    assert min(correlations) > 0.8
    assert np.median(correlations) > 0.9


def test_centre_of_mass_mode_is_available_but_box_matches_the_data_better(tmp_path):
    images, _ = fashion_test()
    box, mass = [], []
    for i in range(40):
        big = Image.fromarray(255 - images[i]).resize((140, 140), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (300, 180), 255)
        canvas.paste(big, (20, 25))
        path = tmp_path / f"c_{i}.png"
        canvas.save(path)
        box.append(correlation(load_image(path), as_float(images[i])))
        mass.append(correlation(load_image(path, centre="mass"), as_float(images[i])))
    assert np.mean(box) > np.mean(mass)
    with pytest.raises(ValueError):
        load_image(path, centre="middle")


def test_fashion_mnist_centres_the_bounding_box():
    # The convention load_image follows: margin before the garment = ceil((28 - extent) / 2).
    images, _ = fashion_test()
    rows, cols = (images > 0).any(axis=2), (images > 0).any(axis=1)
    for mask in (rows, cols):
        first = mask.argmax(axis=1)
        extent = 28 - first - mask[:, ::-1].argmax(axis=1)
        assert np.mean(first == (28 - extent + 1) // 2) > 0.95


def test_exif_orientation_is_applied(tmp_path):
    image = one_per_class()[1]
    stored = Image.fromarray(image).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.png"
    stored.save(path, exif=exif)
    np.testing.assert_array_equal(load_image(path), as_float(image))


def test_light_background_28x28_is_inverted_not_resized(tmp_path):
    image = one_per_class()[2]
    path = tmp_path / "negative.png"
    Image.fromarray(255 - image).save(path)
    np.testing.assert_allclose(load_image(path), as_float(image), atol=1e-6)


def test_cmyk_jpeg(tmp_path):
    image = one_per_class()[4]
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(np.stack([image] * 3, axis=-1)).convert("CMYK").save(path, quality=100)
    assert Image.open(path).mode == "CMYK"
    assert np.abs(load_image(path) - as_float(image)).mean() < 0.01


def test_bilevel_image(tmp_path):
    image = one_per_class()[8]
    path = tmp_path / "bilevel.png"
    Image.fromarray(np.where(image > 64, 255, 0).astype(np.uint8)).convert("1").save(path)
    out = load_image(path)
    check_output(out)
    assert correlation(out, as_float(image)) > 0.8


def test_small_image_is_upscaled_and_centred(tmp_path):
    image = one_per_class()[1]  # trousers: tall and narrow
    small = Image.fromarray(255 - image).resize((14, 14), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (20, 20), 255)
    canvas.paste(small, (0, 6))
    path = tmp_path / "small.png"
    canvas.save(path)
    out = load_image(path)
    check_output(out)
    assert correlation(out, as_float(image)) > 0.8


# --------------------------------------------------------------------------- images: errors


def test_missing_file(tmp_path):
    assert_user_error(tmp_path / "nope.png", "no such file")


def test_directory(tmp_path):
    assert_user_error(tmp_path, "directory")


def test_zero_size_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert_user_error(path, "empty")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    assert_user_error(path, "not a readable image")


def test_truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(one_per_class()[0]).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_user_error(path, "corrupt")


def test_corrupt_jpeg(tmp_path):
    path = tmp_path / "garbled.jpg"
    Image.fromarray(one_per_class()[0]).resize((200, 200)).save(path, quality=90)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:30]) + bytes(range(256)) * 4)
    error = assert_user_error(path)
    assert error.hint


@pytest.mark.parametrize("value", [0, 255, 128])
def test_flat_image_has_no_garment(tmp_path, value):
    path = tmp_path / f"flat{value}.png"
    Image.new("L", (64, 48), value).save(path)
    assert_user_error(path, "no garment found")


# --------------------------------------------------------------------------- texts


def test_text_strings_pass_through_unchanged():
    reviews = list(imdb_reviews()[:5])
    assert read_texts(reviews, None) == reviews


def test_texts_first_then_files_in_order(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one\ntwo\n", encoding="utf-8")
    b.write_text("three\n", encoding="utf-8")
    assert read_texts(["zero"], [a, str(b)]) == ["zero", "one", "two", "three"]


@pytest.mark.parametrize("text", ["", "   ", "\n", "\t \r\n"])
def test_empty_text_is_an_error(text):
    with pytest.raises(KeraslabError, match="--text #2 is empty"):
        read_texts(["Good.", text], None)


@pytest.mark.parametrize("texts, files", [(None, None), ([], []), ([], None)])
def test_no_input_is_an_error(texts, files):
    with pytest.raises(KeraslabError, match="no reviews"):
        read_texts(texts, files)


def test_real_reviews_file_round_trips(tmp_path):
    reviews = list(imdb_reviews())
    assert any("<br />" in r for r in reviews)
    assert any(any(ord(c) > 127 for c in r) for r in reviews)
    path = tmp_path / "reviews.txt"
    path.write_text("\n".join(reviews) + "\n", encoding="utf-8")
    assert read_texts(None, [path]) == reviews  # HTML and accents passed through


def test_blank_lines_crlf_and_bom(tmp_path):
    reviews = list(imdb_reviews()[:3])
    path = tmp_path / "windows.txt"
    body = "\r\n".join([reviews[0], "", "   ", reviews[1], "\t", reviews[2]]) + "\r\n\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    out = read_texts(None, [path])
    assert out == reviews
    assert not out[0].startswith("\ufeff")


def test_old_mac_line_endings(tmp_path):
    path = tmp_path / "mac.txt"
    path.write_bytes(b"first\rsecond\r")
    assert read_texts(None, [path]) == ["first", "second"]


def test_latin1_file_is_an_error_with_offset(tmp_path):
    reviews = [r for r in imdb_reviews() if "é" in r]
    assert reviews
    path = tmp_path / "latin1.txt"
    data = ("Plain first line.\n" + reviews[0] + "\n").encode("latin-1")
    path.write_bytes(data)
    offset = data.index("é".encode("latin-1"))
    with pytest.raises(KeraslabError) as info:
        read_texts(None, [path])
    line = info.value.one_line()
    assert str(path) in line
    assert f"offset {offset}" in line
    assert "line 2" in line
    assert "0xe9" in line
    assert "iconv -f latin1 -t utf-8" in line


def test_offset_counts_the_bom(tmp_path):
    path = tmp_path / "bom_latin1.txt"
    data = b"\xef\xbb\xbf" + "caf\xe9".encode("latin-1")
    path.write_bytes(data)
    with pytest.raises(KeraslabError, match="offset 6"):
        read_texts(None, [path])


def test_utf16_file_gets_a_utf16_hint(tmp_path):
    path = tmp_path / "utf16.txt"
    path.write_bytes("A wonderful film\n".encode("utf-16"))
    with pytest.raises(KeraslabError) as info:
        read_texts(None, [path])
    assert "iconv -f utf-16 -t utf-8" in info.value.one_line()


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \r\n\t\n", b"\xef\xbb\xbf\n"])
def test_file_without_reviews_is_an_error(tmp_path, content):
    path = tmp_path / "blank.txt"
    path.write_bytes(content)
    with pytest.raises(KeraslabError, match="has no reviews"):
        read_texts(None, [path])


def test_missing_and_directory_text_files(tmp_path):
    with pytest.raises(KeraslabError, match="no such file"):
        read_texts(["fine"], [tmp_path / "missing.txt"])
    with pytest.raises(KeraslabError, match="is a directory"):
        read_texts(None, [tmp_path])


def test_very_long_review_is_kept_whole(tmp_path):
    long_review = " ".join(imdb_reviews()) * 5  # far beyond any sequence length
    assert len(long_review) > 100_000
    path = tmp_path / "long.txt"
    path.write_text(long_review + "\n", encoding="utf-8")
    assert read_texts([long_review], [path]) == [long_review, long_review]


def test_non_english_text_is_accepted(tmp_path):
    texts = ["Ein wunderbarer Film!", "素晴らしい映画でした。", "Скучно.", "😀👍"]
    path = tmp_path / "intl.txt"
    path.write_text("\n".join(texts), encoding="utf-8")
    assert read_texts(texts, [path]) == texts + texts
