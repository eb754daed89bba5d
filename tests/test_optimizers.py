import numpy as np
import pytest

from training import SGD, Network, fit

P0 = np.array([1.0, 2.0])
G1 = np.array([0.5, -1.0])
G2 = np.array([0.25, 0.5])


def two_steps(opt: SGD) -> list[np.ndarray]:
    p = P0.copy()
    state = opt.init_state(p)
    out = []
    for g in (G1, G2):
        opt.step(p, g.copy(), state)
        out.append(p.copy())
    assert int(state["step"]) == 2
    return out


def test_classical_momentum_by_hand():
    # v1 = -0.1 g1 = (-0.05, 0.1); p1 = (0.95, 2.1)
    # v2 = 0.9 v1 - 0.1 g2 = (-0.07, 0.04); p2 = (0.88, 2.14)
    p1, p2 = two_steps(SGD(learning_rate=0.1, momentum=0.9))
    assert np.allclose(p1, [0.95, 2.1], atol=1e-12)
    assert np.allclose(p2, [0.88, 2.14], atol=1e-12)


def test_nesterov_momentum_by_hand():
    # p1 = p0 + 0.9 v1 - 0.1 g1 = (0.905, 2.19)
    # p2 = p1 + 0.9 v2 - 0.1 g2 = (0.905 - 0.063 - 0.025, 2.19 + 0.036 - 0.05)
    # (PyTorch's buf = mu buf + g; p -= lr (g + mu buf) gives the same numbers.)
    p1, p2 = two_steps(SGD(learning_rate=0.1, momentum=0.9, nesterov=True))
    assert np.allclose(p1, [0.905, 2.19], atol=1e-12)
    assert np.allclose(p2, [0.817, 2.176], atol=1e-12)


def test_weight_decay_spares_masked_parameters_and_clipping_bounds_the_step():
    opt = SGD(learning_rate=1.0, momentum=0.0, weight_decay=0.5)
    p = np.array([2.0, 2.0])
    opt.step(p, np.zeros(2), opt.init_state(p), decay_mask=np.array([1.0, 0.0]))
    assert np.allclose(p, [1.0, 2.0])
    clip = SGD(learning_rate=1.0, momentum=0.0, clip_norm=1.0)
    p = np.zeros(2)
    clip.step(p, np.array([30.0, 40.0]), clip.init_state(p))
    assert np.allclose(p, [-0.6, -0.8])


@pytest.mark.parametrize("use_blas", [True, False], ids=["blas", "numpy"])
def test_large_parameter_vectors_update_like_small_ones(use_blas, monkeypatch):
    # Both paths of the step (BLAS over the whole vector; numpy block by block) must
    # give the formula applied at once on a vector spanning several numpy blocks.
    from training.engine import blas

    monkeypatch.setattr(blas, "enabled", use_blas)
    rng = np.random.default_rng(0)
    p, g = rng.normal(size=200_003), rng.normal(size=200_003)
    for nesterov in (False, True):
        opt = SGD(learning_rate=0.05, momentum=0.8, nesterov=nesterov)
        q, state = p.copy(), opt.init_state(p)
        state["velocity"][:] = g[::-1]
        v = 0.8 * g[::-1] - 0.05 * g
        expect = p + (0.8 * v - 0.05 * g if nesterov else v)
        opt.step(q, g.copy(), state)
        assert np.allclose(q, expect, rtol=0, atol=1e-12)
        assert np.allclose(state["velocity"], v, rtol=0, atol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_saved_state_continues_bit_identically(nesterov):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(64, 5)), np.eye(3)[rng.integers(0, 3, 64)]
    opt = SGD(learning_rate=0.1, momentum=0.9, nesterov=nesterov)

    straight = Network([5, 8, 3], "tanh", loss="cross_entropy", seed=2)
    _, state = fit(straight, opt, x, y, epochs=2, batch_size=8, seed=5)
    fit(straight, opt, x, y, epochs=2, batch_size=8, seed=6, state=state)

    first = Network([5, 8, 3], "tanh", loss="cross_entropy", seed=2)
    _, state = fit(first, opt, x, y, epochs=2, batch_size=8, seed=5)
    saved = {k: v.copy() for k, v in state.items()}  # what the store writes
    resumed = first.copy()
    fit(resumed, opt, x, y, epochs=2, batch_size=8, seed=6, state=saved)
    assert np.array_equal(resumed.params, straight.params)


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="momentum"):
        SGD(momentum=1.5)
    with pytest.raises(ValueError, match="learning_rate"):
        SGD(learning_rate=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nesterov", [False, True])
def test_blas_step_matches_the_numpy_step(dtype, nesterov, monkeypatch):
    # The step runs on numpy's OpenBLAS (axpby, axpy) where it can; the numpy path it
    # replaces stays as the fallback.  Both must compute the same update.
    from threadpoolctl import threadpool_info

    from training.engine import blas

    rng = np.random.default_rng(3)
    p, g, v = (rng.normal(size=300_001).astype(dtype) for _ in range(3))
    if any(i["internal_api"] == "openblas" for i in threadpool_info()):
        assert blas.routines(p, g, v) is not None, "numpy's OpenBLAS offers no axpby"
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(blas, "enabled", enabled)
        opt = SGD(learning_rate=0.05, momentum=0.8, nesterov=nesterov)
        q, state = p.copy(), {"velocity": v.copy(), "step": np.zeros((), np.int64)}
        opt.step(q, g.copy(), state)
        results.append((q, state["velocity"]))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for fast, slow in zip(*results):
        assert np.allclose(fast, slow, rtol=tol, atol=tol)
    assert not np.array_equal(results[0][0], p)  # the step did move the parameters


def test_blas_is_not_used_for_arrays_it_cannot_take():
    from training.engine import blas

    a = np.zeros(10, np.float32)
    assert blas.routines(a, np.zeros(10, np.float64), a) is None  # mixed dtypes
    assert blas.routines(a, np.zeros(20, np.float32)[::2], a) is None  # strided
    assert blas.routines(np.zeros(10, np.int64)) is None
    frozen = np.zeros(10, np.float32)
    frozen.flags.writeable = False
    assert blas.routines(a, a, frozen) is None
    # ... so a read-only parameter array gets numpy's error, not a crash in C
    with pytest.raises(ValueError, match="read-only"):
        SGD().step(frozen, np.ones(10, np.float32), SGD().init_state(a))
