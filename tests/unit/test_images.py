"""backend/images.py: the rig's allocated images and the benches' filled ones."""

from __future__ import annotations

from pathlib import Path

from backend.images import allocate_image, fill_image


def test_allocate_image_leaves_no_holes(tmp_path: Path) -> None:
    image = allocate_image(tmp_path / "a.img", 4 << 20)
    assert image.stat().st_size == 4 << 20
    assert image.stat().st_blocks * 512 >= 4 << 20  # allocated, not sparse


def test_fill_image_is_kept_once_filled_and_refilled_when_interrupted(tmp_path: Path) -> None:
    image = fill_image(tmp_path / "f.img", 2 << 20)
    data = image.read_bytes()
    assert len(data) == 2 << 20 and data.count(0) < len(data) // 2  # random, not zeros
    assert fill_image(image, 2 << 20).read_bytes() == data  # kept between runs
    image.with_suffix(".filled").unlink()  # as if the fill had been interrupted
    assert fill_image(image, 2 << 20).read_bytes() != data
