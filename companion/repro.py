"""Reproducibility: seeding, deterministic mode, device choice and an environment report.

Scope: everything that decides *whether two runs give the same numbers* lives here.
`get_device` is the one place in the package that picks a device (CUDA, then MPS, then
CPU); every other module takes a ``device`` argument and resolves it through this function.

Usage (top of every notebook)::

    >>> from companion import repro
    >>> repro.seed_everything(0)
    >>> repro.get_device().type in ("cpu", "cuda", "mps")
    True
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
from collections.abc import Iterator
from importlib import metadata

import numpy as np
import torch

from companion.validation import check_bool, check_int, invalid

__all__ = ["CPU_THREADS", "seed_everything", "deterministic_mode", "get_device", "model_left_as_it_was",
           "environment_report"]

DEVICE_NAMES = ("cpu", "cuda", "mps")
CPU_THREADS = 2  # torch threads of every committed notebook run (CI's and Colab's free CPU have 2 cores)
_CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def seed_everything(seed: int, *, cpu_threads: int | None = CPU_THREADS) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device),
    and, when the computing device is the CPU, fix torch's number of CPU threads.

    Call it once at the top of a notebook; functions that sample still take their own ``seed``.
    Why the threads: torch splits a sum (a gradient over a batch, a BatchNorm statistic) between
    its threads, so another thread count adds the same numbers in another order. The last bits
    differ, and a few hundred training steps of a small network can carry that into the third
    decimal of an accuracy. With the count fixed, a 1-core and an 8-core machine print the
    numbers of the committed notebooks (computed with ``CPU_THREADS`` = 2, as on CI and Colab).

    Parameters
    ----------
    seed : int
        A non-negative integer (NumPy accepts at most 2**32 - 1).
    cpu_threads : int or None
        Threads for torch on the CPU (default ``CPU_THREADS``). ``None`` leaves torch's own
        choice (one per physical core): faster on a big machine, last digits may differ. Not
        applied when `get_device` picks a GPU, whose numbers differ from the CPU's anyway.

    """
    seed = check_int(seed, "seed", "seed_everything", low=0, high=2**32 - 1)
    cpu_threads = check_int(cpu_threads, "cpu_threads", "seed_everything", low=1, high=256, optional=True)
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device (lazily, no CUDA init)
    if cpu_threads is not None and get_device().type == "cpu":
        torch.set_num_threads(int(cpu_threads))


def deterministic_mode(enabled: bool = True) -> None:
    """Switch torch's deterministic algorithms on (or off) for bit-identical reruns.

    When enabled: ``torch.use_deterministic_algorithms(True)`` (an operation without a
    deterministic implementation raises instead of silently differing), cuDNN autotuning off
    and cuDNN deterministic on, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment.
    cuBLAS reads that variable when CUDA is initialised, so call this function *before* the
    first CUDA operation (e.g. right after the imports); calling it later still sets the
    flags but the cuBLAS setting may not take effect. On CPU it costs little; on a GPU it
    can slow training down. When disabled, the flags return to torch's defaults (the
    environment variable is left as it is).

    """
    check_bool(enabled, "enabled", "deterministic_mode")
    if enabled:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = _CUBLAS_WORKSPACE_CONFIG
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = enabled


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on: CUDA if available, then Apple MPS, then CPU.

    Parameters
    ----------
    prefer : {"cpu", "cuda", "mps"}, a name with an index such as "cuda:1", a torch.device, or None
        Ask for one device explicitly; an unavailable one raises ``ValueError``.
        ``None`` picks the best available one. Every ``device`` argument of the package goes
        through this function.

    >>> get_device("cpu")
    device(type='cpu')
    """
    if prefer is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    allowed = f"None or one of {DEVICE_NAMES} (optionally with an index, e.g. 'cuda:1')"
    device = None
    if isinstance(prefer, (str, torch.device)):
        try:
            device = torch.device(prefer.lower() if isinstance(prefer, str) else prefer)
        except RuntimeError:
            pass
    if device is None or device.type not in DEVICE_NAMES:
        raise invalid(prefer, "prefer", "get_device", allowed)
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
    if not available[device.type]:
        raise ValueError(
            f"get_device was asked for {prefer!r}, but this machine has no {device.type.upper()} "
            f"device available to torch. Use get_device() to pick the best available device, "
            f"or get_device('cpu')."
        )
    return device


def _named_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


@contextlib.contextmanager
def model_left_as_it_was(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Inside the block, move and switch ``model`` freely; afterwards it is back as it came.

    Restores the train/eval mode of every submodule (a model in `companion.adapt.train_mode`, with
    frozen BatchNorm layers in eval mode, comes back so) and the device and strides (memory
    layout) of every tensor. A
    function that runs a caller's model in eval mode and ``channels_last`` (feature extraction,
    the frozen-prefix cache) uses it, so whether its cache answered can never change later
    float results on that model.

    Usage::

        >>> model = torch.nn.Conv2d(3, 4, 3).train()
        >>> with model_left_as_it_was(model):
        ...     _ = model.eval().to(memory_format=torch.channels_last)
        >>> model.training, model.weight.is_contiguous()
        (True, True)
    """
    modes = {module: module.training for module in model.modules()}
    layouts = {name: (tensor.device, tensor.stride()) for name, tensor in _named_tensors(model).items()}
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training
        for name, tensor in _named_tensors(model).items():
            device, stride = layouts[name]
            if tensor.device != device or tensor.stride() != stride:
                restored = torch.empty_strided(tensor.shape, stride, dtype=tensor.dtype, device=device)
                tensor.data = restored.copy_(tensor.data)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_report() -> str:
    """Return a multi-line report of versions, device, threads and the deterministic flag.

    It holds nothing volatile (no timestamps, no memory use), so a notebook can print it and
    still pass nbval on the same machine.

    >>> environment_report().splitlines()[0].split()[0]
    'python'
    """
    from companion import __version__ as companion_version

    device = get_device()
    device_name = device.type
    if device.type == "cuda":
        device_name = f"cuda ({torch.cuda.get_device_name(0)})"
    rows = [
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("torchvision", _version("torchvision")),
        ("timm", _version("timm")),
        ("numpy", np.__version__),
        ("scikit-learn", _version("scikit-learn")),
        ("companion", companion_version),
        ("device", device_name),
        ("threads", str(torch.get_num_threads())),
        ("deterministic", str(torch.are_deterministic_algorithms_enabled())),
    ]
    lines = [f"{name:<14}{value}" for name, value in rows]
    return "\n".join(lines)
