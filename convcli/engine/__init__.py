"""The convolution engine: NumPy in, NumPy out, Numba loops inside.

Importing this package does not import Numba; the compiled loops (``_loops``) and the
FFT and NumPy paths load on the first convolution that takes them.
"""

from .api import ENGINE_PATHS, PADDING_MODES, conv2d, convolve, border_map, rank_one_factors

__all__ = ["conv2d", "convolve", "border_map", "rank_one_factors", "set_threads", "ENGINE_PATHS",
           "PADDING_MODES"]


def set_threads(count: int) -> None:
    """Run the compiled loops on ``count`` threads (imports Numba)."""
    from ._numba_config import set_threads as set_numba_threads

    set_numba_threads(count)
