"""Tests for companion.prefix: the frozen prefix computed once per image, and training on top of it."""

import numpy as np
import pytest
import torch

from companion import adapt, backbones, features, prefix, scratch, train
from companion.data import ImageSet
from companion.prefix import PrefixCache, Suffix

CLASSES = ("red", "green", "blue")


def make_set(num_per_class: int, seed: int, size: int = 32) -> ImageSet:
    """Dark noise images whose class is the one bright colour channel."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASSES)).repeat(num_per_class)  # (N,)
    images = torch.randint(0, 60, (len(labels), 3, size, size), dtype=torch.uint8, generator=generator)
    images[torch.arange(len(labels)), labels] += 150  # (N, 3, H, W): class channel bright
    return ImageSet(images, labels, CLASSES)


def tiny_cnn(seed: int = 0):
    return scratch.make_scratch_cnn(len(CLASSES), width=4, seed=seed)


class ImagesSeen:
    """Count the images that reach the first depth of a model (a forward hook)."""

    def __init__(self, model):
        self.counts = []
        self.handle = backbones.stages(model)[0][1].register_forward_hook(
            lambda module, args, output: self.counts.append(len(args[0])))

    @property
    def total(self) -> int:
        return sum(self.counts)


def test_activations_are_the_output_of_the_frozen_depths():
    """Check that the cached output equals running depths [0, num_frozen) in eval mode on the preprocessed images."""
    model, dataset = tiny_cnn(), make_set(2, seed=0)
    activations = PrefixCache().activations(model, 3, dataset, device="cpu")
    model.eval()
    with torch.no_grad():
        expected = backbones.forward_to_depth(model, backbones.preprocess(dataset.images, model), 2)
    assert activations.shape == (6, 8, 4, 4)
    torch.testing.assert_close(activations, expected, rtol=1e-5, atol=1e-6)


def test_each_image_runs_through_the_prefix_once():
    """Check that a second call on overlapping images runs the model on the new images only."""
    model, cache = tiny_cnn(), PrefixCache()
    pool = make_set(4, seed=0)  # 12 images
    seen = ImagesSeen(model)
    first = cache.activations(model, 2, pool.subset(range(8)), batch_size=3, device="cpu")
    assert seen.total == 8 and len(cache) == 8
    overlapping = pool.subset([6, 7, 8, 9, 10, 11, 0])
    second = cache.activations(model, 2, overlapping, device="cpu")
    assert seen.total == 8 + 4 and len(cache) == 12
    torch.testing.assert_close(second[:2], first[6:8], rtol=0, atol=0)
    torch.testing.assert_close(second[-1], first[0], rtol=0, atol=0)
    cache.activations(model, 2, pool, device="cpu")
    assert seen.total == 12  # every image known: the model does not run
    twice = ImageSet(torch.cat([pool.images[:1]] * 2) // 2, pool.labels[:2], CLASSES)  # one new image, twice
    cache.activations(model, 2, twice, device="cpu")
    assert seen.total == 13 and len(cache) == 13
    seen.handle.remove()


def test_another_cut_or_other_frozen_weights_get_their_own_table():
    """Check that the table is keyed by num_frozen and the frozen weights, not by the layers above."""
    model, cache, dataset = tiny_cnn(), PrefixCache(), make_set(2, seed=0)
    cache.activations(model, 2, dataset, device="cpu")
    seen = ImagesSeen(model)
    cache.activations(model, 3, dataset, device="cpu")
    assert seen.total == 6 and len(cache) == 12
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
        model.blocks[4][0].weight.add_(1.0)  # above both cuts: the cached outputs stay valid
    cache.activations(model, 3, dataset, device="cpu")
    assert seen.total == 6
    with torch.no_grad():
        model.blocks[1][1].running_mean.add_(1.0)  # a frozen depth's BatchNorm statistics changed
    cache.activations(model, 3, dataset, device="cpu")
    assert seen.total == 12 and len(cache) == 18
    seen.handle.remove()
    cache.clear()
    assert len(cache) == 0


def test_the_whole_backbone_frozen_gives_pooled_features():
    """Check that with every depth frozen the output is pooled to (C, 1, 1) and equals extract_features."""
    model = backbones.load_backbone(pretrained=False, seed=0)
    pool = make_set(3, seed=0)
    activations = PrefixCache().activations(model, 9, pool, device="cpu")
    assert activations.shape == (9, 1280, 1, 1)
    expected = features.extract_features(model, pool, cache=False, device="cpu")  # (9, 1280)
    np.testing.assert_allclose(activations.flatten(1).numpy(), expected, rtol=1e-4, atol=1e-5)
    subset = pool.subset([5, 0, 3])
    np.testing.assert_allclose(PrefixCache().activations(model, 9, subset, device="cpu").flatten(1).numpy(),
                               expected[[5, 0, 3]], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("training", [True, False])
def test_the_model_comes_back_with_its_mode_and_memory_layout(memory_format, training):
    """Check that computing the prefix leaves the caller's model in its mode and tensor layout."""
    model = tiny_cnn().to(memory_format=memory_format).train(training)
    before = {name: tensor.stride() for name, tensor in model.state_dict().items()}
    modes = [module.training for module in model.modules()]
    PrefixCache().activations(model, 3, make_set(2, seed=0), device="cpu")
    assert {name: tensor.stride() for name, tensor in model.state_dict().items()} == before
    assert [module.training for module in model.modules()] == modes


def test_training_a_suffix_on_cached_activations_equals_training_the_frozen_model():
    """Check that fit on Suffix + model_input gives the weights of fit on the whole model with its bottom frozen."""
    train_set, val_set = make_set(4, seed=0), make_set(2, seed=1)
    options = dict(num_epochs=3, lr=1e-2, batch_size=4, seed=0, device="cpu", progress=False)
    full = tiny_cnn(seed=0)
    adapt.freeze(full, 3)
    full_history = train.fit(full, train_set, val_set, **options)
    model, cache = tiny_cnn(seed=0), PrefixCache()
    adapt.freeze(model, 3)
    seen = ImagesSeen(model)
    model_input = cache.model_input(model, 3, [train_set, val_set], device="cpu")
    suffix_history = train.fit(Suffix(model, 3), train_set, val_set, model_input=model_input, **options)
    seen.handle.remove()
    assert seen.total == len(train_set) + len(val_set)  # once per image, not once per epoch
    np.testing.assert_allclose(suffix_history.train_loss, full_history.train_loss, rtol=1e-5)
    assert suffix_history.val_accuracy == full_history.val_accuracy
    reference = full.state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-4, atol=1e-5)


def test_suffix_runs_the_depths_above_the_cut_and_the_head():
    """Check that Suffix(model, k) on the output of depth k - 1 equals the whole model."""
    model = tiny_cnn().eval()
    x = backbones.preprocess(make_set(1, seed=0).images, model)
    with torch.no_grad():
        below = backbones.forward_to_depth(model, x, 1)
        torch.testing.assert_close(Suffix(model, 2)(below), model(x), rtol=1e-5, atol=1e-6)
    assert {id(p) for p in Suffix(model, 2).parameters()} == {id(p) for p in model.parameters()}


def test_model_input_refuses_a_dataset_it_was_not_built_for():
    """Check that model_input serves the datasets it was built for, by identity, and names the fix otherwise."""
    model, cache = tiny_cnn(), PrefixCache()
    train_set, other = make_set(2, seed=0), make_set(2, seed=1)
    model_input = cache.model_input(model, 2, [train_set, None], device="cpu")
    assert model_input(train_set, torch.tensor([1, 0])).shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="was not among the datasets the input was built for; pass it in 'datasets'"):
        model_input(other, torch.tensor([0]))


def test_image_digests_and_weights_fingerprint():
    """Check that digests follow the bytes and shape of each image and the fingerprint every number."""
    dataset = make_set(2, seed=0)
    digests = prefix.image_digests(dataset)
    assert len(digests) == 6 and len(set(digests)) == 6 and all(len(d) == 16 for d in digests)
    assert prefix.image_digests(dataset.subset([3])) == [digests[3]]
    reshaped = ImageSet(dataset.images.reshape(6, 3, 16, 64), dataset.labels, CLASSES)  # same bytes, other shape
    assert prefix.image_digests(reshaped)[0] != digests[0]
    model = tiny_cnn()
    fingerprint = prefix.weights_fingerprint([model.blocks[0]])
    assert fingerprint == prefix.weights_fingerprint([tiny_cnn().blocks[0]])
    with torch.no_grad():
        model.blocks[0][1].running_var.mul_(2.0)
    assert prefix.weights_fingerprint([model.blocks[0]]) != fingerprint


@pytest.mark.parametrize("call, error, match", [
    (lambda m, d: PrefixCache().activations(m, 0, d), ValueError,
     r"The 'num_frozen' parameter of PrefixCache.activations must be an int in \[1, 5\]. Got 0"),
    (lambda m, d: PrefixCache().activations(m, 6, d), ValueError, r"must be an int in \[1, 5\]. Got 6"),
    (lambda m, d: PrefixCache().activations(m, 2, d.images), TypeError,
     "The 'dataset' parameter of PrefixCache.activations must be a companion.data.ImageSet"),
    (lambda m, d: PrefixCache().activations(m, 2, d, batch_size=0), ValueError, "'batch_size'"),
    (lambda m, d: PrefixCache().activations(torch.nn.Linear(2, 2), 1, d), ValueError,
     "must be a backbone that carries its BackboneSpec"),
    (lambda m, d: PrefixCache().activations("model", 1, d), TypeError,
     "The 'model' parameter of PrefixCache.activations must be a backbone"),
])
def test_activations_reject_bad_arguments(call, error, match):
    """Check that bad cut points, datasets, batch sizes and models are refused with what is allowed."""
    with pytest.raises(error, match=match):
        call(tiny_cnn(), make_set(1, seed=0))
