"""convcli: convolution filters for images, from the shell and from Python.

The Python API mirrors ``torch.nn.functional.conv2d`` on NumPy arrays::

    >>> import numpy as np, convcli
    >>> x = np.random.rand(3, 64, 64).astype(np.float32)
    >>> w = np.ones((3, 1, 3, 3), np.float32) / 9
    >>> convcli.conv2d(x, w, padding=1, groups=3).shape
    (3, 64, 64)

Beside it, with PyTorch's names and arguments: ``conv1d``, ``conv3d``,
``conv_transpose1d/2d/3d``, ``max_pool1d/2d/3d``, ``avg_pool1d/2d/3d``, ``channel_shuffle``,
``relu``, ``leaky_relu``, ``sigmoid`` and ``tanh``.

Importing convcli imports neither NumPy nor Numba (so ``convcli --help`` starts fast):
these functions load the engine on first access, and the compiled kernels load on first use.
"""

from .errors import ConvcliError, FileFailure, UsageError

__version__ = "0.1.0"
# The engine's public functions (``convcli.engine.__all__`` starts with them), listed here
# so that naming them imports nothing; each loads the engine on first access.
ENGINE_FUNCTIONS = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                    "conv_transpose3d", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d",
                    "avg_pool2d", "avg_pool3d", "channel_shuffle", "relu", "leaky_relu",
                    "sigmoid", "tanh")
__all__ = [*ENGINE_FUNCTIONS, "ConvcliError", "UsageError", "FileFailure", "__version__"]


def __getattr__(name: str):
    """Load the engine on first access to ``convcli.conv2d`` and its siblings (PEP 562)."""
    if name in ENGINE_FUNCTIONS:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'convcli' has no attribute {name!r}")
