r"""Gradient sums in a fixed order, so that training through time repeats to the bit.

A weight used at every timestep of an unrolled simulation gets one gradient per use,

.. math:: \frac{\partial L}{\partial w} = \sum_{t=1}^{T} g_t ,

and TensorFlow's gradient tape adds them with one ``AddN``.  The CPU kernel of ``AddN``
accumulates into the first input whose buffer no other op still holds and moves that
input to the front of the sum, so the order of the additions, and with three or more
terms the rounding, follows the scheduler: the same minibatch from the same weights can
give gradients a last bit apart, and a spiking network turns that into another path
(the CAE's short-budget fine-tuning differed between repeats within one process; see
the README's Bit-reproducibility).

`FixedOrderGradients` (`FixedOrderAdam`, `FixedOrderSGD`) computes gradients with
``tf.gradients`` and TensorFlow's tree aggregation, a running sum of two-input adds,

.. math:: \Bigl(\bigl((g_1 + g_2) + g_3\bigr) + \dots\Bigr) + g_T ,

which rounds alike in every run (two terms add to the same float in either order).
Grappler's arithmetic optimiser rewrites such a chain back into one ``AddN``, so it
must be off while the training function runs: `fixed_sum_order` turns it off for a
block (a training stage) and back on after it, so that what runs outside the block (an
evaluation stage, in the same process or in a resumed one) is optimised as it would be
without it; `fix_sum_order` turns it off for the rest of the process.
"""

import contextlib

import tensorflow as tf


def fix_sum_order():
    """Turn Grappler's arithmetic optimiser off for this process (it folds chains of
    two-input adds into one ``AddN``).  Affects functions run from now on."""
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})


@contextlib.contextmanager
def fixed_sum_order():
    """Grappler's arithmetic optimiser off inside the block, as it was after it.

    TensorFlow passes the optimiser's options with every call of a ``tf.function`` and
    optimises a function again for other options, so a training function called inside
    the block runs without the optimiser and one called after it runs with it.
    """
    before = tf.config.optimizer.get_experimental_options().get("arithmetic_optimization")
    fix_sum_order()
    try:
        yield
    finally:
        # TensorFlow merges the options it is given, and None is "not set" (its default)
        tf.config.optimizer.set_experimental_options({"arithmetic_optimization": before})


def sum_order_fixed():
    """Whether Grappler's arithmetic optimiser is off (`fix_sum_order`, or inside
    `fixed_sum_order`)."""
    return tf.config.optimizer.get_experimental_options().get("arithmetic_optimization") is False


class FixedOrderGradients:
    """Mixin for a Keras optimizer: gradients whose per-use terms add in a fixed order.

    The loss must be a tensor of the graph being traced (as in Keras's training step,
    inside ``tf.function``): the tape Keras passes is not used.  Train inside
    `fixed_sum_order` (or after `fix_sum_order`).
    """

    def compute_gradients(self, loss, var_list, tape=None):
        if callable(loss) or callable(var_list) or tf.executing_eagerly():
            raise ValueError(f"{type(self).__name__} computes gradients with tf.gradients: it needs a loss "
                             "tensor and a list of variables inside tf.function (as Keras's training step has)")
        grads = tf.gradients(loss, list(var_list), aggregation_method=tf.AggregationMethod.EXPERIMENTAL_TREE)
        return list(zip(grads, var_list))


class FixedOrderAdam(FixedOrderGradients, tf.keras.optimizers.Adam):
    """`tf.keras.optimizers.Adam` with `FixedOrderGradients`."""


class FixedOrderSGD(FixedOrderGradients, tf.keras.optimizers.SGD):
    """`tf.keras.optimizers.SGD` with `FixedOrderGradients`."""
