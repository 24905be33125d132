"""The words an option accepts, kept where importing them costs nothing.

``convcli --help`` shows these lists (``--pad-mode zeros|reflect|...``) and must not import
NumPy, so they live here rather than in the modules that use them (the engine, ``images``,
``pipeline``, ``layers``, ``bench``), which import them from here under their old names.
"""

from __future__ import annotations

__all__ = ["PADDING_WORDS", "PADDING_MODES", "ENGINE_PATHS", "ENGINE_CHOICES", "OUTPUT_FORMATS",
           "NORMALIZE_MODES", "NORMALIZE_CHOICES", "REPORT_CHOICES", "POOL_MODES", "BIT_DEPTHS",
           "BENCH_CASES"]

PADDING_WORDS = ("same", "valid", "full")      # --padding also takes N or H,W
# convcli's border names -> numpy.pad modes (PyTorch's names, plus 'symmetric').
PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                 "circular": "wrap", "symmetric": "symmetric"}
ENGINE_PATHS = ("direct", "separable", "fft", "gemm", "numpy")
ENGINE_CHOICES = ("auto",) + ENGINE_PATHS
OUTPUT_FORMATS = ("png", "tiff", "npy", "jpeg", "webp", "bmp", "gif")
NORMALIZE_MODES = ("clip", "abs", "robust", "minmax", "offset")
NORMALIZE_CHOICES = ("auto",) + NORMALIZE_MODES
REPORT_CHOICES = ("table", "json", "none")
POOL_MODES = ("max", "avg")
BIT_DEPTHS = (8, 16)              # PNG's; the other picture formats are 8-bit
# The names of ``bench.CASES``, in its order (a test keeps the two equal): bench.py imports
# the batch driver and with it NumPy.
BENCH_CASES = ("dense3", "dense5", "dense7", "dense15", "dense31", "dense63", "separable",
               "dilated", "depthwise", "channels", "channels16", "stride", "tconv", "pool",
               "conv3d", "end-to-end", "batch", "cold-start", "scale-png", "scale-tiff",
               "scale-sobel")
