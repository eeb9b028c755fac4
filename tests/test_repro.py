"""Tests for companion.repro: seeding, deterministic mode, device choice, environment report."""

import os
import random
import re

import numpy as np
import pytest
import torch

from companion import repro


def _draw() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


@pytest.fixture(autouse=True)
def restore_threads():
    """seed_everything sets torch's CPU threads; put back conftest.py's single thread after each test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_seed_everything_fixes_the_cpu_threads(monkeypatch):
    """Check that seeding pins torch to CPU_THREADS threads on the CPU, and that None or a GPU leaves them."""
    monkeypatch.setattr(repro, "get_device", lambda prefer=None: torch.device("cpu"))  # as on a CPU-only machine
    torch.set_num_threads(1)
    repro.seed_everything(0)
    assert repro.CPU_THREADS == 2 and torch.get_num_threads() == 2
    repro.seed_everything(0, cpu_threads=3)
    assert torch.get_num_threads() == 3
    torch.set_num_threads(1)
    repro.seed_everything(0, cpu_threads=None)
    assert torch.get_num_threads() == 1
    monkeypatch.setattr(repro, "get_device", lambda prefer=None: torch.device("cuda"))
    repro.seed_everything(0)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("threads", [0, -2, 1.5, True, "2", 1000])
def test_seed_everything_rejects_bad_thread_counts(threads):
    """Check that cpu_threads must be None or an int in [1, 256]."""
    with pytest.raises(ValueError, match=r"The 'cpu_threads' parameter of seed_everything must be None or an int "
                                         r"in \[1, 256\]. Got"):
        repro.seed_everything(0, cpu_threads=threads)


def test_seed_everything_makes_python_numpy_and_torch_repeat():
    """Check that seeding twice with the same seed repeats random, numpy and torch draws."""
    repro.seed_everything(123)
    first = _draw()
    repro.seed_everything(123)
    assert _draw() == first
    repro.seed_everything(124)
    assert _draw() != first


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0", 2**32])
def test_seed_everything_rejects_bad_seeds(seed):
    """Check that a seed that is not an int in [0, 2**32 - 1] raises a clear ValueError."""
    with pytest.raises(ValueError, match=r"The 'seed' parameter of seed_everything must be an int in "
                                         r"\[0, 4294967295\]"):
        repro.seed_everything(seed)


def test_seed_everything_accepts_numpy_integers():
    """Check that np.int64 seeds and thread counts work like ints."""
    repro.seed_everything(np.int64(5), cpu_threads=None)
    first = _draw()
    repro.seed_everything(5, cpu_threads=None)
    assert _draw() == first


@pytest.fixture
def restore_determinism():
    before = torch.are_deterministic_algorithms_enabled()
    env_before = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    cudnn_before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    yield
    torch.use_deterministic_algorithms(before)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn_before
    if env_before is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = env_before


def test_deterministic_mode_sets_flags_and_cublas_config(restore_determinism):
    """Check that deterministic_mode toggles torch's flag, cuDNN settings and the cuBLAS variable."""
    repro.deterministic_mode(True)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert "deterministic True" in " ".join(repro.environment_report().split())
    repro.deterministic_mode(False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


def test_deterministic_mode_rejects_non_bool():
    """Check that deterministic_mode only accepts a bool."""
    with pytest.raises(TypeError, match="The 'enabled' parameter of deterministic_mode must be True or False"):
        repro.deterministic_mode("yes")


def test_get_device_default_is_an_available_device():
    """Check that get_device() returns a torch.device of a known type and 'cpu' always works."""
    assert repro.get_device().type in repro.DEVICE_NAMES
    assert repro.get_device("cpu") == torch.device("cpu")
    assert repro.get_device("CPU") == torch.device("cpu")
    assert repro.get_device(torch.device("cpu")) == torch.device("cpu")


def test_get_device_order_is_cuda_then_mps_then_cpu(monkeypatch):
    """Check that the default choice prefers CUDA, then MPS, then the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert repro.get_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(repro, "_mps_available", lambda: True)
    assert repro.get_device() == torch.device("mps")
    monkeypatch.setattr(repro, "_mps_available", lambda: False)
    assert repro.get_device() == torch.device("cpu")


def test_get_device_rejects_unknown_names():
    """Check that an unknown device name raises a ValueError listing the allowed ones."""
    with pytest.raises(ValueError, match=r"The 'prefer' parameter of get_device must be None or one of"):
        repro.get_device("tpu")
    with pytest.raises(ValueError, match="must be None or one of"):
        repro.get_device(0)


def test_get_device_raises_for_an_unavailable_device(monkeypatch):
    """Check that asking for CUDA or MPS on a machine without it raises a clear error."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(repro, "_mps_available", lambda: False)
    with pytest.raises(ValueError, match=r"no CUDA device available.*get_device\('cpu'\)"):
        repro.get_device("cuda")
    with pytest.raises(ValueError, match="no MPS device available"):
        repro.get_device("mps:0")


def test_get_device_keeps_a_device_index(monkeypatch):
    """Check that 'cuda:1' keeps its index when CUDA is available."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert repro.get_device("cuda:1") == torch.device("cuda", 1)


def test_environment_report_lists_versions_and_is_stable():
    """Check that the report names every library, the device and threads, and repeats exactly."""
    report = repro.environment_report()
    for name in ("python", "torch", "torchvision", "timm", "numpy", "scikit-learn", "companion",
                 "device", "threads", "deterministic"):
        assert any(line.split()[0] == name for line in report.splitlines()), name
    assert torch.__version__ in report
    assert report == repro.environment_report()
    assert re.search(r"\d{1,2}:\d{2}|\b20\d\d-\d\d", report) is None  # no clock time, no date


# ----------------------------------------------------------------------------- the model as it was
@pytest.mark.parametrize("training", [True, False])
def test_model_left_as_it_was_restores_mode_and_memory_layout(training):
    """Check that after the block the model has its train/eval mode and every tensor its strides and device."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train(training)
    before = {name: (tensor.device, tensor.stride()) for name, tensor in model.state_dict().items()}
    values = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with repro.model_left_as_it_was(model) as inside:
        assert inside is model
        model.train(not training).to(memory_format=torch.channels_last)
        assert not model[0].weight.is_contiguous()
    assert model.training == training and all(m.training == training for m in model.modules())
    assert {name: (tensor.device, tensor.stride()) for name, tensor in model.state_dict().items()} == before
    assert all(torch.equal(values[name], tensor) for name, tensor in model.state_dict().items())


def test_model_left_as_it_was_restores_mixed_modes_module_by_module():
    """Check that a model half in train mode (frozen BatchNorm in eval, as adapt.train_mode leaves it) comes back so."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(2, 2)).train()
    model[1].eval()
    with repro.model_left_as_it_was(model):
        model.eval()
    assert [module.training for module in model.modules()] == [True, True, False, True]


def test_model_left_as_it_was_restores_even_when_the_block_raises():
    """Check that an exception inside the block still gives the model back as it came, and propagates."""
    model = torch.nn.Conv2d(3, 4, 3).train()
    with pytest.raises(RuntimeError, match="inside"):
        with repro.model_left_as_it_was(model):
            model.eval().to(memory_format=torch.channels_last)
            raise RuntimeError("inside")
    assert model.training and model.weight.is_contiguous()


def test_model_left_as_it_was_keeps_updates_made_inside():
    """Check that the values computed inside the block (e.g. running statistics) are kept, only the layout restored."""
    model = torch.nn.BatchNorm2d(3).train()
    with repro.model_left_as_it_was(model):
        model(torch.randn(4, 3, 5, 5) + 2.0)
    assert model.running_mean.abs().min() > 0.05 and model.num_batches_tracked.item() == 1
