"""fastact.fused: every op against a plain NumPy float64 reference, finite-difference checks
of the backward passes, special logits, argument errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastact import fused, reference
from fastact.activations import ACTIVATIONS
from tests.conftest import VARIANTS, variant_id

# float32 is checked on a representative subset (each activation and dtype compiles two
# kernels); float64 on every activation
FLOAT32_VARIANTS = [v for v in VARIANTS if v[0] in ("relu", "sigmoid", "tanh", "gelu", "silu")]
CASES = [pytest.param(v, np.float64, id=variant_id(v) + "-float64") for v in VARIANTS] + [
    pytest.param(v, np.float32, id=variant_id(v) + "-float32") for v in FLOAT32_VARIANTS
]
RTOL = {np.float32: 3e-6, np.float64: 1e-13}


def _registry_name(name, kw):
    return "gelu_tanh" if kw.get("approximate") == "tanh" else name


def _ref_forward(name, z, kw):
    return np.asarray(getattr(reference, name)(z, **kw), np.float64)


def _ref_backward(name, g, z, kw):
    """The reference's grad_pre, from the output (sigmoid, tanh) or the pre-activation."""
    v = _ref_forward(name, z, kw) if ACTIVATIONS[name].grad_from == "output" else z
    return np.asarray(getattr(reference, f"{name}_backward")(g, v, **kw), np.float64)


# --------------------------------------------------------------------------- bias_act
@pytest.mark.parametrize(("variant", "dtype"), CASES)
def test_bias_act_matches_reference(variant, dtype, rng):
    name, kw = variant
    x = (rng.standard_normal((9, 13)) * 3).astype(dtype)
    b = rng.standard_normal(13).astype(dtype)
    g = rng.standard_normal((9, 13)).astype(dtype)
    z = (x + b).astype(np.float64)  # the pre-activation, rounded as the kernel rounds it

    out, saved = fused.bias_act(x, b, name, **kw)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_allclose(
        out,
        _ref_forward(name, z, kw).astype(dtype),
        rtol=RTOL[dtype],
        atol=np.finfo(dtype).tiny * 16,
    )
    if ACTIVATIONS[_registry_name(name, kw)].fused_saves_output:
        assert saved is out
    else:
        np.testing.assert_array_equal(saved, z.astype(dtype))

    grad_pre, grad_bias = fused.bias_act_backward(g, saved, name, **kw)
    want = _ref_backward(name, g.astype(np.float64), z, kw)
    floor = 8 * np.finfo(dtype).eps * np.abs(g).max()
    assert grad_pre.dtype == dtype and grad_bias.dtype == dtype
    np.testing.assert_allclose(grad_pre, want.astype(dtype), rtol=RTOL[dtype], atol=floor)
    np.testing.assert_allclose(grad_bias, want.sum(axis=0), rtol=10 * RTOL[dtype], atol=13 * floor)


@pytest.mark.parametrize("name", ["relu", "sigmoid"])
def test_bias_act_parallel_kernels_match_serial(name, rng, monkeypatch):
    x = rng.standard_normal((37, 11)).astype(np.float32)
    b = rng.standard_normal(11).astype(np.float32)
    g = rng.standard_normal((37, 11)).astype(np.float32)
    out, saved = fused.bias_act(x, b, name)
    grads = fused.bias_act_backward(g, saved, name)
    monkeypatch.setattr(fused, "PARALLEL_THRESHOLD", 0)
    out_p, saved_p = fused.bias_act(x, b, name)
    grads_p = fused.bias_act_backward(g, saved_p, name)
    np.testing.assert_array_equal(out_p, out)
    np.testing.assert_array_equal(grads_p[0], grads[0])
    np.testing.assert_allclose(grads_p[1], grads[1], rtol=1e-6)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("relu", {}),
        ("sigmoid", {}),
        ("tanh", {}),
        ("gelu", {}),
        ("softplus", {"beta": 2.0}),
        ("hard_tanh", {"min_val": -2.0}),
        ("gelu", {"approximate": "tanh"}),
        ("mish", {}),
    ],
)
def test_bias_act_backward_finite_differences(name, kw, rng):
    """d/dx and d/dbias of sum(G * act(x + bias)) by central differences (float64)."""
    x = rng.standard_normal((5, 4)) * 2
    b = rng.standard_normal(4)
    G = rng.standard_normal((5, 4))
    loss = lambda x, b: float(np.sum(G * fused.bias_act(x, b, name, **kw)[0]))  # noqa: E731
    _, saved = fused.bias_act(x, b, name, **kw)
    grad_pre, grad_bias = fused.bias_act_backward(G, saved, name, **kw)
    np.testing.assert_allclose(
        grad_pre, numeric_grad(lambda x: loss(x, b), x), rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        grad_bias, numeric_grad(lambda b: loss(x, b), b), rtol=1e-6, atol=1e-8
    )


def test_bias_act_out_and_dtypes(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    b = np.zeros(3, np.float32)
    out = np.empty_like(x)
    y, saved = fused.bias_act(x, b, "relu", out=out)
    assert y is out
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    y, saved = fused.bias_act(x, b, "sigmoid", out=x)  # in place
    assert y is x and saved is x
    y, _ = fused.bias_act(x.astype(np.float16), b.astype(np.float16), "relu")
    assert y.dtype == np.float16
    y, _ = fused.bias_act(np.ones((2, 3), np.int64), [1, 2, 3], "relu")
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [[2, 3, 4], [2, 3, 4]])
    y, _ = fused.bias_act(np.asfortranarray(rng.standard_normal((4, 3))), np.zeros(3), "relu")
    assert y.flags.c_contiguous


def test_bias_act_docstring_names_every_output_activation():
    from_output = [n for n, spec in ACTIVATIONS.items() if spec.fused_saves_output]
    assert from_output and all(n in fused.bias_act.__doc__ for n in from_output)


def test_bias_act_errors():
    x, b = np.zeros((2, 3)), np.zeros(3)
    with pytest.raises(ValueError, match="unknown activation 'relu7'.*valid names: sigmoid"):
        fused.bias_act(x, b, "relu7")
    with pytest.raises(ValueError, match="use fastact.prelu"):
        fused.bias_act(x, b, "prelu")
    with pytest.raises(TypeError, match="activation must be a name"):
        fused.bias_act(x, b, None)
    with pytest.raises(ValueError, match="bias has length 2, x has 3 features"):
        fused.bias_act(x, np.zeros(2), "relu")
    with pytest.raises(ValueError, match="bias must be 1-D"):
        fused.bias_act(x, np.zeros((1, 3)), "relu")
    with pytest.raises(ValueError, match="x must be 2-D"):
        fused.bias_act(np.zeros(3), b, "relu")
    with pytest.raises(TypeError, match="unexpected parameter.*alpha.*takes no parameters"):
        fused.bias_act(x, b, "relu", alpha=1.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        fused.bias_act(x, b, "celu", alpha=0.0)
    with pytest.raises(ValueError, match="min_val .* must be <= max_val"):
        fused.bias_act(x, b, "hard_tanh", min_val=2.0)
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        fused.bias_act(x, b, "gelu", approximate="erf")
    with pytest.raises(TypeError, match="complex"):
        fused.bias_act(x.astype(complex), b, "relu")
    with pytest.raises(ValueError, match="out has shape"):
        fused.bias_act(x, b, "relu", out=np.empty((3, 2)))
    with pytest.raises(ValueError, match="saved has shape"):
        fused.bias_act_backward(x, np.zeros((3, 3)), "relu")


# --------------------------------------------------------------------------- losses
def ref_softmax_xent(logits, labels):
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(s[:, 0])
    loss = np.mean(lse - x[np.arange(len(x)), labels])
    grad = e / s
    grad[np.arange(len(x)), labels] -= 1
    return loss, grad / len(x)


def ref_bce(logits, targets):
    x, t = logits.astype(np.float64), targets.astype(np.float64)
    loss = np.mean(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))
    return loss, (reference.sigmoid(x) - t) / x.size


def special_logits(dtype):
    """Ordinary rows and rows with huge logits (+-1e4): exp(1e4) overflows any float."""
    return np.array(
        [
            [0.5, -1.0, 2.0, 0.0],
            [1e4, -1e4, 0.0, 1.0],
            [-1e4, -1e4, -1e4, -1e4],
            [1e4, 1e4, -3.0, 1e4],
            [-1e4, 3.0, 2.0, -1e4],
        ],
        dtype,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_matches_reference(dtype, rng):
    logits = (rng.standard_normal((31, 7)) * 4).astype(dtype)
    labels = rng.integers(0, 7, 31)
    loss, grad = fused.softmax_cross_entropy(logits, labels)
    want_loss, want_grad = ref_softmax_xent(logits, labels)
    assert isinstance(loss, float) and grad.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14
    assert loss == pytest.approx(want_loss, rel=tol)
    np.testing.assert_allclose(grad, want_grad, rtol=10 * tol, atol=tol / 31)
    np.testing.assert_allclose(
        fused.softmax(logits), want_grad * 31 + np.eye(7)[labels], rtol=10 * tol, atol=tol
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_with_special_logits_are_finite_without_warnings(dtype):
    logits = special_logits(dtype)
    labels = np.array([2, 1, 0, 3, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = fused.softmax_cross_entropy(logits, labels)
        want_loss, want_grad = ref_softmax_xent(logits, labels)
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        assert loss == pytest.approx(want_loss, rel=1e-12)  # the terms are exact multiples of 1e4
        np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-7)
        p = fused.softmax(logits)
        np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)

        targets = np.array(
            [[0, 1, 1, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0.5, 1, 0, 0]], dtype
        )
        loss, grad = fused.binary_cross_entropy_with_logits(logits, targets)
        want_loss, want_grad = ref_bce(logits, targets)
        assert np.isfinite(loss) and np.all(np.isfinite(grad)) and grad.dtype == dtype
        assert loss == pytest.approx(want_loss, rel=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_matches_reference(dtype, rng):
    logits = (rng.standard_normal((40, 1)) * 5).astype(dtype)
    targets = rng.random((40, 1)).astype(dtype)
    loss, grad = fused.binary_cross_entropy_with_logits(logits, targets)
    want_loss, want_grad = ref_bce(logits, targets)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    assert loss == pytest.approx(want_loss, rel=tol)
    np.testing.assert_allclose(grad, want_grad, rtol=10 * tol, atol=tol / 40)


def test_loss_gradients_by_finite_differences(rng):
    logits = rng.standard_normal((6, 5)) * 3
    labels = rng.integers(0, 5, 6)
    _, grad = fused.softmax_cross_entropy(logits, labels)
    numeric = numeric_grad(lambda z: fused.softmax_cross_entropy(z, labels)[0], logits)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    targets = rng.random((6, 5))
    _, grad = fused.binary_cross_entropy_with_logits(logits, targets)
    numeric = numeric_grad(lambda z: fused.binary_cross_entropy_with_logits(z, targets)[0], logits)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_loss_errors():
    logits = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        fused.softmax_cross_entropy(logits, [0, 1, 4])
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        fused.softmax_cross_entropy(logits, [0, 1])
    with pytest.raises(TypeError, match="labels must be integer"):
        fused.softmax_cross_entropy(logits, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="logits must be 2-D"):
        fused.softmax_cross_entropy(np.zeros(3), [0, 1, 2])
    with pytest.raises(ValueError, match="targets has shape"):
        fused.binary_cross_entropy_with_logits(logits, np.zeros(3))
    with pytest.raises(ValueError, match=r"targets must be probabilities in \[0, 1\]"):
        fused.binary_cross_entropy_with_logits(logits, np.full((3, 4), 2.0))


# --------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout(dtype, rng):
    x = rng.standard_normal((200, 50)).astype(dtype)
    y, mask = fused.dropout(x, 0.3, np.random.default_rng(5))
    assert y.dtype == dtype and mask.dtype == np.bool_ and mask.shape == x.shape
    assert abs(mask.mean() - 0.7) < 0.02
    # the same mask as a NumPy reference drawing the same uniforms
    u = np.random.default_rng(5).random(x.shape, dtype=dtype)
    np.testing.assert_array_equal(mask, u >= dtype(0.3))
    np.testing.assert_allclose(y, np.where(mask, x.astype(np.float64) / 0.7, 0), rtol=2e-7)
    y2, mask2 = fused.dropout(x, 0.3, 5)  # an int seed is the same as default_rng(seed)
    np.testing.assert_array_equal(y2, y)
    g = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_allclose(
        fused.dropout_backward(g, mask, 0.3),
        np.where(mask, g.astype(np.float64) / 0.7, 0),
        rtol=2e-7,
    )


def test_dropout_edges():
    x = np.arange(6.0).reshape(2, 3)
    y, mask = fused.dropout(x, 0.0, 0)
    np.testing.assert_array_equal(y, x)
    assert mask.all()
    y, mask = fused.dropout(x, 1.0, 0)
    np.testing.assert_array_equal(y, 0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        fused.dropout(x, 1.5, 0)
    with pytest.raises(ValueError, match="p must be >= 0"):
        fused.dropout(x, -0.1, 0)
    with pytest.raises(ValueError, match="boolean mask"):
        fused.dropout_backward(x, np.ones((2, 3)), 0.5)


# --------------------------------------------------------------------------- batch norm
def ref_batch_norm(x, gamma, beta, eps):
    x = x.astype(np.float64)
    mean, var = x.mean(axis=0), x.var(axis=0)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta, mean, var


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_matches_reference(dtype, rng):
    x = (rng.standard_normal((64, 5)) * 3 + 2).astype(dtype)
    gamma, beta = rng.standard_normal(5).astype(dtype), rng.standard_normal(5).astype(dtype)
    rm, rv = np.zeros(5, dtype), np.ones(5, dtype)
    y, cache = fused.batch_norm(x, gamma, beta, rm, rv, training=True, momentum=0.2)
    want, mean, var = ref_batch_norm(x, gamma, beta, 1e-5)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(rm, 0.2 * mean, rtol=tol)
    np.testing.assert_allclose(rv, 0.8 + 0.2 * var * 64 / 63, rtol=tol)  # unbiased, as torch
    # evaluation uses the running statistics and leaves them alone
    y, cache = fused.batch_norm(x, gamma, beta, rm, rv, training=False)
    want = gamma * (x.astype(np.float64) - rm) / np.sqrt(rv.astype(np.float64) + 1e-5) + beta
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(rm, 0.2 * mean, rtol=tol)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_backward_finite_differences(training, rng):
    x = rng.standard_normal((7, 3)) * 2 + 1
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    G = rng.standard_normal((7, 3))
    stats = (rng.random(3), rng.random(3) + 0.5)

    def loss(x, gamma, beta):
        rm, rv = stats[0].copy(), stats[1].copy()
        return float(np.sum(G * fused.batch_norm(x, gamma, beta, rm, rv, training)[0]))

    _, cache = fused.batch_norm(x, gamma, beta, stats[0].copy(), stats[1].copy(), training)
    dx, dgamma, dbeta = fused.batch_norm_backward(G, cache)
    np.testing.assert_allclose(
        dx, numeric_grad(lambda v: loss(v, gamma, beta), x), rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        dgamma, numeric_grad(lambda v: loss(x, v, beta), gamma), rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        dbeta, numeric_grad(lambda v: loss(x, gamma, v), beta), rtol=1e-6, atol=1e-8
    )


def test_batch_norm_errors():
    x = np.zeros((4, 3))
    rm, rv = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fused.batch_norm(x[:1], np.ones(3), np.zeros(3), rm, rv, True)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        fused.batch_norm(x, np.ones(2), np.zeros(3), rm, rv, True)
    with pytest.raises(TypeError, match="running_mean must be a float32 or float64 numpy array"):
        fused.batch_norm(x, np.ones(3), np.zeros(3), [0.0, 0.0, 0.0], rv, True)
    with pytest.raises(ValueError, match="momentum must be in"):
        fused.batch_norm(x, np.ones(3), np.zeros(3), rm, rv, True, momentum=2.0)
    with pytest.raises(TypeError, match="BatchNormCache"):
        fused.batch_norm_backward(x, None)


# --------------------------------------------------------------------------- optimizers
def ref_sgd(p, g, v, lr, momentum, wd, nesterov):
    d = g + wd * p
    if momentum:
        v[...] = momentum * v + d
        d = d + momentum * v if nesterov else v
    p -= lr * d


def ref_adam(p, g, m, v, t, lr, b1, b2, eps, wd):
    d = g + wd * p
    m[...] = b1 * m + (1 - b1) * d
    v[...] = b2 * v + (1 - b2) * d * d
    p -= lr / (1 - b1**t) * m / (np.sqrt(v / (1 - b2**t)) + eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.01), (0.9, True, 0.0)]
)
def test_sgd_update_matches_reference(dtype, momentum, nesterov, wd, rng):
    p = rng.standard_normal((6, 4)).astype(dtype)
    v = np.zeros_like(p)
    p_ref, v_ref = p.astype(np.float64), v.astype(np.float64)
    for _ in range(3):
        g = rng.standard_normal(p.shape).astype(dtype)
        fused.sgd_update(p, g, v, lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov)
        ref_sgd(p_ref, g.astype(np.float64), v_ref, 0.1, momentum, wd, nesterov)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(p, p_ref, rtol=tol, atol=tol)
    if momentum:
        np.testing.assert_allclose(v, v_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_update_matches_reference(dtype, rng):
    p = rng.standard_normal(10).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    p_ref, m_ref, v_ref = p.astype(np.float64), np.zeros(10), np.zeros(10)
    for t in range(1, 5):
        g = rng.standard_normal(10).astype(dtype)
        fused.adam_update(p, g, m, v, t, lr=0.01, weight_decay=0.1)
        ref_adam(p_ref, g.astype(np.float64), m_ref, v_ref, t, 0.01, 0.9, 0.999, 1e-8, 0.1)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(p, p_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(m, m_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(v, v_ref, rtol=tol, atol=tol)


def test_optimizer_errors():
    p = np.zeros(3)
    with pytest.raises(ValueError, match="grad has shape"):
        fused.sgd_update(p, np.zeros(4), lr=0.1)
    with pytest.raises(ValueError, match="velocity must be"):
        fused.sgd_update(p, np.zeros(3), None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        fused.sgd_update(p, np.zeros(3), lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="param must be a float32 or float64"):
        fused.sgd_update([0.0], [0.0], lr=0.1)
    with pytest.raises(ValueError, match="param must be a writeable C-contiguous"):
        fused.sgd_update(np.zeros((3, 2))[:, 0], np.zeros(3), lr=0.1)
    with pytest.raises(ValueError, match="step must be an integer >= 1"):
        fused.adam_update(p, p, np.zeros(3), np.zeros(3), 0)
    with pytest.raises(ValueError, match=r"beta1 must be in \[0, 1\)"):
        fused.adam_update(p, p, np.zeros(3), np.zeros(3), 1, beta1=1.0)
    with pytest.raises(ValueError, match="m must be"):
        fused.adam_update(p, p, np.zeros(3, np.float32), np.zeros(3), 1)


# --------------------------------------------------------------------------- helpers
def numeric_grad(f, x, h=1e-6):
    """Central differences of the scalar function f at x (float64), coordinate by coordinate."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f(x.copy())
        x[i] = old - h
        down = f(x.copy())
        x[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_in_place(dtype, rng):
    """out=logits: the loss reads each row's labelled logit before the row is overwritten."""
    logits = (rng.standard_normal((6, 4)) * 3).astype(dtype)
    labels = rng.integers(0, 4, 6)
    loss, grad = fused.softmax_cross_entropy(logits, labels)
    work = logits.copy()
    loss2, grad2 = fused.softmax_cross_entropy(work, labels, out=work)
    assert grad2 is work
    assert loss2 == loss
    np.testing.assert_array_equal(grad2, grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_overlapping_any_input_is_handled(dtype, rng):
    """out= sharing memory with a second input (targets, a mask, labels) gives the result of
    a separate out, as NumPy's ufuncs do."""
    z = rng.standard_normal(5).astype(dtype)
    buf = np.array([1, 0, 1, 1, 0, 1], dtype)
    want = fused.binary_cross_entropy_with_logits(z, buf[:5].copy())
    got = fused.binary_cross_entropy_with_logits(z, buf[:5], out=buf[1:])
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    g = rng.standard_normal(8).astype(dtype)
    out = np.zeros(8, dtype)
    mask_view = out.view(np.uint8)[:8].view(np.bool_)  # the mask lives in out's first bytes
    mask_view[:] = rng.random(8) < 0.5
    want = fused.dropout_backward(g, mask_view.copy(), 0.5)
    np.testing.assert_array_equal(fused.dropout_backward(g, mask_view, 0.5, out=out), want)
    logits = rng.standard_normal((4, 2)).astype(dtype)
    labels = np.array([1, 0, 1, 1])
    store = np.zeros(8 * labels.itemsize // np.dtype(dtype).itemsize + 8, dtype)
    label_view = store.view(labels.dtype)[: labels.size]
    label_view[:] = labels
    want = fused.softmax_cross_entropy(logits, labels)
    got = fused.softmax_cross_entropy(logits, label_view, out=store[2:10].reshape(4, 2))
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])


def test_fused_parameters_are_checked_in_the_compute_dtype():
    """As the activations' parameters (tests/test_api.py): float32 kernels get float32 values
    that still satisfy their rules, or a clear error."""
    p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="lr = 1e\\+39 overflows float32"):
        fused.sgd_update(p.copy(), g, lr=1e39)
    with pytest.raises(ValueError, match="eps = 1e-50 rounds to 0 in float32"):
        fused.adam_update(p.copy(), g, np.zeros(3, np.float32), np.zeros(3, np.float32), 1,
                          eps=1e-50)  # fmt: skip
    x, b = np.ones((2, 2), np.float32), np.ones(2, np.float32)
    with pytest.raises(ValueError, match="negative_slope = 1e\\+39 overflows float32"):
        fused.bias_act(x, b, "leaky_relu", negative_slope=1e39)
    with pytest.raises(ValueError, match="alpha = 1e-46 rounds to 0 in float32"):
        fused.bias_act_backward(x, x, "celu", alpha=1e-46)
    q = np.ones(3)
    fused.sgd_update(q, np.ones(3), lr=1e39)  # float64: representable, applied
    assert q[0] == 1 - 1e39


def test_float16_fused_results_beyond_its_range_are_inf_without_warning():
    big = np.full((4, 3), 60000, np.float16)
    grad_pre, grad_bias = fused.bias_act_backward(big, np.ones((4, 3), np.float16), "relu")
    assert np.isinf(grad_bias).all() and grad_bias.dtype == np.float16
    y, mask = fused.dropout(np.full(4, 60000, np.float16), 0.5, 0)
    assert (np.isinf(y) == mask).all()


def test_dropout_rng_must_be_a_generator_or_a_seed():
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator, a seed"):
        fused.dropout(np.ones(3), 0.5, rng="abc")
    with pytest.raises(TypeError, match="rng must be"):
        fused.dropout(np.ones(3), 0.5, rng=-1)


def test_optimizer_state_must_not_share_memory():
    """A state array that is the parameter, or m that is v, would be updated twice per
    element: refused. grad may be param itself (each element is read before it is written)."""
    p = np.ones(4)
    state = np.zeros(4)
    with pytest.raises(ValueError, match="param and velocity share memory"):
        fused.sgd_update(p, np.ones(4), p, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="grad and velocity share memory"):
        fused.sgd_update(p, state, state, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="m and v share memory"):
        fused.adam_update(p, np.ones(4), state, state, 1)
    with pytest.raises(ValueError, match="param and grad share memory"):
        buf = np.ones(5)
        fused.sgd_update(buf[:4], buf[1:], lr=0.1)
    q = np.full(4, 2.0)
    fused.sgd_update(q, q, lr=0.25)  # grad is param: q -= 0.25 q
    np.testing.assert_array_equal(q, 1.5)


def test_a_read_only_view_of_param_may_be_grad():
    p = np.full(4, 2.0, np.float32)
    g = p.view()
    g.flags.writeable = False
    fused.sgd_update(p, g, lr=0.25)
    np.testing.assert_array_equal(p, 1.5)


def test_casts_into_a_narrower_dtype_overflow_to_inf_without_a_warning():
    """A float64 gradient or statistic beyond float32's range, next to float32 arrays, is
    inf in the computation, as NumPy's casts into out= (RuntimeWarnings are errors here)."""
    p = np.ones(1, np.float32)
    fused.sgd_update(p, np.array([1e300]), lr=0.1)
    assert p[0] == -np.inf
    x = np.array([[0.5], [-1.0], [2.0], [0.0]], np.float32)
    stats = np.zeros(1, np.float32), np.ones(1, np.float32)
    y, cache = fused.batch_norm(x, np.array([1.0]), np.array([1e300]), *stats, True)
    assert y.dtype == np.float32 and (y == np.inf).all()
    grad_x, grad_gamma, grad_beta = fused.batch_norm_backward(np.full((4, 1), 1e300), cache)
    assert grad_beta[0] == np.inf
