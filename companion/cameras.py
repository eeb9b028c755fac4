"""Camera setups: how a parcel photo is taken, the three presets and the domain-shift dial.

Scope: a `CameraSetup` holds every setting that turns a rendered scene into a photo (colour
temperature, brightness, gamma, light gradient, blur, sensor noise, JPEG quality, tilt, the
background, the share of x-ray-style scanner image) and how strongly the distractors are drawn.
`CAMERA_PRESETS` are the existing camera, the new camera and the x-ray scanner;
`interpolate_cameras` moves every setting from one camera to another; `camera_key` is the
dict that goes into cache keys. The renderer is `companion.render`.

Usage::

    >>> from companion import cameras
    >>> cameras.get_camera("new").jpeg_quality
    (60.0, 80.0)
    >>> cameras.interpolate_cameras("existing", "new", 0.5).name
    'existing->new@0.50'

Taught in ``notebooks/01_meet_the_data_and_backbone.ipynb``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from companion.validation import check_float, invalid

__all__ = ["CameraSetup", "CAMERA_PRESETS", "get_camera", "interpolate_cameras", "camera_key"]


@dataclass(frozen=True)
class CameraSetup:
    """How the photo is taken. Ranges are ``(low, high)``, drawn uniformly per image.

    ``floor_probability`` is the chance of a floor with a yellow stripe instead of the conveyor
    belt; ``modality`` mixes the RGB photo (0) with an x-ray-style scanner image (1).
    A parcel is turned by an angle drawn from ``rotation_offset_deg +- rotation_deg`` (degrees,
    counter-clockwise positive). ``distractors`` scales the marker scribbles and dirt spots painted on every parcel (1: as
    drawn, 0: none); the same parcels are drawn either way. The scanner image shows density, in
    which ink and dirt do not appear, so its parcels carry no distractors whatever this says.
    """

    name: str = "custom"
    rotation_deg: float = 8.0
    rotation_offset_deg: float = 0.0
    box_scale: tuple[float, float] = (0.80, 0.98)
    color_temperature: tuple[float, float] = (3600.0, 4800.0)
    brightness: tuple[float, float] = (0.95, 1.15)
    gamma: tuple[float, float] = (0.90, 1.05)
    blur_sigma: tuple[float, float] = (0.3, 0.7)
    noise_std: tuple[float, float] = (0.005, 0.015)
    jpeg_quality: tuple[float, float] = (80.0, 95.0)
    light_gradient: float = 0.15
    floor_probability: float = 0.0
    keystone: float = 0.0
    modality: float = 0.0
    distractors: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "name":
                continue
            if isinstance(value, tuple):
                if len(value) != 2 or not all(np.isfinite(value)) or value[0] > value[1]:
                    raise ValueError(
                        f"The '{f.name}' field of CameraSetup must be a (low, high) pair with "
                        f"low <= high. Got {value!r} instead."
                    )
            elif not np.isfinite(value):
                raise ValueError(f"The '{f.name}' field of CameraSetup must be finite. Got {value!r}.")
        checks = {
            "box_scale": (0.3, 1.0), "blur_sigma": (0.0, 3.0), "noise_std": (0.0, 0.2),
            "jpeg_quality": (1.0, 100.0), "color_temperature": (1500.0, 15000.0),
            "brightness": (0.1, 3.0), "gamma": (0.3, 3.0),
        }
        for name, (low, high) in checks.items():
            value = getattr(self, name)
            if value[0] < low or value[1] > high:
                raise ValueError(
                    f"The '{name}' field of CameraSetup must lie in [{low}, {high}]. Got {value!r} instead."
                )
        for name, (low, high) in {"rotation_deg": (0, 45), "rotation_offset_deg": (-45, 45), "light_gradient": (0, 0.6),
                                  "floor_probability": (0, 1), "keystone": (0, 0.2),
                                  "modality": (0, 1), "distractors": (0, 1)}.items():
            if not low <= getattr(self, name) <= high:
                raise ValueError(
                    f"The '{name}' field of CameraSetup must be in [{low}, {high}]. "
                    f"Got {getattr(self, name)!r} instead."
                )


CAMERA_PRESETS: dict[str, CameraSetup] = {
    "existing": CameraSetup(name="existing"),
    "new": CameraSetup(
        name="new", rotation_deg=30.0, box_scale=(0.82, 0.97), color_temperature=(6000.0, 8000.0),
        brightness=(0.75, 0.95), gamma=(1.0, 1.2), blur_sigma=(0.5, 0.8), noise_std=(0.01, 0.02),
        jpeg_quality=(60.0, 80.0), light_gradient=0.3, floor_probability=1.0, keystone=0.12,
    ),
    "xray": CameraSetup(
        name="xray", rotation_deg=30.0, box_scale=(0.82, 0.97), color_temperature=(6000.0, 8000.0),
        brightness=(0.75, 0.95), gamma=(1.0, 1.2), blur_sigma=(0.5, 0.8), noise_std=(0.01, 0.02),
        jpeg_quality=(60.0, 80.0), light_gradient=0.3, floor_probability=1.0, keystone=0.12,
        modality=1.0,
    ),
}


def get_camera(camera: str | CameraSetup) -> CameraSetup:
    """A camera preset by name, or the :class:`CameraSetup` itself."""
    if isinstance(camera, CameraSetup):
        return camera
    if isinstance(camera, str) and camera in CAMERA_PRESETS:
        return CAMERA_PRESETS[camera]
    raise invalid(camera, "camera", "get_camera", f"one of {sorted(CAMERA_PRESETS)} or a CameraSetup")


def interpolate_cameras(a: str | CameraSetup, b: str | CameraSetup, t: float) -> CameraSetup:
    """The domain-shift dial: every setting moves linearly from camera ``a`` (t=0) to ``b`` (t=1)."""
    t = check_float(t, "t", "interpolate_cameras", low=0.0, high=1.0)
    a, b = get_camera(a), get_camera(b)
    values = {}
    for f in fields(CameraSetup):
        if f.name == "name":
            continue
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, tuple):
            values[f.name] = tuple(float(x + t * (y - x)) for x, y in zip(va, vb))
        else:
            values[f.name] = float(va + t * (vb - va))
    return CameraSetup(name=f"{a.name}->{b.name}@{float(t):.2f}", **values)


def camera_key(camera: CameraSetup) -> dict:
    """All settings of a camera as a JSON-friendly dict (used in cache keys)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(camera).items()}
