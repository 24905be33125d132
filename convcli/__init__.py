"""convcli: convolution filters for images, from the shell and from Python.

The Python API mirrors ``torch.nn.functional.conv2d`` on NumPy arrays::

    >>> import numpy as np, convcli
    >>> x = np.random.rand(3, 64, 64).astype(np.float32)
    >>> w = np.ones((3, 1, 3, 3), np.float32) / 9
    >>> convcli.conv2d(x, w, padding=1, groups=3).shape
    (3, 64, 64)

Importing convcli imports neither NumPy nor Numba (so ``convcli --help`` starts fast):
``conv2d`` loads the engine on first access, and the compiled kernels load on first use.
"""

from .errors import ConvcliError, FileFailure, UsageError

__version__ = "0.1.0"
__all__ = ["conv2d", "ConvcliError", "UsageError", "FileFailure", "__version__"]


def __getattr__(name: str):
    """Load the engine on first access to ``convcli.conv2d`` (PEP 562)."""
    if name == "conv2d":
        from .engine import conv2d

        return conv2d
    raise AttributeError(f"module 'convcli' has no attribute {name!r}")
