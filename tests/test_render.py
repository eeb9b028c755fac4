"""Tests for companion.render: the procedural warehouse renderer, its camera settings and its pixels."""

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from companion import render
from companion.cameras import CAMERA_PRESETS, CameraSetup

# sha256 of the bytes of render_parcels([0, 1, 2, 3, 4, 5] * 2, preset, seed=0, image_size=112), per
# RENDERER_VERSION. A change of the rendered pixels must bump RENDERER_VERSION (it is part of every
# dataset cache key), and then the new version's hashes are added here.
GOLDEN = {
    "1": {
        "existing": "cf1faf4ca0bfc6d5818413d752e060e842b55e62ba76e8f8f6b65caefb4e599e",
        "new": "e59b54981da7f5f2d36fa76678e760a1ef9b62c55c8482fb0796a06338e93546",
        "xray": "24ad0df3bdf826f4a10b0239f8915f31ab4bd5d3fd92546c415dfd8d94c7323b",
    },
}


def pixel_hashes() -> dict[str, str]:
    """The sha256 of the golden images of every camera preset."""
    return {preset: hashlib.sha256(render.render_parcels([0, 1, 2, 3, 4, 5] * 2, preset, seed=0, image_size=112)
                                   .numpy().tobytes()).hexdigest() for preset in CAMERA_PRESETS}


def test_rendered_pixels_match_the_golden_hashes_of_this_renderer_version():
    """Check that every preset renders the committed pixels of RENDERER_VERSION, bit for bit."""
    hashes = pixel_hashes()
    assert render.RENDERER_VERSION in GOLDEN, (
        f"RENDERER_VERSION {render.RENDERER_VERSION!r} has no golden hashes: add "
        f"GOLDEN[{render.RENDERER_VERSION!r}] = {hashes!r} to tests/test_render.py")
    expected = GOLDEN[render.RENDERER_VERSION]
    changed = sorted(preset for preset in CAMERA_PRESETS if hashes[preset] != expected.get(preset))
    assert not changed, (
        f"the renderer changed the pixels of {changed} without a version bump: bump "
        f"render.RENDERER_VERSION (cached datasets would otherwise be stale) and add its hashes {hashes!r}")


def test_the_golden_check_fails_on_a_new_version_or_on_changed_pixels(monkeypatch):
    """Check that the golden test asks for new hashes under a new version and refuses one changed pixel."""
    monkeypatch.setattr(render, "RENDERER_VERSION", "no-such-version")
    with pytest.raises(AssertionError, match="has no golden hashes: add GOLDEN"):
        test_rendered_pixels_match_the_golden_hashes_of_this_renderer_version()
    monkeypatch.undo()
    real = render.render_parcels

    def one_pixel_off(*args, **kwargs):
        images = real(*args, **kwargs)
        images[11, 1, 60, 60] ^= 1  # the last image: every byte counts
        return images

    monkeypatch.setattr(render, "render_parcels", one_pixel_off)
    with pytest.raises(AssertionError, match=r"changed the pixels of \['existing', 'new', 'xray'\] without a "
                                             r"version bump"):
        test_rendered_pixels_match_the_golden_hashes_of_this_renderer_version()


def test_same_seed_same_bytes_and_shape():
    """Check that the same arguments give identical uint8 images of the requested size."""
    a = render.render_parcels([0, 1, 2, 3, 4, 5], "existing", seed=3, image_size=64)
    b = render.render_parcels(np.array([0, 1, 2, 3, 4, 5]), "existing", seed=np.int64(3), image_size=64)
    assert a.dtype == torch.uint8 and a.shape == (6, 3, 64, 64)
    assert torch.equal(a, b)


def test_no_labels_give_an_empty_batch():
    """Check that an empty label list gives an empty uint8 batch of the requested size."""
    empty = render.render_parcels([], "new", seed=1, image_size=32)
    assert empty.shape == (0, 3, 32, 32) and empty.dtype == torch.uint8


def test_different_seed_changes_pixels():
    """Check that another seed gives other photos."""
    a = render.render_parcels([1, 1], "new", seed=0, image_size=48)
    b = render.render_parcels([1, 1], "new", seed=1, image_size=48)
    assert not torch.equal(a, b)


def test_defect_changes_pixels_of_the_same_scene():
    """Check that each defect class draws something: only the label differs from an 'ok' parcel."""
    ok = render.render_parcels([0] * 4, "existing", seed=5).float()
    for k in range(1, len(render.CLASSES)):
        defect = render.render_parcels([k] * 4, "existing", seed=5).float()
        assert (defect - ok).abs().mean() > 0.3, render.CLASSES[k]


def test_cameras_differ_in_colour_and_modality():
    """Check that the new camera is bluer than the existing one and the x-ray preset is nearly grey."""
    labels = [0] * 16
    old = render.render_parcels(labels, "existing", seed=0).float().mean((0, 2, 3))
    new = render.render_parcels(labels, "new", seed=0).float().mean((0, 2, 3))
    xray = render.render_parcels(labels, "xray", seed=0).float().mean((0, 2, 3))
    assert old[0] - old[2] > new[0] - new[2]
    assert (xray.max() - xray.min()) < 20


def test_distractors_scale_the_marks_on_the_same_parcels():
    """Check that distractors=0 removes marks and dirt only: the parcels stay, few pixels change."""
    labels = [0] * 8
    drawn = render.render_parcels(labels, "existing", seed=2, image_size=64).float()
    clean = render.render_parcels(labels, CameraSetup(name="existing", distractors=0.0), seed=2, image_size=64).float()
    half = render.render_parcels(labels, CameraSetup(name="existing", distractors=0.5), seed=2, image_size=64).float()
    other_seed = render.render_parcels(labels, "existing", seed=3, image_size=64).float()
    changed = (drawn - clean).abs().amax(dim=1) > 8  # (N, H, W): visibly different pixels
    assert 0.0 < changed.float().mean() < 0.2
    assert (drawn - clean).abs().mean() < 0.25 * (drawn - other_seed).abs().mean()
    assert (half - clean).abs().mean() < (drawn - clean).abs().mean()


def test_the_scanner_image_carries_no_distractors():
    """Check that the x-ray preset renders the same bytes with or without distractors (density only)."""
    labels = [0, 2, 3]
    xray = render.render_parcels(labels, "xray", seed=0, image_size=48)
    clean = render.render_parcels(labels, dataclasses.replace(CAMERA_PRESETS["xray"], distractors=0.0),
                                  seed=0, image_size=48)
    assert torch.equal(xray, clean)


def test_rotation_offset_turns_the_parcels():
    """Check that a rotation offset changes the pose, and an offset of 0 is the default camera."""
    labels = [0] * 4
    plain = render.render_parcels(labels, "existing", seed=0, image_size=48).float()
    turned = render.render_parcels(labels, CameraSetup(name="existing", rotation_offset_deg=30.0), seed=0,
                                   image_size=48).float()
    assert (plain - turned).abs().mean() > 5.0


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": [0, 6]}, r"The 'labels' parameter of render_parcels must be class indices in \[0, 5\]"),
    ({"labels": [-1]}, r"class indices in \[0, 5\]"),
    ({"labels": [[0, 1]]}, "must be a 1-D sequence of ints"),
    ({"labels": [0.5]}, "must be a 1-D sequence of ints"),
    ({"labels": [0], "seed": -1}, "The 'seed' parameter of render_parcels must be an int >= 0"),
    ({"labels": [0], "image_size": 16}, r"The 'image_size' parameter of render_parcels must be an int in \[32, 512\]"),
    ({"labels": [0], "camera": "fisheye"}, "The 'camera' parameter of get_camera must be one of"),
])
def test_render_parcels_validates(kwargs, message):
    """Check that bad labels, seeds, sizes and cameras get a clear message."""
    with pytest.raises(ValueError, match=message):
        render.render_parcels(**kwargs)


def test_jpeg_like_is_lossy_but_close():
    """Check that the JPEG-like step keeps a smooth image close and loses more at low quality."""
    x = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(2, 3, 64, 64).contiguous()
    x = x + 0.05 * torch.sin(torch.arange(64.0) * 1.7).view(1, 1, 64, 1)
    out = render._jpeg_like(x.clamp(0, 1), np.array([95.0, 20.0]))
    err = (out - x.clamp(0, 1)).abs().mean((1, 2, 3))
    assert err[0] < 0.01 and err[1] > err[0]


def test_blur_preserves_mean_and_smooths():
    """Check that the Gaussian blur keeps the mean brightness and reduces pixel-to-pixel variation."""
    x = torch.rand(2, 3, 32, 32)
    out = render._gaussian_blur(x, torch.tensor([0.3, 1.5]).view(2, 1, 1, 1))
    assert torch.allclose(out.mean(), x.mean(), atol=0.01)
    assert out[1].diff(dim=-1).abs().mean() < out[0].diff(dim=-1).abs().mean()
