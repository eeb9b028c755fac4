"""Tests for companion.cameras: the camera setups, the presets and the domain-shift dial."""

import dataclasses

import pytest
import torch

from companion import cameras, data, render
from companion.cameras import CAMERA_PRESETS, CameraSetup


def test_data_re_exports_the_camera_names():
    """Check that companion.data still offers CameraSetup, CAMERA_PRESETS and interpolate_cameras."""
    assert data.CameraSetup is CameraSetup and data.CAMERA_PRESETS is CAMERA_PRESETS
    assert data.interpolate_cameras is cameras.interpolate_cameras


def test_presets_are_named_and_the_xray_differs_only_in_modality():
    """Check the three presets' names and that 'xray' is the new camera with the scanner image."""
    assert sorted(CAMERA_PRESETS) == ["existing", "new", "xray"]
    assert all(camera.name == name for name, camera in CAMERA_PRESETS.items())
    new, xray = CAMERA_PRESETS["new"], CAMERA_PRESETS["xray"]
    assert dataclasses.replace(xray, name="new", modality=0.0) == new and xray.modality == 1.0


def test_get_camera_takes_a_name_or_a_setup():
    """Check that get_camera returns presets by name and a CameraSetup as it is."""
    custom = CameraSetup(name="mine", blur_sigma=(0.0, 0.1))
    assert cameras.get_camera("new") is CAMERA_PRESETS["new"] and cameras.get_camera(custom) is custom


@pytest.mark.parametrize("camera", ["phone", 3, None])
def test_unknown_preset_names_the_presets(camera):
    """Check that an unknown camera preset lists the known ones."""
    with pytest.raises(ValueError, match=r"The 'camera' parameter of get_camera must be one of "
                                         r"\['existing', 'new', 'xray'\] or a CameraSetup"):
        cameras.get_camera(camera)


def test_interpolate_cameras_endpoints_and_middle():
    """Check that the dial returns the presets' settings at 0 and 1 and the midpoint in between."""
    start = cameras.interpolate_cameras("existing", "new", 0.0)
    end = cameras.interpolate_cameras("existing", "new", 1.0)
    mid = cameras.interpolate_cameras("existing", "new", 0.5)
    assert dataclasses.replace(start, name="existing") == CAMERA_PRESETS["existing"]
    assert dataclasses.replace(end, name="new") == CAMERA_PRESETS["new"]
    assert mid.color_temperature == pytest.approx((4800.0, 6400.0)) and mid.name == "existing->new@0.50"
    assert mid.distractors == 1.0 and mid.rotation_offset_deg == 0.0


@pytest.mark.parametrize("t", [-0.1, 1.5, "half", True, float("nan")])
def test_interpolate_cameras_rejects_bad_t(t):
    """Check that the dial position must be a float in [0, 1]."""
    with pytest.raises(ValueError, match=r"The 't' parameter of interpolate_cameras must be a float in \[0.0, 1.0\]"):
        cameras.interpolate_cameras("existing", "new", t)


@pytest.mark.parametrize("kwargs, message", [
    ({"blur_sigma": (0.8, 0.2)}, "low <= high"),
    ({"noise_std": (0.0, float("nan"))}, "low <= high"),
    ({"keystone": float("inf")}, "'keystone' field of CameraSetup must be finite"),
    ({"jpeg_quality": (0.0, 50.0)}, r"'jpeg_quality' field of CameraSetup must lie in \[1.0, 100.0\]"),
    ({"modality": 1.5}, r"'modality' field of CameraSetup must be in \[0, 1\]"),
    ({"distractors": -0.1}, r"'distractors' field of CameraSetup must be in \[0, 1\]"),
    ({"distractors": 1.5}, r"'distractors' field of CameraSetup must be in \[0, 1\]"),
    ({"rotation_offset_deg": 50.0}, r"'rotation_offset_deg' field of CameraSetup must be in \[-45, 45\]"),
    ({"rotation_offset_deg": -46.0}, r"'rotation_offset_deg' field"),
])
def test_camera_setup_validates(kwargs, message):
    """Check that impossible camera settings are refused with the field's name."""
    with pytest.raises(ValueError, match=message):
        CameraSetup(**kwargs)


def test_new_fields_default_to_the_old_camera():
    """Check that distractors=1 and rotation_offset_deg=0 are the defaults, so old setups draw the same pixels."""
    setup = CameraSetup()
    assert setup.distractors == 1.0 and setup.rotation_offset_deg == 0.0
    explicit = CameraSetup(name="existing", distractors=1.0, rotation_offset_deg=0.0)
    assert torch.equal(render.render_parcels([0, 3], explicit, seed=1, image_size=32),
                       render.render_parcels([0, 3], "existing", seed=1, image_size=32))


def test_camera_key_lists_every_field_as_json():
    """Check that camera_key holds every field, with ranges as lists, so any change changes a cache key."""
    key = cameras.camera_key(CAMERA_PRESETS["new"])
    assert set(key) == {f.name for f in dataclasses.fields(CameraSetup)}
    assert key["jpeg_quality"] == [60.0, 80.0] and key["distractors"] == 1.0
    assert cameras.camera_key(CameraSetup(distractors=0.5)) != cameras.camera_key(CameraSetup())
