"""Element-wise activations and ``channel_shuffle``: NumPy in, float32 NumPy out.

These are one or two passes over memory, which NumPy's ufuncs already run at memory speed;
a compiled loop would add a specialisation to compile and nothing to measure.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from .api import _as_float32, check_groups

__all__ = ["relu", "leaky_relu", "sigmoid", "tanh", "channel_shuffle"]


def relu(x) -> np.ndarray:
    """``max(x, 0)`` element-wise, any shape (NaN stays NaN, as in PyTorch).

    Examples
    --------
    >>> relu([5.1, -3.0])
    array([5.1, 0. ], dtype=float32)
    """
    return np.maximum(_as_float32(x, "x"), np.float32(0.0))


def leaky_relu(x, negative_slope=0.01) -> np.ndarray:
    """``x`` where positive, ``negative_slope * x`` elsewhere, any shape."""
    x = _as_float32(x, "x")
    return np.where(x > 0, x, x * np.float32(negative_slope))


def sigmoid(x) -> np.ndarray:
    """``1 / (1 + exp(-x))`` element-wise, any shape, without overflow for large ``|x|``:
    ``exp`` only ever sees ``-|x|``, and ``exp(x) / (1 + exp(x))`` is used below zero."""
    x = _as_float32(x, "x")
    decay = np.exp(-np.abs(x))                  # in (0, 1]: never overflows
    out = 1.0 / (1.0 + decay)
    return np.where(x >= 0, out, decay * out).astype(np.float32, copy=False)


def tanh(x) -> np.ndarray:
    """``tanh(x)`` element-wise, any shape."""
    return np.tanh(_as_float32(x, "x"))


def channel_shuffle(x, groups, *, spatial_dims=2) -> np.ndarray:
    """``torch.nn.functional.channel_shuffle``: split the C channels into ``groups`` groups
    and interleave them (channel ``g*(C/groups) + i`` moves to ``i*groups + g``).

    ``x`` is (C, *spatial) or (N, C, *spatial) with ``spatial_dims`` trailing axes (2 for
    images; torch always reads axis 1 as the channels). Returns float32.

    Examples
    --------
    >>> channel_shuffle(np.arange(6.0).reshape(6, 1, 1), 2).ravel()
    array([0., 3., 1., 4., 2., 5.], dtype=float32)
    """
    x = _as_float32(x, "x")
    if x.ndim not in (spatial_dims + 1, spatial_dims + 2):
        raise UsageError(f"x must have {spatial_dims + 1} axes (C, ...) or {spatial_dims + 2} "
                         f"(N, C, ...) with spatial_dims={spatial_dims}; got shape {x.shape}")
    check_groups(groups)
    batched = x if x.ndim == spatial_dims + 2 else x[np.newaxis]
    batch, channels = batched.shape[:2]
    if channels % groups:
        raise UsageError(f"groups={groups} must divide the channels ({channels})")
    rest = batched.shape[2:]
    shuffled = batched.reshape(batch, groups, channels // groups, *rest).swapaxes(1, 2)
    return np.ascontiguousarray(shuffled).reshape(x.shape)
