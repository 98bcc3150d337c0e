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
`fix_sum_order` turns Grappler's arithmetic optimiser off for the process, because it
rewrites such a chain back into one ``AddN``; graphs built after it are optimised
without it.
"""

import tensorflow as tf


def fix_sum_order():
    """Turn Grappler's arithmetic optimiser off for this process (it folds chains of
    two-input adds into one ``AddN``).  Affects graphs optimised from now on."""
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})


def sum_order_fixed():
    """Whether `fix_sum_order` is in effect."""
    return tf.config.optimizer.get_experimental_options().get("arithmetic_optimization") is False


class FixedOrderGradients:
    """Mixin for a Keras optimizer: gradients whose per-use terms add in a fixed order.

    The loss must be a tensor of the graph being traced (as in Keras's training step,
    inside ``tf.function``): the tape Keras passes is not used.  Call `fix_sum_order`
    before the training function is built.
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
