"""convcli: convolution filters for images, from the shell and from Python.

The Python API mirrors ``torch.nn.functional.conv2d`` on NumPy arrays::

    >>> import numpy as np, convcli
    >>> x = np.random.rand(3, 64, 64).astype(np.float32)
    >>> w = np.ones((3, 1, 3, 3), np.float32) / 9
    >>> convcli.conv2d(x, w, padding=1, groups=3).shape
    (3, 64, 64)

Importing convcli does not import Numba; the compiled kernels load on first use.
"""

from .engine import conv2d
from .errors import ConvcliError, FileFailure, UsageError

__version__ = "0.1.0"
__all__ = ["conv2d", "ConvcliError", "UsageError", "FileFailure", "__version__"]
