"""Tests for companion.layer_transfer: tasks, the network, the surgery, frozen training, the cache."""

import numpy as np
import pytest
import torch

from companion import layer_transfer as lt
from companion import train
from companion.data import ImageSet

CLASSES = ("red", "green", "blue", "grey")


def make_set(num_per_class: int = 6, size: int = 16, seed: int = 0) -> ImageSet:
    """Dark noise images; the first three classes have one bright colour channel, grey has none."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASSES)).repeat_interleave(num_per_class)  # (N,)
    images = torch.randint(0, 60, (len(labels), 3, size, size), dtype=torch.uint8, generator=generator)
    coloured = labels < 3
    images[torch.arange(len(labels))[coloured], labels[coloured]] += 150  # (N, 3, H, W)
    return ImageSet(images, labels, CLASSES)


@pytest.fixture(scope="module")
def parts():
    return {"train": make_set(6, seed=0), "val": make_set(3, seed=1), "test": make_set(3, seed=2)}


def small_config(**changes):
    options = dict(image_size=32, n_per_class=6, num_layers=3, width=4, num_epochs=1, lr=1e-2, batch_size=8,
                   num_seeds=1)
    return lt.LayerTransferConfig(**{**options, **changes})


def test_task_subset_relabels_in_the_given_order(parts):
    """Check that task_subset keeps only the named classes and numbers them in the given order."""
    task = lt.task_subset(parts["train"], ("blue", "red"))
    assert task.classes == ("blue", "red")
    assert len(task) == 12
    original = parts["train"].labels[torch.isin(parts["train"].labels, torch.tensor([0, 2]))]
    assert torch.equal(task.labels, (original == 0).long())  # red -> 1, blue -> 0
    assert torch.equal(task.images[task.labels == 0][:, 2].float().mean() > 100, torch.tensor(True))


@pytest.mark.parametrize("classes, error, match", [
    (("red",), ValueError, "at least 2 distinct classes"),
    (("red", "red"), ValueError, "at least 2 distinct"),
    (("red", "purple"), ValueError, "from \\('red'"),
    ("red", TypeError, "sequence of class names"),
])
def test_task_subset_rejects_bad_classes(parts, classes, error, match):
    """Check that task_subset names the allowed classes when given bad ones."""
    with pytest.raises(error, match=match):
        lt.task_subset(parts["train"], classes)


def test_layer_net_shapes_and_seed():
    """Check the output shape, the layer count and that a seed fixes the weights."""
    model = lt.make_layer_net(3, num_layers=4, width=4, seed=0)
    again = lt.make_layer_net(3, num_layers=4, width=4, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert model.num_layers == 4
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="'num_layers' parameter of make_layer_net must be an int in"):
        lt.make_layer_net(3, num_layers=0)
    with pytest.raises(ValueError, match="'num_classes'"):
        lt.make_layer_net(1)


@pytest.mark.parametrize("freeze", [True, False])
def test_transfer_layers_copies_and_freezes_the_first_n(freeze):
    """Check that the first n layers are copies (frozen or not) and the rest is re-initialised."""
    base = lt.make_layer_net(4, num_layers=3, width=4, seed=0)
    model = lt.transfer_layers(base, 2, num_classes=2, freeze=freeze, seed=5)
    fresh = lt.make_layer_net(2, num_layers=3, width=4, seed=5)
    for k in range(2):
        for a, b in zip(model.layers[k].state_dict().values(), base.layers[k].state_dict().values()):
            assert torch.equal(a, b)
        assert all(p.requires_grad is not freeze for p in model.layers[k].parameters())
    assert torch.equal(model.layers[2][0].weight, fresh.layers[2][0].weight)
    assert all(p.requires_grad for p in model.layers[2].parameters())
    assert model.classifier.out_features == 2
    assert all(p.requires_grad for p in base.parameters())  # the base is untouched


def test_transfer_layers_rejects_bad_arguments():
    """Check the messages for a wrong base, n out of range and a non-bool freeze."""
    base = lt.make_layer_net(3, num_layers=3, width=4, seed=0)
    with pytest.raises(TypeError, match="must be a LayerNet"):
        lt.transfer_layers(torch.nn.Linear(2, 2), 1, 3, freeze=True)
    with pytest.raises(ValueError, match=r"must be an int in \[0, 3\]"):
        lt.transfer_layers(base, 4, 3, freeze=True)
    with pytest.raises(TypeError, match="True or False"):
        lt.transfer_layers(base, 1, 3, freeze="yes")


def test_frozen_layers_do_not_change_and_cached_prefix_matches_recomputing(parts):
    """Check that fit_layer_net leaves frozen layers (and their BatchNorm) unchanged, and that the
    cached-prefix path trains the same weights as the plain loop."""
    base = lt.make_layer_net(4, num_layers=3, width=4, seed=0)
    model = lt.transfer_layers(base, 2, num_classes=4, freeze=True, seed=1)
    before = {k: v.clone() for k, v in model.layers[:2].state_dict().items()}
    lt.fit_layer_net(model, parts["train"], parts["val"], num_epochs=2, lr=1e-2, batch_size=8)
    assert all(torch.equal(before[k], v.cpu()) for k, v in model.layers[:2].state_dict().items())
    plain = lt.transfer_layers(base, 2, num_classes=4, freeze=True, seed=1)
    train.fit(plain, parts["train"], parts["val"], num_epochs=2, lr=1e-2, batch_size=8, progress=False)
    for a, b in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_train_base_caches_atomically_and_reloads(parts, tmp_path):
    """Check that a second call loads the cached weights, and that the key changes with the seed."""
    options = dict(num_layers=2, width=4, num_epochs=1, lr=1e-2, batch_size=8, cache_dir=tmp_path)
    first = lt.train_base(parts["train"], parts["val"], seed=0, **options)
    files = list(tmp_path.glob("layernet_*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    again = lt.train_base(parts["train"], parts["val"], seed=0, **options)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    lt.train_base(parts["train"], parts["val"], seed=1, **options)
    assert len(list(tmp_path.glob("layernet_*.npz"))) == 2
    files[0].write_bytes(b"not a zip file")  # a broken cache file is retrained and overwritten
    third = lt.train_base(parts["train"], parts["val"], seed=0, **options)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), third.state_dict().values()))
    with pytest.raises(TypeError, match="'val_set' parameter of train_base"):
        lt.train_base(parts["train"], None, **options)


def test_run_layer_transfer_shapes_and_table(parts, tmp_path):
    """Check the result's shapes, the table's rows and the baseline-relative accuracies."""
    task_a = {k: lt.task_subset(v, ("red", "green")) for k, v in parts.items()}
    task_b = {k: lt.task_subset(v, ("blue", "grey")) for k, v in parts.items()}
    result = lt.run_layer_transfer(task_a, task_b, config=small_config(), depths=(1, 3), seeds=(0, 1),
                                   cache_dir=tmp_path)
    assert result.depths == (1, 3) and result.seeds == (0, 1)
    assert set(result.accuracy) == set(lt.VARIANTS)
    assert all(values.shape == (2, 2) for values in result.accuracy.values())
    assert np.all((result.accuracy["AnB"] >= 0) & (result.accuracy["AnB"] <= 1))
    np.testing.assert_allclose(result.relative("BnB"), result.accuracy["BnB"] - result.base_b[:, None])
    table = result.table()
    assert "AnB+" in table and "baseB (n = 0)" in table and len(table.splitlines()) == 5
    with pytest.raises(ValueError, match="'depths' parameter of run_layer_transfer"):
        lt.run_layer_transfer(task_a, task_b, config=small_config(), depths=(4,), cache_dir=tmp_path)
    with pytest.raises(TypeError, match="'task_a' parameter of run_layer_transfer"):
        lt.run_layer_transfer(parts["train"], task_b, config=small_config())


def test_paper_reference_covers_every_variant():
    """Check that the paper's reference set has every variant at n = 1..7 and the baseline."""
    assert set(lt.PAPER_REFERENCE) == {"baseB", *lt.VARIANTS}
    assert all(sorted(lt.PAPER_REFERENCE[v]) == list(range(1, 8)) for v in lt.VARIANTS)
    assert set(lt.CONFIGS) == {"cpu", "gpu"}
