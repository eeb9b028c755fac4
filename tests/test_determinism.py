"""Determinism on CPU: the same seed gives the same bits; 1 or 2 threads give the same accuracies.

A small but representative pipeline (render photos, split them, pretrained features, a linear
probe, a short partial fine-tune) runs twice in this process and must give bit-identical features,
probe weights, fine-tuned weights and accuracies. Then it runs in two fresh interpreters, one with
1 thread and one with 2 (the 1-thread fixture of conftest.py would pin this process), which must
print the same accuracies to 3 decimals. (The notebooks do not rely on that: their
``repro.seed_everything`` fixes the thread count at ``repro.CPU_THREADS``, because longer
training of small networks does carry last-bit differences into the printed decimals.) The dataset cache key's dependence on the renderer version is checked in
tests/test_data.py (test_cache_key_depends_on_camera_and_version).

Run the pipeline alone: ``python tests/test_determinism.py --threads 2``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from companion import backbones, data, features, probes, repro, strategies
from companion.recipes import RECIPES


def pipeline() -> dict:
    """Features, probe and a short partial fine-tune (2 epochs, 3 steps each) on 48 photos; every number kept."""
    repro.seed_everything(0, cpu_threads=None)  # keep the thread count the caller set: that is what is tested
    pool = data.make_dataset(8, image_size=64, seed=0, cache=False)  # 48 photos, 6 classes
    parts = data.stratified_split(pool, (0.5, 0.25, 0.25), seed=0)
    train_set, val_set, test_set = parts["train"], parts["val"], parts["test"]
    model = backbones.load_backbone(pretrained=True)
    X = {name: features.extract_features(model, part, device="cpu", cache=False)
         for name, part in parts.items()}  # (N, 1280) each
    probe = probes.fit_probe(X["train"], train_set.labels, X["val"], val_set.labels, seed=0)
    recipe = RECIPES["partial_top2"].with_(top_k_stages=1, max_passes=2, patience=1, batch_size=8, eval_images=1)
    tuned = strategies.run_strategy(recipe, train_set, val_set, lr=1e-3, seed=0, device="cpu")
    return {
        "features": X,
        "probe_weights": probe.pipeline.named_steps["classifier"].coef_,
        "probe_test_accuracy": probes.probe_accuracy(probe, X["test"], test_set.labels),
        "probe_C": probe.C,
        "tuned_weights": {k: v.clone() for k, v in tuned.model.state_dict().items()},
        "tuned_train_loss": tuned.history.train_loss[-1],
        "tuned_val_accuracy": tuned.val_accuracy,
        "tuned_test_accuracy": strategies.evaluate_strategy(tuned, test_set, device="cpu")["accuracy"],
    }


def summary(result: dict) -> str:
    """The lines a notebook would print: accuracies and the loss to 3 decimals."""
    return "\n".join([f"probe: C={result['probe_C']:g}, test accuracy {result['probe_test_accuracy']:.3f}",
                      f"partial fine-tune: train loss {result['tuned_train_loss']:.3f}, "
                      f"val accuracy {result['tuned_val_accuracy']:.3f}, "
                      f"test accuracy {result['tuned_test_accuracy']:.3f}"])


def test_the_same_seed_gives_bit_identical_numbers():
    """Check that two runs in one process agree bit for bit, features to fine-tuned weights."""
    first, second = pipeline(), pipeline()
    for name in first["features"]:
        assert np.array_equal(first["features"][name], second["features"][name]), name
    assert np.array_equal(first["probe_weights"], second["probe_weights"])
    for key, tensor in first["tuned_weights"].items():
        assert torch.equal(tensor, second["tuned_weights"][key]), key
    for key in ("probe_test_accuracy", "probe_C", "tuned_train_loss", "tuned_val_accuracy",
                "tuned_test_accuracy"):
        assert first[key] == second[key], key


def _printed(threads: int, tmp_path: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               COMPANION_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("PYTHONSTARTUP", None)
    done = subprocess.run([sys.executable, __file__, "--threads", str(threads)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"threads {threads}"
    return "\n".join(lines[1:])


@pytest.mark.skipif(repro._mps_available(), reason="on Apple MPS get_device picks the GPU, where no thread count is fixed")
def test_seeding_gives_a_one_core_process_the_committed_thread_count(tmp_path):
    """Check that seed_everything in a process started with 1 thread computes with CPU_THREADS (2)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # a CPU machine
    env.pop("PYTHONSTARTUP", None)
    code = ("import torch; from companion import repro; before = torch.get_num_threads(); "
            "repro.seed_everything(0); print(before, torch.get_num_threads())")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", str(repro.CPU_THREADS)]


def test_one_and_two_threads_print_the_same_accuracies(tmp_path):
    """Check that 1 and 2 threads print the same accuracies and loss to 3 decimals."""
    one, two = _printed(1, tmp_path), _printed(2, tmp_path)
    assert one == two
    assert one.startswith("probe: C=") and "partial fine-tune: train loss" in one


if __name__ == "__main__":
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "offline_kernel.py"))  # offline here too
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, required=True)
    torch.set_num_threads(parser.parse_args().threads)
    print(f"threads {torch.get_num_threads()}")
    print(summary(pipeline()))
