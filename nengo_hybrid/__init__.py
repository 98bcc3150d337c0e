"""nengo-hybrid: hybrid ANN-to-SNN training in NengoDL.

Spiking neurons that spike on the forward pass and use the rate gradient on the
backward pass (`HybridSoftLIF`, `HybridSpikingRectifiedLinear`), integrate-and-fire
neurons trained through time with a surrogate gradient (`IntegrateAndFire`), input
coding over timesteps (`encoding`), per-layer threshold balancing (`balancing`), and
one call that converts a Keras model into a NengoDL network of any neuron family
(`convert`).
"""

import os
import sys

# TensorFlow's C++ logging is noise for users of this package; set the variable
# yourself (e.g. to 0) before importing to see it again.
_LOG_LEVEL = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow 2.12 turns its oneDNN kernels on by default only on CPUs with AVX-512
# (VNNI/BF16/AMX); elsewhere its own kernels run, ~3x slower for this package's
# networks (an epoch of the 8/16/32 U-Net on 2,028 slices, 2 AMD EPYC cores without
# AVX-512: 15-20 s without oneDNN, 4-6 s with it; bit-identical twice under
# `tf.config.experimental.enable_op_determinism` either way).  TensorFlow reads the
# variable once, when it is imported: import this package first, or set it yourself
# (0 turns oneDNN off).
if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import tensorflow as tf  # noqa: E402


def _import_nengo_dl_quietly():
    """nengo_dl's import sets TF_CPP_MIN_LOG_LEVEL=1 and starts a Python subprocess
    that imports TensorFlow to look for GPUs; that child logs TensorFlow's start-up
    noise to our stderr.  At our log level the child's stderr is dropped (it reports
    through its exit code), and the level is put back afterwards."""
    if int(_LOG_LEVEL) < 2 or "nengo_dl" in sys.modules:
        import nengo_dl  # noqa: F401
    else:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            import nengo_dl  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = _LOG_LEVEL


_import_nengo_dl_quietly()
if int(_LOG_LEVEL) >= 2:
    # the Python side too (e.g. retracing notices when many simulators are built)
    tf.get_logger().setLevel("ERROR")

from nengo_hybrid.activations import SoftLIF  # noqa: E402
from nengo_hybrid.families import (  # noqa: E402
    FAMILIES,
    ConversionError,
    NeuronFamily,
    convert,
    get_family,
    register_family,
)
from nengo_hybrid.neurons import (  # noqa: E402
    HybridSoftLIF,
    HybridSpikingRectifiedLinear,
    IntegrateAndFire,
)
from nengo_hybrid.runtime import ConvertedNetwork, transfer_weights  # noqa: E402
from nengo_hybrid import balancing, encoding, losses  # noqa: E402, F401
from nengo_hybrid.regularization import FiringRateLoss, RateRegularization  # noqa: E402
from nengo_hybrid import simulation  # noqa: E402, F401

__version__ = "0.1.0"
