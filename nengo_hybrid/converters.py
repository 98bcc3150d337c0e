"""Layer converters for Keras layers that NengoDL 3.6 does not convert natively, or
converts slowly.

Each is a ``nengo_dl.converter.LayerConverter`` registered with
``nengo_dl.Converter.register``, NengoDL's own extension point, when this module is
imported (`nengo_hybrid.families` imports it, so `nengo_hybrid.convert` always has
them):

==============================  ==============================================
Keras layer                     Nengo objects
==============================  ==============================================
``Conv2D``                      NengoDL's, but the channel biases added by a
                                1x1 convolution (`add_channel_biases`), not a
                                sparse matrix
``Conv2DTranspose``             ``nengo.transforms.ConvolutionTranspose`` into
                                neurons of the layer's activation
``Lambda(tf.nn.relu)`` and      ReLU neurons (NengoDL would leave a
``tf.nn.relu(keras_tensor)``    ``TensorNode``, which never spikes)
``Dropout``                     nothing (the identity), or a `DropoutNode` when
                                the `HybridConverter` is asked for dropout
==============================  ==============================================

Their activations go through ``LayerConverter.add_nengo_obj``, so
``swap_activations``, ``scale_firing_rates`` and ``synapse`` apply to them exactly as
to NengoDL's own layers.

Whether a ``Dropout`` layer drops units is a choice per conversion, which NengoDL's
converter has no option for: `HybridConverter` is ``nengo_dl.Converter`` with one more
keyword, ``dropout``, that `ConvertDropout` reads (`nengo_hybrid.convert` sets it for
the rate family only).
"""

import warnings

import nengo
import nengo_dl
import numpy as np
import tensorflow as tf
from nengo.exceptions import ValidationError
from nengo_dl.converter import LayerConverter

RELU_FUNCTIONS = (tf.nn.relu, tf.keras.activations.relu)

# Keras options that change the maths (regularisers and constraints only act while
# Keras itself trains, which NengoDL cannot reproduce): the same lists as NengoDL's
# own ConvertConv2D
_CONV_TRAINING_ARGS = [
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
]


class ConvertReLUFunction(LayerConverter):
    """Converts ``tf.nn.relu(x)`` written in a functional model (a ``TFOpLambda``) or
    wrapped in ``Lambda``, which NengoDL would otherwise leave as a ``TensorNode``."""

    @classmethod
    def convertible(cls, layer, converter):
        if getattr(layer, "function", None) in RELU_FUNCTIONS:
            return True, None
        return False, f"layer '{layer.name}' wraps a function with no neuron equivalent"

    def convert(self, node_id):
        # the relu's own key in swap_activations maps it to the family's neuron type
        output = self.add_nengo_obj(node_id, activation=tf.nn.relu)
        self.add_connection(node_id, output)
        return output


nengo_dl.Converter.register(tf.keras.layers.Lambda)(ConvertReLUFunction)
try:  # the class Keras creates for ``tf.nn.relu(keras_tensor)`` in a functional model
    from keras.layers.core.tf_op_layer import TFOpLambda
except ImportError:  # pragma: no cover (other Keras layouts)
    TFOpLambda = None
if TFOpLambda is not None:
    nengo_dl.Converter.register(TFOpLambda)(ConvertReLUFunction)


def add_channel_biases(layer_converter, node_id, output, biases):
    r"""One trainable bias per channel of a convolution's ``output``, added at every
    position of that channel.

    A constant node (1, as in NengoDL's converter) is spread over the output's
    positions by a fixed column of ones into a relay, and the biases are the kernel of
    a 1x1 convolution (one input channel, one filter per output channel) from that
    relay into the output:

    .. math:: y_{h,w,c} = 1 \cdot b_c = b_c, \qquad
              \frac{\partial L}{\partial b_c} = \sum_{h,w} \frac{\partial L}{\partial y_{h,w,c}},

    the value and gradient of a channel bias.  NengoDL's own ``ConvertConv`` broadcasts
    the biases through a sparse (positions x channels) matrix instead: a
    ``SparseTensorDenseMatMul`` and transposes in every timestep, forward and backward:
    LocNet's hybrid training step at 100 timesteps used a sixth more CPU time and
    1 GiB more memory that way (``benchmarks/hybrid_step.py``, README).  The relay keeps the constant input one
    value wide: NengoDL tiles a constant node's value over every example and timestep.
    """
    shape = layer_converter.output_shape(node_id)
    channels_last = layer_converter.layer.data_format == "channels_last"
    spatial = shape[:-1] if channels_last else shape[1:]
    n_positions = int(np.prod(spatial))
    name = f"{layer_converter.layer.name}.{node_id}"
    one = nengo.Node([1], label=f"{name}.bias")
    ones = nengo.Node(size_in=n_positions, label=f"{name}.bias_ones")
    spread = nengo.Connection(one, ones, transform=np.ones((n_positions, 1)), synapse=None)
    layer_converter.set_trainable(spread, False)
    kernel = nengo.Convolution(
        n_filters=len(biases),
        input_shape=(*spatial, 1) if channels_last else (1, *spatial),
        kernel_size=(1,) * len(spatial),
        strides=(1,) * len(spatial),
        channels_last=channels_last,
        init=np.reshape(biases, (1,) * len(spatial) + (1, len(biases))),
    )
    biased = nengo.Connection(ones, output, transform=kernel, synapse=None)
    layer_converter.set_trainable(biased, True)


class ChannelBiasConvolution:
    """``convert`` of a convolution layer: neurons (or a linear node) of the layer's
    activation, its channel biases (`add_channel_biases`) and the layer's kernel as
    the class's ``_transform(layer, input_shape, output_shape, kernel)``."""

    def convert(self, node_id):
        if self.layer.use_bias:
            kernel, biases = tf.keras.backend.batch_get_value((self.layer.kernel, self.layer.bias))
        else:
            kernel, biases = tf.keras.backend.get_value(self.layer.kernel), None
        output = self.add_nengo_obj(node_id, activation=self.layer.activation)
        if biases is not None:
            add_channel_biases(self, node_id, output, biases)
        transform = self._transform(
            self.layer, self.input_shape(node_id), self.output_shape(node_id), kernel
        )
        self.add_connection(node_id, output, transform=transform, trainable=True)
        return output


class ConvertConv2D(ChannelBiasConvolution, nengo_dl.converter.ConvertConv2D):
    """NengoDL's ``Conv2D`` converter with the channel biases of `add_channel_biases`:
    the same transform, neurons and trainable parameters (the kernel and one bias per
    channel), the biases added by a 1x1 convolution instead of a sparse matrix."""

    unsupported_args = [("dilation_rate", (1, 1)), ("groups", 1)]  # nengo 3.2.0 has no groups

    @staticmethod
    def _transform(layer, input_shape, output_shape, kernel):
        """The ``Convolution`` of ``layer`` (Keras and Nengo share the kernel layout)."""
        return nengo.Convolution(
            n_filters=layer.filters,
            input_shape=input_shape,
            kernel_size=layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            channels_last=layer.data_format == "channels_last",
            init=kernel,
        )


with warnings.catch_warnings():
    # replacing NengoDL's own Conv2D converter is the point: not worth a warning
    warnings.filterwarnings("ignore", message=".*already has a converter")
    nengo_dl.Converter.register(tf.keras.layers.Conv2D)(ConvertConv2D)


@nengo_dl.Converter.register(tf.keras.layers.Conv2DTranspose)
class ConvertConv2DTranspose(ChannelBiasConvolution, LayerConverter):
    r"""Converts ``tf.keras.layers.Conv2DTranspose`` to a transposed convolution
    transform into neurons (or a linear node) of the layer's activation.

    Keras computes, for input :math:`x` with :math:`C_{in}` channels and kernel
    :math:`K` of shape ``(kh, kw, C_out, C_in)``,

    .. math:: y = \mathrm{conv\_transpose}(x, K) + b, \quad
              y_{out} = \mathrm{activation}(y),

    the gradient of a strided convolution with kernel :math:`K` with respect to its
    input.  ``nengo.transforms.ConvolutionTranspose`` is the same operation (NengoDL
    builds it with ``tf.nn.conv_transpose``) with the kernel stored as a forward
    kernel of its own input/output, ``(kh, kw, C_in, C_out)``: the two channel axes
    are swapped, and the kernel is not flipped.

    The output shape is taken from the Keras layer, which covers ``output_padding``:
    of the output shapes whose forward convolution gives the input shape, Keras picks
    one with ``output_padding`` and Nengo accepts any of them.  ``data_format``,
    ``padding`` (``"same"``/``"valid"``) and ``strides`` are handled as in NengoDL's
    ``ConvertConv2D``, the bias as in `ConvertConv2D` (`add_channel_biases`): one
    trainable parameter per output channel.
    """

    has_weights = True
    unsupported_args = [("dilation_rate", (1, 1))]
    unsupported_training_args = _CONV_TRAINING_ARGS

    @staticmethod
    def _transform(layer, input_shape, output_shape, kernel):
        """The ``ConvolutionTranspose`` of ``layer``, with a Keras-layout ``kernel``."""
        return nengo.transforms.ConvolutionTranspose(
            n_filters=layer.filters,
            input_shape=input_shape,
            output_shape=output_shape,
            kernel_size=layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            channels_last=layer.data_format == "channels_last",
            # Keras (kh, kw, out, in) -> Nengo (kh, kw, in, out)
            init=np.swapaxes(kernel, -1, -2),
        )

    @classmethod
    def convertible(cls, layer, converter):
        convertible, message = super().convertible(layer, converter)
        if not convertible:
            return convertible, message
        # Keras builds layers whose output no forward convolution maps back to the
        # input (e.g. an even kernel, "same" padding and output_padding=0: Keras only
        # fails when it runs); Nengo validates the shapes, so ask it now for an error
        # that names the layer instead of one in the middle of the conversion
        skip = 2 if converter.temporal_model else 1  # batch (and time) axes
        try:
            cls._transform(
                layer,
                layer.get_input_shape_at(0)[skip:],
                layer.get_output_shape_at(0)[skip:],
                tf.keras.backend.get_value(layer.kernel),
            )
        except ValidationError as error:
            reason = str(error).rstrip(".")
            return False, f"{layer.name} has no equivalent ConvolutionTranspose: {reason}"
        return True, None


class HybridConverter(nengo_dl.Converter):
    """``nengo_dl.Converter`` that also decides what ``Dropout`` layers become.

    Parameters
    ----------
    model : tf.keras.Model
        As ``nengo_dl.Converter``.
    dropout : bool
        True: every ``Dropout`` layer becomes a `DropoutNode`, which drops units while
        the simulator trains (``sim.fit``) and is the identity at inference.  False
        (the default, and what a plain ``nengo_dl.Converter`` gives): every
        ``Dropout`` layer is the identity, with no Nengo object of its own.
    **kwargs
        ``nengo_dl.Converter``'s keywords.
    """

    def __init__(self, model, *, dropout=False, **kwargs):
        # NengoDL converts the whole model inside __init__, so the layer converters
        # must find the setting before it runs
        self.dropout = bool(dropout)
        super().__init__(model, **kwargs)


class DropoutNode(nengo_dl.TensorNode):
    """The ``TensorNode`` of a Keras ``Dropout`` layer that drops units (made only by
    `ConvertDropout` for a converter with ``dropout=True``).

    A type of its own, so that `nengo_hybrid.convert` can tell it from the
    ``TensorNode`` of a layer NengoDL could not convert (which it refuses)."""


@nengo_dl.Converter.register(tf.keras.layers.Dropout)
class ConvertDropout(LayerConverter):
    r"""Converts ``tf.keras.layers.Dropout``: the identity, or dropout during training.

    NengoDL 3.6 has no converter for the layer and would fall back to a generic
    ``TensorNode``.  Here the converter's ``dropout`` attribute (`HybridConverter`;
    False when missing) decides:

    - False: the identity.  The layer's output is its input's Nengo object, as for
      ``Flatten``; no object or connection is added, so neuron counts, firing rates
      and synaptic operations see a network without the layer.
    - True: a `DropoutNode` running a fresh ``Dropout(rate, noise_shape, seed)`` on
      its input.  NengoDL calls a Keras layer with ``training`` set to the simulator's
      learning phase, so it zeroes each unit with probability ``rate`` and scales the
      others by :math:`1 / (1 - \mathrm{rate})` in ``sim.fit``, and passes its input
      unchanged in ``sim.predict``/``evaluate``, exactly as Keras does.  Its input
      connection is made like any other layer's (the converter's ``synapse`` if the
      input is neurons), so the next layer receives what it would without dropout.
    """

    def convert(self, node_id):
        if not getattr(self.converter, "dropout", False):
            return self.get_input_obj(node_id)
        config = self.layer.get_config()
        layer = tf.keras.layers.Dropout(
            config["rate"], noise_shape=config["noise_shape"], seed=config["seed"],
            name=f"{self.layer.name}_nengo",
        )
        output = DropoutNode(
            layer,
            shape_in=self.input_shape(node_id),
            pass_time=False,
            label=f"{self.layer.name}.dropout",
        )
        self.add_connection(node_id, output)
        return output
