"""tm.Generator (torch.Generator's methods) and ``generator=`` on everything that draws: each
draw comes from the generator given, leaves the global one alone, and repeats from the seed."""

import numpy as np
import pytest

import tinymed as tm

DRAWS = {
    "randn": lambda g: tm.randn(2, 3, generator=g),
    "rand": lambda g: tm.rand(4, generator=g),
    "randint": lambda g: tm.randint(0, 10, (5,), generator=g),
    "randperm": lambda g: tm.randperm(6, generator=g),
    "normal_": lambda g: tm.zeros(3).normal_(2.0, 0.5, generator=g),
    "uniform_": lambda g: tm.zeros(3).uniform_(-1.0, 1.0, generator=g),
    "nn.init.normal_": lambda g: tm.nn.init.normal_(tm.zeros(3), generator=g),
    "random_split": lambda g: tm.tensor([s.indices for s in tm.utils.data.random_split(range(6), [3, 3], g)]),
}


@pytest.mark.parametrize("name", DRAWS)
def test_a_draw_repeats_from_its_generator_and_leaves_the_global_one_alone(name):
    draw = DRAWS[name]
    tm.manual_seed(0)
    untouched = tm.rand(3).numpy()
    tm.manual_seed(0)
    first = draw(tm.Generator().manual_seed(11)).numpy()
    np.testing.assert_array_equal(tm.rand(3).numpy(), untouched)
    np.testing.assert_array_equal(draw(tm.Generator().manual_seed(11)).numpy(), first)
    assert not np.array_equal(draw(tm.Generator().manual_seed(12)).numpy(), first)


@pytest.mark.parametrize("name", DRAWS)
def test_a_draw_refuses_a_generator_that_is_not_tinymeds(name):
    with pytest.raises(TypeError, match="generator must be a tinymed.Generator or None, got Generator"):
        DRAWS[name](np.random.default_rng(0))


def test_generator_methods_as_pytorchs():
    g = tm.Generator()
    assert g.manual_seed(5) is g and g.initial_seed() == 5
    state = g.get_state()
    a = tm.rand(4, generator=g).numpy()
    assert g.set_state(state) is g
    np.testing.assert_array_equal(tm.rand(4, generator=g).numpy(), a)
    seed = g.seed()
    assert isinstance(seed, int) and 0 <= seed < 2**63 and g.initial_seed() == seed
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        g.manual_seed(-1)


def test_the_global_generator_is_tm_default_generator():
    assert tm.manual_seed(3) is tm.default_generator and tm.initial_seed() == 3
    a = tm.randn(2).numpy()
    np.testing.assert_array_equal(tm.randn(2, generator=tm.Generator().manual_seed(3)).numpy(), a)
    state = tm.get_rng_state()
    b = tm.rand(2).numpy()
    tm.set_rng_state(state)
    np.testing.assert_array_equal(tm.rand(2).numpy(), b)
    assert tm.seed() == tm.initial_seed()
