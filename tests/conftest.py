"""Shared fixtures: the registry as test parameters, and a call helper with default params."""

from __future__ import annotations

import numpy as np
import pytest

import fastact as fa
from fastact import reference
from fastact.activations import ACTIVATIONS

PUBLIC = [name for name, spec in ACTIVATIONS.items() if spec.public]
#: (public function name, extra keyword arguments) for every kernel, variants included
VARIANTS = [(name, {}) for name in PUBLIC] + [("gelu", {"approximate": "tanh"})]


def variant_id(item):
    name, kwargs = item
    return name + "".join(f"-{v}" for v in kwargs.values())


@pytest.fixture(params=VARIANTS, ids=variant_id)
def variant(request):
    return request.param


def backward_arg(name, x, kwargs):
    """What the backward takes besides grad_output: the output for sigmoid/tanh, else x."""
    if ACTIVATIONS[name].grad_from == "output":
        return getattr(reference, name)(x, **kwargs)
    return x


def call_forward(name, x, kwargs, module=fa, **extra):
    return getattr(module, name)(x, **kwargs, **extra)


def call_backward(name, g, x, kwargs, module=fa, **extra):
    return getattr(module, f"{name}_backward")(g, backward_arg(name, x, kwargs), **kwargs, **extra)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
