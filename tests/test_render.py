"""Tests for companion.render: the procedural warehouse renderer and camera setups."""

import numpy as np
import pytest
import torch

from companion import render


def test_same_seed_same_bytes_and_shape():
    """Check that the same arguments give identical uint8 images of the requested size."""
    a = render.render_parcels([0, 1, 2, 3, 4, 5], "existing", seed=3, image_size=64)
    b = render.render_parcels([0, 1, 2, 3, 4, 5], "existing", seed=3, image_size=64)
    assert a.dtype == torch.uint8 and a.shape == (6, 3, 64, 64)
    assert torch.equal(a, b)


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


def test_interpolate_cameras_endpoints_and_middle():
    """Check that the dial returns the presets' settings at 0 and 1 and the midpoint in between."""
    start = render.interpolate_cameras("existing", "new", 0.0)
    end = render.interpolate_cameras("existing", "new", 1.0)
    mid = render.interpolate_cameras("existing", "new", 0.5)
    assert start.rotation_deg == render.CAMERA_PRESETS["existing"].rotation_deg
    assert end.jpeg_quality == render.CAMERA_PRESETS["new"].jpeg_quality
    assert mid.color_temperature == pytest.approx((4800.0, 6400.0))


@pytest.mark.parametrize("t", [-0.1, 1.5, "half", True])
def test_interpolate_cameras_rejects_bad_t(t):
    """Check that the dial position must be a float in [0, 1]."""
    with pytest.raises(ValueError, match="'t' parameter of interpolate_cameras must be a float in"):
        render.interpolate_cameras("existing", "new", t)


def test_unknown_preset_names_the_presets():
    """Check that an unknown camera preset lists the known ones."""
    with pytest.raises(ValueError, match=r"Unknown camera preset 'phone'.*existing"):
        render.get_camera("phone")


@pytest.mark.parametrize("kwargs, message", [
    ({"blur_sigma": (0.8, 0.2)}, "low <= high"),
    ({"jpeg_quality": (0.0, 50.0)}, "'jpeg_quality' field of CameraSetup must lie in"),
    ({"modality": 1.5}, "'modality' field of CameraSetup must be in"),
])
def test_camera_setup_validates(kwargs, message):
    """Check that impossible camera settings are refused with the field's name."""
    with pytest.raises(ValueError, match=message):
        render.CameraSetup(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": [0, 6]}, r"ints in \[0, 5\]"),
    ({"labels": [[0, 1]]}, "1-D sequence of ints"),
    ({"labels": [0], "seed": -1}, "'seed' parameter of render_parcels"),
    ({"labels": [0], "image_size": 16}, "'image_size' parameter of render_parcels"),
])
def test_render_parcels_validates(kwargs, message):
    """Check that bad labels, seeds and sizes get a clear message."""
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
