"""Procedural renderer of top-down photos of parcels on a conveyor, with defects.

Everything is vectorised over a batch with torch: each output pixel is mapped to the parcel's own
frame ``(u, v)`` (``u, v`` in [-1, 1] inside the box) and every part of the scene (cardboard,
tape, label, distractors, the defect) is evaluated there, in pixel units, so a defect keeps its
size in pixels whatever the pose. A `companion.cameras.CameraSetup` then turns the scene into a
photo: colour temperature, brightness, gamma, a light gradient, blur, sensor noise and a
JPEG-like compression; its ``modality`` mixes in an x-ray-style scanner image, which shows
density, not colour.

The defect classes are correct by construction: an image of class ``dent`` has exactly one dent
and no other defect, while distractors (marker scribbles that look like tears, dirt that looks
like holes) are painted on parcels of every class. They are painted into the cardboard's colour
only, so the scanner's density image never shows them.

Usage::

    >>> from companion import render
    >>> tuple(render.render_parcels([0, 1, 2], "existing", seed=0).shape)
    (3, 3, 112, 112)

Taught in ``notebooks/01_meet_the_data_and_backbone.ipynb``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from companion.cameras import CameraSetup, get_camera
from companion.validation import check, check_int, check_seed

CLASSES: tuple[str, ...] = ("ok", "dent", "tear", "puncture", "water_damage", "crushed_corner")

#: Bump when the rendered pixels change: it is part of every dataset cache key.
RENDERER_VERSION = "1"

_CHUNK = 64  # images per batch: fits the CPU cache; fixed, so the bytes never depend on the dataset size


# ----------------------------------------------------------------------------------------------
# Small vectorised helpers. Maps are (N, H, W); per-image parameters are (N, 1, 1).


def _cover(signed_distance: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage of a shape from its signed distance in pixels (negative inside)."""
    return (0.5 - signed_distance).clamp(0.0, 1.0)


def _p(rng: np.random.Generator, low: float, high: float, n: int) -> torch.Tensor:
    return torch.from_numpy(rng.uniform(low, high, n).astype(np.float32)).view(n, 1, 1)


def _kelvin_to_rgb(kelvin: np.ndarray) -> np.ndarray:
    """Approximate white-balance gains of a light source, normalised to mean 1. (N,) -> (N, 3)."""
    t = kelvin / 100.0
    warm = np.maximum(t - 60, 1.0)
    red = np.where(t <= 66, 255.0, 329.7 * warm**-0.1332)
    green = np.where(t <= 66, 99.47 * np.log(t) - 161.1, 288.1 * warm**-0.0755)
    blue = np.where(t >= 66, 255.0, 138.5 * np.log(np.maximum(t - 10, 1.0)) - 305.0)
    rgb = np.clip(np.stack([red, green, blue], 1), 1.0, 255.0)
    rgb = rgb / 255.0
    return rgb / rgb.mean(1, keepdims=True)


def _upsampled_noise(gen: torch.Generator, n: int, cells: int, grid: torch.Tensor) -> torch.Tensor:
    """Smooth noise in [-1, 1] sampled at ``grid`` (N, H, W, 2) coordinates in [-1, 1]."""
    low_res = torch.rand(n, 1, cells, cells, generator=gen) * 2 - 1  # (N, 1, c, c)
    return F.grid_sample(low_res, grid, mode="bilinear", padding_mode="reflection", align_corners=False)[:, 0]


# ----------------------------------------------------------------------------------------------
# Defects: each returns (albedo multiplier (N,3,H,W) or None, paint, box-coverage multiplier,
# density change for the x-ray image). They work on the sub-batch of one class.


def _defect(cls: str, px: torch.Tensor, py: torch.Tensor, corner: dict, rng: np.random.Generator):
    n = px.shape[0]
    one = torch.ones_like(px)
    mult = one.clone()
    paint_alpha = torch.zeros_like(px)
    paint_rgb = torch.zeros(n, 3, 1, 1)
    keep = one.clone()
    density = torch.zeros_like(px)
    if cls == "dent":
        rx, ry, phi = _p(rng, 9, 14, n), _p(rng, 9, 14, n), _p(rng, 0, 2 * math.pi, n)
        strength = _p(rng, 0.15, 0.25, n)
        q = (px / rx) ** 2 + (py / ry) ** 2
        inside = (1 - q).clamp(min=0)
        gx, gy = -4 * inside * px / rx, -4 * inside * py / ry
        g = (gx * torch.cos(phi) + gy * torch.sin(phi)) / 1.54
        mult = 1 + strength * g - 0.05 * inside**2
        density = 0.45 * g.abs() + 0.1 * inside
    elif cls == "tear":
        length, width, alpha = _p(rng, 16, 26, n), _p(rng, 2.6, 4.0, n), _p(rng, 0, math.pi, n)
        p1, p2 = _p(rng, 0, 6.3, n), _p(rng, 0, 6.3, n)
        s = px * torch.cos(alpha) + py * torch.sin(alpha)
        t = -px * torch.sin(alpha) + py * torch.cos(alpha)
        t = t - (1.1 * torch.sin(0.9 * s + p1) + 0.6 * torch.sin(2.1 * s + p2))
        past_end = (s.abs() - length / 2).clamp(min=0)
        dist = torch.sqrt(t**2 + past_end**2)
        half = width / 2 * (1 - (s.abs() / (length / 2)).clamp(max=1) ** 4).clamp(min=0.35)
        gap = _cover(dist - half)
        rim = _cover(dist - half - 1.6) - gap
        mult = 1 + 0.35 * rim - 0.85 * gap
        density = -0.22 * gap + 0.35 * rim
    elif cls == "puncture":
        radius, phase = _p(rng, 4.0, 6.0, n), _p(rng, 0, 6.3, n)
        dist = torch.sqrt(px**2 + py**2)
        angle = torch.atan2(py, px)
        edge = radius * (1 + 0.2 * torch.sin(5 * angle + phase))
        hole = _cover(dist - edge)
        ring = _cover(dist - edge - 2.5) - hole
        mult = 1 - 0.9 * hole - 0.35 * ring * (0.6 + 0.4 * torch.cos(5 * angle + phase))
        density = -0.22 * hole + 0.45 * ring
    elif cls == "water_damage":
        radius = _p(rng, 13, 22, n)
        ph = [_p(rng, 0, 6.3, n) for _ in range(3)]
        darkening = _p(rng, 0.22, 0.32, n)
        dist = torch.sqrt(px**2 + py**2)
        angle = torch.atan2(py, px)
        edge = radius * (1 + 0.18 * torch.sin(3 * angle + ph[0]) + 0.1 * torch.sin(5 * angle + ph[1])
                         + 0.05 * torch.sin(9 * angle + ph[2]))
        inside = ((edge - dist) / 2 + 0.5).clamp(0, 1)
        tide = torch.exp(-(((dist - edge) / 1.3) ** 2))
        mult = (1 - darkening * inside) * (1 - 0.3 * tide)
        paint_alpha = 0.25 * inside  # water greys the cardboard
        paint_rgb = torch.tensor([0.35, 0.33, 0.30]).view(1, 3, 1, 1).expand(n, 3, 1, 1)
        density = 0.35 * inside + 0.45 * tide
    elif cls == "crushed_corner":
        fold = _p(rng, 17, 25, n)
        a, b = corner["a"], corner["b"]  # pixel distances from the chosen corner along the box axes
        p = a + b
        region = _cover(p - fold)
        wrinkle = torch.sin(0.8 * p + 2.0 * torch.sin(0.35 * (a - b)))
        crease = torch.exp(-(((p - fold) / 1.2) ** 2))
        mult = (1 - region * (0.3 + 0.15 * wrinkle)) * (1 - 0.35 * crease)
        keep = 1 - _cover(p - 0.4 * fold)
        density = region * (0.5 + 0.2 * wrinkle) + 0.4 * crease
    elif cls != "ok":
        raise ValueError(f"Unknown defect class {cls!r}; expected one of {CLASSES}.")
    return mult, paint_alpha, paint_rgb, keep, density


# ----------------------------------------------------------------------------------------------


def _render_chunk(labels: np.ndarray, camera: CameraSetup, size: int, rng: np.random.Generator,
                  gen: torch.Generator) -> torch.Tensor:
    n = len(labels)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    xs, ys = xs.expand(n, size, size), ys.expand(n, size, size)
    half = 56.0  # geometry is in pixels of a 112-px image, whatever the output size

    # --- pose: keystone, rotation, box size (largest that fits, times a scale), position
    keystone = _p(rng, -camera.keystone, camera.keystone, n)
    gx, gy = xs / (1 + keystone * ys), ys / (1 + keystone * ys)
    theta = (_p(rng, -camera.rotation_deg, camera.rotation_deg, n) + camera.rotation_offset_deg) * (math.pi / 180)
    aspect = _p(rng, 0.65, 1.0, n)
    wide = torch.from_numpy(rng.random(n) < 0.5).view(n, 1, 1)
    ext_u, ext_v = torch.where(wide, 1.0, aspect), torch.where(wide, aspect, 1.0)
    c, s = torch.cos(theta).abs(), torch.sin(theta).abs()
    fit = (1 - 0.06 - camera.keystone) / torch.maximum(ext_u * c + ext_v * s, ext_u * s + ext_v * c)
    scale = _p(rng, *camera.box_scale, n) * fit
    hu, hv = ext_u * scale, ext_v * scale  # half sizes in normalised image units
    shift = (1 - scale * torch.maximum(ext_u * c + ext_v * s, ext_u * s + ext_v * c)).clamp(min=0)
    cx = _p(rng, -1, 1, n) * shift * 0.5
    cy = _p(rng, -1, 1, n) * shift * 0.5
    dx, dy = gx - cx, gy - cy
    u = (dx * torch.cos(theta) + dy * torch.sin(theta)) / hu
    v = (-dx * torch.sin(theta) + dy * torch.cos(theta)) / hv
    hu_px, hv_px = hu * half, hv * half
    box_d = torch.maximum((u.abs() - 1) * hu_px, (v.abs() - 1) * hv_px)
    box = _cover(box_d)

    # --- background: conveyor belt, or a concrete floor with a yellow stripe
    grid = torch.stack([xs, ys], -1)
    bg_noise = _upsampled_noise(gen, n, 12, grid)
    floor = torch.from_numpy(rng.random(n) < camera.floor_probability).view(n, 1, 1, 1)
    belt_level = _p(rng, 0.20, 0.28, n)
    belt = belt_level * (1 + 0.12 * bg_noise + 0.06 * torch.sin(ys * half * 0.9))
    belt_rgb = belt.unsqueeze(1) * torch.tensor([0.95, 1.0, 1.05]).view(1, 3, 1, 1)
    concrete = _p(rng, 0.48, 0.6, n) * (1 + 0.18 * bg_noise)
    stripe_angle = _p(rng, -0.5, 0.5, n)
    stripe_pos = _p(rng, -0.9, 0.9, n)
    stripe_d = ((xs * torch.cos(stripe_angle) + ys * torch.sin(stripe_angle)) - stripe_pos).abs() * half
    stripe = _cover(stripe_d - _p(rng, 4, 7, n)).unsqueeze(1)
    floor_rgb = concrete.unsqueeze(1) * torch.tensor([1.0, 0.98, 0.94]).view(1, 3, 1, 1)
    floor_rgb = floor_rgb * (1 - stripe) + stripe * torch.tensor([0.85, 0.72, 0.12]).view(1, 3, 1, 1)
    background = torch.where(floor, floor_rgb, belt_rgb)
    shadow_u, shadow_v = _p(rng, 0.02, 0.06, n) / hu, _p(rng, 0.02, 0.06, n) / hv
    shadow_d = torch.maximum(((u - shadow_u).abs() - 1) * hu_px, ((v - shadow_v).abs() - 1) * hv_px)
    background = background * (1 - 0.45 * ((2 - shadow_d) / 4).clamp(0, 1)).unsqueeze(1)

    # --- cardboard, seam, tape, label
    box_grid = torch.stack([u, v], -1)
    card_noise = _upsampled_noise(gen, n, 8, box_grid)
    fibre = torch.sin(v * hv_px * 1.2 + _p(rng, 0, 6.3, n))
    tone = _p(rng, 0.85, 1.1, n)
    base = torch.tensor([0.66, 0.49, 0.31]).view(1, 3, 1, 1) * tone.unsqueeze(1)
    shade = 1 + 0.07 * card_noise + 0.025 * fibre
    albedo = base * shade.unsqueeze(1)  # (N, 3, H, W)
    seam = torch.exp(-((u * hu_px / 0.8) ** 2))
    albedo = albedo * (1 - 0.35 * seam).unsqueeze(1)
    tape_half = _p(rng, 5, 7, n)
    tape = _cover(u.abs() * hu_px - tape_half)
    clear_tape = torch.from_numpy(rng.random(n) < 0.5).view(n, 1, 1, 1)
    tape_rgb = torch.where(clear_tape, albedo * 1.12 + 0.03, torch.tensor([0.75, 0.6, 0.4]).view(1, 3, 1, 1))
    gloss = 0.08 * torch.exp(-(((u * hu_px - tape_half * 0.4) / 1.5) ** 2)).unsqueeze(1)
    albedo = albedo * (1 - tape.unsqueeze(1)) + (tape_rgb + gloss) * tape.unsqueeze(1)
    side = torch.where(torch.from_numpy(rng.random(n) < 0.5).view(n, 1, 1), 1.0, -1.0)
    label_w, label_h = _p(rng, 12, 17, n), _p(rng, 9, 13, n)  # half sizes in pixels
    label_cu = side * (tape_half + label_w + 3 + _p(rng, 0, 0.15, n) * hu_px) / hu_px
    label_cv = _p(rng, -0.4, 0.4, n)
    lx, ly = (u - label_cu) * hu_px, (v - label_cv) * hv_px
    label = _cover(torch.maximum(lx.abs() - label_w, ly.abs() - label_h))
    bars = (torch.sin(lx * 1.9 + _p(rng, 0, 6, n)) + torch.sin(lx * 3.1 + _p(rng, 0, 6, n))) > 0.2
    barcode = bars & (ly > label_h * 0.1) & (ly < label_h * 0.8) & (lx.abs() < label_w * 0.8)
    text = (torch.sin(ly * 1.6) > 0.3) & (ly < -label_h * 0.2) & (torch.sin(lx * 0.7 + ly) > -0.5) \
        & (lx.abs() < label_w * 0.75)
    ink = barcode.float() * 0.9 + text.float() * 0.55
    label_rgb = torch.tensor([0.94, 0.94, 0.91]).view(1, 3, 1, 1) * (1 - ink).unsqueeze(1)
    albedo = albedo * (1 - label.unsqueeze(1)) + label_rgb * label.unsqueeze(1)

    # --- distractors in every class: up to two marker scribbles and three dirt spots
    px_box, py_box = u * hu_px, v * hv_px
    marks = torch.zeros_like(u)
    for _ in range(2):
        on = torch.from_numpy(rng.random(n) < 0.6).view(n, 1, 1).float()
        cu, cv = _p(rng, -0.7, 0.7, n) * hu_px, _p(rng, -0.7, 0.7, n) * hv_px
        beta, length = _p(rng, 0, math.pi, n), _p(rng, 12, 24, n)
        amp, omega, ph = _p(rng, 1.5, 4, n), _p(rng, 0.3, 0.7, n), _p(rng, 0, 6.3, n)
        sx, sy = px_box - cu, py_box - cv
        along = sx * torch.cos(beta) + sy * torch.sin(beta)
        across = -sx * torch.sin(beta) + sy * torch.cos(beta) - amp * torch.sin(omega * along + ph)
        d = torch.sqrt(across**2 + (along.abs() - length / 2).clamp(min=0) ** 2)
        marks = torch.maximum(marks, on * 0.85 * _cover(d - _p(rng, 0.6, 1.0, n)))
    marker_rgb = torch.tensor([0.10, 0.12, 0.30]).view(1, 3, 1, 1)
    marks = marks * camera.distractors  # 1.0 leaves every pixel as drawn; the draws happen either way
    albedo = albedo * (1 - marks.unsqueeze(1)) + marker_rgb * marks.unsqueeze(1)
    dirt = torch.zeros_like(u)
    for _ in range(3):
        on = torch.from_numpy(rng.random(n) < 0.5).view(n, 1, 1).float()
        cu, cv = _p(rng, -0.85, 0.85, n) * hu_px, _p(rng, -0.85, 0.85, n) * hv_px
        r = _p(rng, 1.5, 3.5, n)
        blob = torch.exp(-((px_box - cu) ** 2 + (py_box - cv) ** 2) / (2 * r**2))
        dirt = dirt + on * _p(rng, 0.2, 0.4, n) * blob
    albedo = albedo * (1 - (dirt.clamp(max=0.6) * camera.distractors)).unsqueeze(1)

    # --- the defect, rendered class by class so each image only pays for its own
    keep = torch.ones_like(u)
    density_defect = torch.zeros_like(u)
    margin = 14.0
    for k, cls in enumerate(CLASSES):
        idx = torch.from_numpy(np.flatnonzero(labels == k))
        if cls == "ok" or len(idx) == 0:
            continue
        m = len(idx)
        lim_u = (1 - margin / hu_px[idx]).clamp(min=0.05)
        lim_v = (1 - margin / hv_px[idx]).clamp(min=0.05)
        du = (_p(rng, -1, 1, m) * lim_u * 0.8)
        dv = (_p(rng, -1, 1, m) * lim_v * 0.8)
        px = (u[idx] - du) * hu_px[idx]
        py = (v[idx] - dv) * hv_px[idx]
        su = torch.where(torch.from_numpy(rng.random(m) < 0.5).view(m, 1, 1), 1.0, -1.0)
        sv = torch.where(torch.from_numpy(rng.random(m) < 0.5).view(m, 1, 1), 1.0, -1.0)
        corner = {"a": (1 - su * u[idx]) * hu_px[idx], "b": (1 - sv * v[idx]) * hv_px[idx]}
        mult, paint_alpha, paint_rgb, keep_k, dens = _defect(cls, px, py, corner, rng)
        sub = albedo[idx] * mult.unsqueeze(1)
        sub = sub * (1 - paint_alpha.unsqueeze(1)) + paint_rgb * paint_alpha.unsqueeze(1)
        albedo[idx] = sub
        keep[idx] = keep_k
        density_defect[idx] = dens
    box = box * keep

    # --- the RGB photo: scene, then light
    scene = background * (1 - box.unsqueeze(1)) + albedo * box.unsqueeze(1)
    gains = torch.from_numpy(_kelvin_to_rgb(rng.uniform(*camera.color_temperature, n)).astype(np.float32))
    direction = _p(rng, 0, 2 * math.pi, n)
    ramp = xs * torch.cos(direction) + ys * torch.sin(direction)
    light = _p(rng, *camera.brightness, n) * (1 + camera.light_gradient * 0.5 * ramp)
    photo = (scene * light.unsqueeze(1) * gains.view(n, 3, 1, 1)).clamp(0, 1)
    photo = photo ** _p(rng, *camera.gamma, n).unsqueeze(1)

    # --- the x-ray-style scanner image: attenuation by density, contents inside the box
    if camera.modality > 0:
        wall = torch.exp(-((torch.minimum((1 - u.abs()) * hu_px, (1 - v.abs()) * hv_px)) / 2.0) ** 2)
        density = 0.25 + 0.55 * wall + 0.06 * tape + 0.03 * label + 0.05 * card_noise + density_defect
        for _ in range(3):
            on = torch.from_numpy(rng.random(n) < 0.75).view(n, 1, 1).float()
            cu, cv = _p(rng, -0.6, 0.6, n) * hu_px, _p(rng, -0.6, 0.6, n) * hv_px
            ru, rv = _p(rng, 6, 16, n), _p(rng, 6, 16, n)
            item = _cover((torch.sqrt(((px_box - cu) / ru) ** 2 + ((py_box - cv) / rv) ** 2) - 1) * 4)
            density = density + on * _p(rng, 0.2, 0.7, n) * item
        density = density * box + 0.08 * (1 + bg_noise) * (1 - box)
        xray = torch.exp(-1.3 * density).unsqueeze(1) * torch.tensor([0.93, 0.97, 1.0]).view(1, 3, 1, 1)
        photo = photo * (1 - camera.modality) + xray * camera.modality

    # --- optics and sensor: blur, noise, compression
    photo = _gaussian_blur(photo, _p(rng, *camera.blur_sigma, n).view(n, 1, 1, 1) * (size / 112))
    photo = photo + torch.randn(photo.shape, generator=gen) * _p(rng, *camera.noise_std, n).view(n, 1, 1, 1)
    photo = _jpeg_like(photo.clamp(0, 1), rng.uniform(*camera.jpeg_quality, n))
    return (photo * 255).round().clamp(0, 255).to(torch.uint8)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma. images (N, 3, H, W), sigma (N, 1, 1, 1)."""
    n, c, h, w = images.shape
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1).clamp(min=0.05) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, 2r+1)
    x = F.pad(images.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(n * c, 1, 1, -1), groups=n * c)  # along width
    x = F.conv2d(x, kernel.view(n * c, 1, -1, 1), groups=n * c)  # along height
    return x.view(n, c, h, w)


_LUMA_TABLE = torch.tensor([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=torch.float32).view(8, 8)
_CHROMA_TABLE = torch.full((8, 8), 99.0)
_CHROMA_TABLE[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]])
_DCT = torch.tensor([[math.sqrt((1 if k == 0 else 2) / 8) * math.cos((2 * i + 1) * k * math.pi / 16)
                      for i in range(8)] for k in range(8)], dtype=torch.float32)
_DCT2 = torch.kron(_DCT, _DCT)  # the 2-D DCT of a flattened 8x8 block, (64, 64)


def _jpeg_like(images: torch.Tensor, quality: np.ndarray) -> torch.Tensor:
    """JPEG-style loss: 8x8 DCT of YCbCr, quantised with the standard tables at ``quality``."""
    n, _, h, w = images.shape
    pad_h, pad_w = (-h) % 8, (-w) % 8
    x = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") * 255
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    ycc = torch.stack([0.299 * r + 0.587 * g + 0.114 * b - 128,
                       -0.168736 * r - 0.331264 * g + 0.5 * b,
                       0.5 * r - 0.418688 * g - 0.081312 * b], 1)
    q = np.clip(quality, 1, 100)
    scale = torch.from_numpy(np.where(q < 50, 5000 / q, 200 - 2 * q).astype(np.float32)).view(n, 1, 1)
    tables = torch.stack([_LUMA_TABLE, _CHROMA_TABLE, _CHROMA_TABLE]).view(1, 3, 64)
    tables = torch.floor((tables * scale + 50) / 100).clamp(1, 255)
    hb, wb = x.shape[2] // 8, x.shape[3] // 8
    blocks = ycc.view(n, 3, hb, 8, wb, 8).permute(0, 1, 2, 4, 3, 5).reshape(n, 3, hb * wb, 64)
    coeffs = blocks @ _DCT2.T  # (N, 3, blocks, 64)
    tables = tables.view(n, 3, 1, 64)
    coeffs = torch.round(coeffs / tables) * tables
    blocks = (coeffs @ _DCT2).view(n, 3, hb, wb, 8, 8)
    ycc = blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, 3, hb * 8, wb * 8)
    y, cb, cr = ycc[:, 0] + 128, ycc[:, 1], ycc[:, 2]
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1) / 255
    return rgb[:, :, :h, :w].clamp(0, 1)


def render_parcels(labels, camera: str | CameraSetup = "existing", *, seed: int = 0,
                   image_size: int = 112) -> torch.Tensor:
    """Render one photo per label; the same arguments always give the same bytes.

    Parameters
    ----------
    labels : sequence of int in ``[0, 6)``, the class index (see :data:`CLASSES`) of each image.
    camera : a preset name (``"existing"``, ``"new"``, ``"xray"``) or a :class:`CameraSetup`.

    Returns a uint8 tensor of shape ``(N, 3, image_size, image_size)``.
    """
    func = "render_parcels"
    camera = get_camera(camera)
    labels = np.asarray(labels)
    check(labels.ndim == 1 and (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)), labels, "labels",
          func, "a 1-D sequence of ints")
    check(labels.size == 0 or (labels.min() >= 0 and labels.max() < len(CLASSES)), labels, "labels", func,
          f"class indices in [0, {len(CLASSES) - 1}]")
    seed = check_seed(seed, "seed", func)
    image_size = check_int(image_size, "image_size", func, low=32, high=512)
    out = torch.empty(len(labels), 3, image_size, image_size, dtype=torch.uint8)
    with torch.no_grad():
        for i, start in enumerate(range(0, len(labels), _CHUNK)):
            chunk = labels[start:start + _CHUNK]
            rng = np.random.default_rng([int(seed), i])
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            out[start:start + len(chunk)] = _render_chunk(chunk, camera, int(image_size), rng, gen)
    return out
