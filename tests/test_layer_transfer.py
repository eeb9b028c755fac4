"""Tests for companion.layer_transfer: tasks, the network, the surgery, frozen training, the cache, the grid."""

import numpy as np
import pytest
import torch

from companion import backbones, prefix, train
from companion import layer_transfer as lt
from companion.cache import CacheWarning
from companion.data import ImageSet
from companion.recipes import RECIPES

CLASSES = ("red", "green", "blue", "grey")
RECIPE = RECIPES["scratch"].with_(grid=(1e-2,), max_passes=2, patience=1, batch_size=8, eval_images=1)


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
    options = dict(image_size=32, n_per_class=6, num_layers=3, width=4, recipe=RECIPE, num_seeds=1)
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
    ("red", TypeError, "The 'classes' parameter of task_subset must be a sequence of class names"),
])
def test_task_subset_rejects_bad_classes(parts, classes, error, match):
    """Check that task_subset names the allowed classes when given bad ones."""
    with pytest.raises(error, match=match):
        lt.task_subset(parts["train"], classes)


def test_layer_net_shapes_seed_and_spec():
    """Check the output shape, the layer count, the spec's depths and that a seed fixes the weights."""
    model = lt.make_layer_net(3, num_layers=4, width=4, seed=0)
    again = lt.make_layer_net(3, num_layers=4, width=4, seed=np.int64(0))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert model.num_layers == 4
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    x = torch.rand(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)))
    spec = backbones.spec_of(model)
    assert spec.depth_names == ("layer1", "layer2", "layer3", "layer4") and spec.num_features == model.num_features
    assert backbones.describe_features(model, image_size=32) == (spec.channels, spec.strides) == ((4, 4, 8, 8),
                                                                                                   (1, 2, 2, 4))
    assert [module for _, module in backbones.stages(model)] == list(model.layers)
    with pytest.raises(ValueError, match=r"The 'num_layers' parameter of make_layer_net must be an int in \[1, 12\]"):
        lt.make_layer_net(3, num_layers=0)
    with pytest.raises(ValueError, match="The 'num_classes' parameter of make_layer_net must be an int >= 2"):
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
    with pytest.raises(TypeError, match="The 'base' parameter of transfer_layers must be a LayerNet"):
        lt.transfer_layers(torch.nn.Linear(2, 2), 1, 3, freeze=True)
    with pytest.raises(ValueError, match=r"The 'num_copied' parameter of transfer_layers must be an int in \[0, 3\]"):
        lt.transfer_layers(base, 4, 3, freeze=True)
    with pytest.raises(TypeError, match="The 'freeze' parameter of transfer_layers must be True or False"):
        lt.transfer_layers(base, 1, 3, freeze="yes")


def test_frozen_layers_do_not_change_and_cached_prefix_matches_recomputing(parts):
    """Check that fit_layer_net leaves frozen layers (and their BatchNorm) unchanged, reads them from the prefix
    cache, and trains the same weights as the plain loop with the recipe's schedule."""
    base = lt.make_layer_net(4, num_layers=3, width=4, seed=0)
    model = lt.transfer_layers(base, 2, num_classes=4, freeze=True, seed=1)
    before = {k: v.clone() for k, v in model.layers[:2].state_dict().items()}
    cache = prefix.PrefixCache()
    history = lt.fit_layer_net(model, parts["train"], parts["val"], recipe=RECIPE, lr=1e-2, prefix_cache=cache)
    assert len(cache) == len(parts["train"]) + len(parts["val"])
    assert history.num_epochs <= RECIPE.schedule_for(len(parts["train"])).max_epochs
    assert all(torch.equal(before[k], v.cpu()) for k, v in model.layers[:2].state_dict().items())
    plain = lt.transfer_layers(base, 2, num_classes=4, freeze=True, seed=1)
    schedule = RECIPE.schedule_for(len(parts["train"]))
    train.fit(plain, parts["train"], parts["val"], num_epochs=schedule.max_epochs, eval_every=schedule.eval_every,
              patience=schedule.patience, lr=1e-2, batch_size=RECIPE.batch_size, seed=0, progress=False)
    for a, b in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fit_layer_net_rejects_bad_arguments(parts):
    """Check that fit_layer_net wants a LayerNet and a validation set."""
    with pytest.raises(TypeError, match="The 'model' parameter of fit_layer_net must be a LayerNet"):
        lt.fit_layer_net(torch.nn.Linear(2, 2), parts["train"], parts["val"], recipe=RECIPE, lr=1e-2)
    with pytest.raises(TypeError, match="The 'val_set' parameter of fit_layer_net must be a companion.data.ImageSet"):
        lt.fit_layer_net(lt.make_layer_net(4, num_layers=2, width=4), parts["train"], None, recipe=RECIPE, lr=1e-2)


def test_train_base_caches_atomically_and_reloads(parts, tmp_path, monkeypatch):
    """Check that a second call loads the cached weights without training, and that the key changes with the seed
    and the recipe; a broken cache file is retrained with a CacheWarning."""
    options = dict(recipe=RECIPE, lr=1e-2, num_layers=2, width=4, cache_dir=tmp_path)
    first = lt.train_base(parts["train"], parts["val"], seed=0, **options)
    files = list(tmp_path.glob("layernet_*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp")) and not first.training
    fit = lt.fit_layer_net
    monkeypatch.setattr(lt, "fit_layer_net", lambda *args, **kwargs: pytest.fail("trained although cached"))
    again = lt.train_base(parts["train"], parts["val"], seed=0, **options)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    monkeypatch.setattr(lt, "fit_layer_net", fit)
    lt.train_base(parts["train"], parts["val"], seed=1, **options)
    lt.train_base(parts["train"], parts["val"], seed=0, **{**options, "recipe": RECIPE.with_(batch_size=4)})
    assert len(list(tmp_path.glob("layernet_*.npz"))) == 3
    files[0].write_bytes(b"not a zip file")  # a broken cache file is retrained and overwritten
    with pytest.warns(CacheWarning, match="layernet_"):
        third = lt.train_base(parts["train"], parts["val"], seed=0, **options)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), third.state_dict().values()))
    with pytest.raises(TypeError, match="The 'val_set' parameter of train_base must be a companion.data.ImageSet"):
        lt.train_base(parts["train"], None, **options)


def test_run_layer_transfer_shapes_correctness_and_table(parts, tmp_path):
    """Check the result's shapes, the per-image correctness, the chosen lr, the table and the relative accuracies."""
    task_a = {k: lt.task_subset(v, ("red", "green")) for k, v in parts.items()}
    task_b = {k: lt.task_subset(v, ("blue", "grey")) for k, v in parts.items()}
    config = small_config(recipe=RECIPE.with_(grid=(1e-2, 3e-2)))
    result = lt.run_layer_transfer(task_a, task_b, config=config, depths=np.array([1, 3]), seeds=(0, 1),
                                   cache_dir=tmp_path)
    assert result.depths == (1, 3) and result.seeds == (0, 1)
    assert result.lr in (1e-2, 3e-2) and result.config["lr"] == result.lr
    assert set(result.accuracy) == set(result.correct) == set(lt.VARIANTS)
    assert all(values.shape == (2, 2) for values in result.accuracy.values())
    num_test = len(task_b["test"])
    for variant in lt.VARIANTS:
        for s in range(2):
            for j in range(2):
                correct = result.correct[variant][s][j]
                assert correct.dtype == bool and correct.shape == (num_test,)
                assert result.accuracy[variant][s, j] == correct.mean()
    assert len(result.base_b_correct) == 2 and all(c.shape == (num_test,) for c in result.base_b_correct)
    np.testing.assert_array_equal(result.base_b, [c.mean() for c in result.base_b_correct])
    assert np.all((result.base_a >= 0) & (result.base_a <= 1))
    np.testing.assert_allclose(result.relative("BnB"), result.accuracy["BnB"] - result.base_b[:, None])
    table = result.table()
    assert "AnB+" in table and "baseB (n = 0)" in table and len(table.splitlines()) == 5
    sd = f"{np.std(result.accuracy['BnB'][:, 0], ddof=1):.2f}"  # the sample sd, as compare uses
    assert table.splitlines()[2].split()[3] == sd
    expected = ["baseA", "baseB"] + [(variant, n) for n in (1, 3) for variant in lt.VARIANTS]
    assert list(result.fits) == expected and all(len(runs) == 2 for runs in result.fits.values())
    for epochs, kept, patient, first in (run for runs in result.fits.values() for run in runs):
        assert 1 <= epochs and 0 <= kept <= epochs and isinstance(patient, bool) and isinstance(first, bool)
    check = result.schedule_check().splitlines()
    assert len(check) == 1 + len(expected) and check[1].startswith("baseA") and check[-1].startswith("AnB+, n=3")
    again = lt.run_layer_transfer(task_a, task_b, config=config, depths=[1, 3], seeds=(0, 1), cache_dir=tmp_path)
    assert again.fits["baseB"] == result.fits["baseB"]  # a cached base keeps how its run ended
    with pytest.raises(ValueError, match="The 'variant' parameter of LayerTransferResult.relative must be one of"):
        result.relative("AnA")


def test_run_layer_transfer_rejects_bad_arguments(parts):
    """Check that bad depths, seeds, tasks and configs are refused, naming what is allowed."""
    task_a = {k: lt.task_subset(v, ("red", "green")) for k, v in parts.items()}
    task_b = {k: lt.task_subset(v, ("blue", "grey")) for k, v in parts.items()}
    with pytest.raises(ValueError, match=r"The 'depths' parameter of run_layer_transfer must be a non-empty sequence "
                                         r"of ints in \[1, 3\]"):
        lt.run_layer_transfer(task_a, task_b, config=small_config(), depths=(4,))
    with pytest.raises(ValueError, match="'depths' parameter of run_layer_transfer"):
        lt.run_layer_transfer(task_a, task_b, config=small_config(), depths=(True,))
    with pytest.raises(ValueError, match="The 'seeds' parameter of run_layer_transfer must be"):
        lt.run_layer_transfer(task_a, task_b, config=small_config(), seeds=(-1,))
    with pytest.raises(TypeError, match="The 'task_a' parameter of run_layer_transfer must be a dict with 'train', "
                                        "'val' and 'test' ImageSets"):
        lt.run_layer_transfer(parts["train"], task_b, config=small_config())
    with pytest.raises(TypeError, match="The 'config' parameter of run_layer_transfer must be a LayerTransferConfig"):
        lt.run_layer_transfer(task_a, task_b, config={"num_layers": 3})


def test_paper_reference_covers_every_variant_and_the_configs_use_the_scratch_recipe():
    """Check the paper's reference set (every variant at n = 1..7 and the baseline) and the two configs."""
    assert set(lt.PAPER_REFERENCE) == {"baseB", *lt.VARIANTS}
    assert all(sorted(lt.PAPER_REFERENCE[v]) == list(range(1, 8)) for v in lt.VARIANTS)
    assert set(lt.CONFIGS) == {"cpu", "gpu"}
    assert all(config.recipe.strategy == "scratch" for config in lt.CONFIGS.values())
