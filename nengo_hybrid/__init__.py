"""nengo-hybrid: hybrid ANN-to-SNN training in NengoDL.

Spiking neurons that spike on the forward pass and use the rate gradient on the
backward pass (`HybridSoftLIF`, `HybridSpikingRectifiedLinear`), and one call that
converts a Keras model into a NengoDL network of any neuron family (`convert`).
"""

import os

# TensorFlow's C++ logging is noise for users of this package; set the variable
# yourself (e.g. to 0) before importing to see it again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from nengo_hybrid.activations import SoftLIF  # noqa: E402
from nengo_hybrid.families import (  # noqa: E402
    FAMILIES,
    ConversionError,
    ConvertedNetwork,
    NeuronFamily,
    convert,
    get_family,
    register_family,
    transfer_weights,
)
from nengo_hybrid.neurons import HybridSoftLIF, HybridSpikingRectifiedLinear  # noqa: E402
from nengo_hybrid.regularization import FiringRateLoss, RateRegularization  # noqa: E402

__version__ = "0.1.0"
