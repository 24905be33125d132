"""The convolution engine: NumPy in, NumPy out, Numba loops inside.

Importing this package does not import Numba; the compiled loops (``_loops``,
``_pool_loops``) and the FFT and NumPy paths load on the first call that takes them.
The layer operations beside ``conv2d`` (``layers``, ``pooling``, ``activations``) take
PyTorch's names, arguments and results.
"""

from ._compile_log import compile_seconds, on_first_compile
from ._runtime import compile_in_background, set_threads, settings_restored
from .activations import channel_shuffle, leaky_relu, relu, sigmoid, tanh
from .api import (ENGINE_PATHS, PADDING_MODES, all_finite, border_map, choose_path, conv2d,
                  convolve, fft_only_if_finite, rank_one_factors)
from .layers import (conv1d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d,
                     convolve_nd)
from .pooling import (avg_pool1d, avg_pool2d, avg_pool3d, max_pool1d, max_pool2d, max_pool3d,
                      pool_rows)

from .. import ENGINE_FUNCTIONS

__all__ = [*ENGINE_FUNCTIONS, "convolve", "convolve_nd", "compile_seconds", "on_first_compile",
           "border_map", "rank_one_factors", "choose_path", "fft_only_if_finite", "all_finite",
           "pool_rows",
           "set_threads", "compile_in_background", "settings_restored",
           "ENGINE_PATHS", "PADDING_MODES"]

