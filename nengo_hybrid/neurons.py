"""Hybrid neuron types: spikes on the forward pass, the rate gradient on the backward pass.

NengoDL's spiking types (``nengo.LIF``, ``nengo.SpikingRectifiedLinear``) switch to
their rate approximations while training, so a network is trained as an ANN and only
run as an SNN.  The types here keep spiking during training: the forward pass is the
exact spiking neuron, with its membrane voltage (and refractory time) carried from one
timestep to the next, and only the backward pass is replaced, by the derivative of the
neuron's rate curve.  In inference they are exactly their NengoDL parents.

The builders are registered in NengoDL's own extension point,
``nengo_dl.neuron_builders.SimNeuronsBuilder.TF_NEURON_IMPL``, when this module is
imported.
"""

import nengo
import numpy as np
import tensorflow as tf
from nengo.params import NumberParam
from tensorflow.python.framework import smart_cond
from nengo_dl.neuron_builders import (
    TFNeuronBuilder,
    LIFBuilder,
    SimNeuronsBuilder,
    SpikingRectifiedLinearBuilder,
)


class HybridSoftLIF(nengo.LIF):
    r"""LIF neuron that spikes in training and back-propagates the SoftLIF rate gradient.

    Forward (training and inference): the spiking LIF neuron of ``nengo.LIF``,

    .. math:: \tau_{RC} \dot v = -v + J, \quad v \ge 1 \Rightarrow
              \text{spike}, \; v \leftarrow 0 \text{ for } \tau_{ref}.

    Backward (training): the derivative of the SoftLIF rate curve (Hunsberger &
    Eliasmith 2015, the curve of ``nengo_dl.SoftLIFRate``),

    .. math:: r(J) = \frac{A}{\tau_{ref} + \tau_{RC}\log(1 + 1/\rho(J - 1))},
              \quad \rho(x) = \sigma \log(1 + e^{x/\sigma}),

    .. math:: \frac{dr}{dJ} = \frac{A\,\tau_{RC}}{(\tau_{ref} + \tau_{RC}
              \log(1 + 1/\rho))^2} \cdot \frac{\mathrm{sigmoid}((J-1)/\sigma)}
              {\rho\,(1 + \rho)}.

    Parameters
    ----------
    sigma : float
        Smoothing of the rate curve around the firing threshold (in units of input
        current); as ``sigma -> 0`` the curve approaches the LIF rate curve.
    tau_rc, tau_ref, min_voltage, amplitude, initial_state
        As in `nengo.LIF`.
    """

    sigma = NumberParam("sigma", low=0, low_open=True)

    def __init__(
        self,
        sigma=1.0,
        tau_rc=0.02,
        tau_ref=0.002,
        min_voltage=0,
        amplitude=1,
        initial_state=None,
    ):
        super().__init__(
            tau_rc=tau_rc,
            tau_ref=tau_ref,
            min_voltage=min_voltage,
            amplitude=amplitude,
            initial_state=initial_state,
        )
        self.sigma = sigma

    def rate_curve(self, J):
        """The SoftLIF rate (Hz times ``amplitude``) for input current ``J`` (numpy)."""
        x = (np.asarray(J, dtype=np.float64) - 1) / self.sigma
        rho = self.sigma * np.logaddexp(0, x)
        with np.errstate(divide="ignore"):
            q = np.where(x > -30, np.log1p(1 / np.maximum(rho, 1e-300)), -x - np.log(self.sigma))
        return self.amplitude / (self.tau_ref + self.tau_rc * q)


class HybridSpikingRectifiedLinear(nengo.SpikingRectifiedLinear):
    r"""Spiking ReLU that spikes in training and back-propagates the ReLU gradient.

    Forward (training and inference): the integrate-and-fire neuron of
    ``nengo.SpikingRectifiedLinear``, :math:`v \leftarrow v + \max(J, 0)\,dt`,
    emitting :math:`\lfloor v \rfloor` spikes of height :math:`A/dt` and keeping the
    remainder.

    Backward (training): the derivative of the rate :math:`r(J) = A \max(J, 0)`, i.e.
    :math:`A` where :math:`J > 0` and 0 elsewhere.
    """

    def rate_curve(self, J):
        """The rate (Hz times ``amplitude``) for input current ``J`` (numpy)."""
        return self.amplitude * np.maximum(np.asarray(J, dtype=np.float64), 0)


def spikes_with_surrogate_gradient(spikes, J, rate_derivative):
    """Return ``spikes`` whose gradient with respect to ``J`` is ``rate_derivative(J)``.

    The forward value is exactly ``spikes``; ``rate_derivative`` is only evaluated when
    a gradient is requested, so inference and the forward pass of training pay nothing
    for it.
    """

    @tf.custom_gradient
    def straight_through(current, spike_train):
        def grad(upstream):
            return upstream * rate_derivative(current), None

        return tf.identity(spike_train), grad

    return straight_through(J, tf.stop_gradient(spikes))


class HybridBuilderMixin:
    """Builds a spiking step whose state persists and whose gradient is the rate's.

    NengoDL's ``TFNeuronBuilder.build_step`` holds every neuron state constant in
    training and swaps the output for ``training_step`` (a rate).  Here the spiking
    ``step`` of the parent builder runs in both modes, its updated state is written
    back in both modes, and only the gradient of the output is replaced.

    In inference the parent's ``step`` runs as it is, so the output is the parent's bit
    for bit.  In training the same maths is compiled with XLA (``jit_compile``), which
    fuses its dozen element-wise operations (and those of the rate derivative on the
    backward pass) into one loop each: several times faster on CPU and GPU, equal to
    the parent's step up to float rounding.  A neuron type whose ``fuse_with_xla``
    attribute is False trains with the parent's unfused operations instead.
    """

    spiking = True

    def rate_derivative(self, J):
        raise NotImplementedError("Subclasses must implement")

    def build_pre(self, signals, config):
        super().build_pre(signals, config)
        # each neuron type says whether its training step is fused (``fuse_with_xla``,
        # set by `nengo_hybrid.convert`); a group of ops is fused only if all say so
        self.fuse_with_xla = all(getattr(op.neurons, "fuse_with_xla", True) for op in self.ops)
        if self.fuse_with_xla:
            self.fused_step = tf.function(self.step, jit_compile=True, autograph=False)
            self.fused_rate_derivative = tf.function(
                self.rate_derivative, jit_compile=True, autograph=False
            )
        else:
            self.fused_step, self.fused_rate_derivative = self.step, self.rate_derivative

    def training_outputs(self, J, dt, state):
        # The state update carries no gradient: learning flows only through the rate
        # surrogate of the output, as in the paper's alternating forward/backward pass.
        spikes, *new_state = self.fused_step(tf.stop_gradient(J), dt, **state)
        out = spikes_with_surrogate_gradient(spikes, J, self.fused_rate_derivative)
        return (out,) + tuple(tf.stop_gradient(value) for value in new_state)

    def build_step(self, signals, **step_kwargs):
        J = signals.gather(self.J_data)
        state = {name: signals.gather(data) for name, data in self.state_data.items()}

        def inference_outputs():
            return tuple(tf.stop_gradient(x) for x in self.step(J, signals.dt, **state))

        if self.config.inference_only:
            outputs = inference_outputs()
        else:
            outputs = smart_cond.smart_cond(
                self.config.training,
                true_fn=lambda: self.training_outputs(J, signals.dt, state),
                false_fn=inference_outputs,
            )

        signals.scatter(self.output_data, outputs[0])
        for data, value in zip(self.state_data.values(), outputs[1:]):
            signals.scatter(data, value)


class HybridSoftLIFBuilder(HybridBuilderMixin, LIFBuilder):
    """Builds `.HybridSoftLIF`: ``LIFBuilder.step`` forward, SoftLIF gradient back."""

    def build_pre(self, signals, config):
        super().build_pre(signals, config)
        self.sigma = signals.op_constant(
            [op.neurons for op in self.ops],
            [op.J.shape[0] for op in self.ops],
            "sigma",
            signals.dtype,
        )

    def rate_derivative(self, J):
        x = (J - self.one) / self.sigma
        # below x = -20 softplus(x) == exp(x) to float32 precision, and the ratio
        # sigmoid(x) / (rho (1 + rho)) tends to 1 / sigma; evaluating it directly there
        # would divide zero by zero.
        valid = x > -20
        x_safe = tf.where(valid, x, tf.zeros_like(x))
        rho = tf.nn.softplus(x_safe) * self.sigma
        q = tf.where(valid, tf.math.log1p(tf.math.reciprocal(rho)), -x - tf.math.log(self.sigma))
        ratio = tf.where(
            valid, tf.sigmoid(x_safe) / (rho * (self.one + rho)), tf.math.reciprocal(self.sigma)
        )
        amplitude = self.one if self.amplitude is None else self.amplitude
        return amplitude * self.tau_rc * ratio / tf.square(self.tau_ref + self.tau_rc * q)


class HybridSpikingRectifiedLinearBuilder(HybridBuilderMixin, SpikingRectifiedLinearBuilder):
    """Builds `.HybridSpikingRectifiedLinear`: spiking step forward, ReLU gradient back."""

    def rate_derivative(self, J):
        slope = tf.cast(J > 0, J.dtype)
        return slope if self.amplitude is None else slope * self.amplitude


SimNeuronsBuilder.TF_NEURON_IMPL[HybridSoftLIF] = HybridSoftLIFBuilder
SimNeuronsBuilder.TF_NEURON_IMPL[HybridSpikingRectifiedLinear] = (
    HybridSpikingRectifiedLinearBuilder
)


class IntegrateAndFire(nengo.neurons.NeuronType):
    r"""Integrate-and-fire neuron: no leak, reset by subtraction, trained through time.

    Every timestep the membrane potential integrates the input current whatever its
    sign (a negative current lowers it: ternary input spikes rely on that), fires at
    most one spike when it reaches the threshold :math:`v`, and subtracts the
    threshold (no charge is lost):

    .. math:: u' = u_{t-1} + J_t\,dt, \qquad o_t = H(u' - v), \qquad
              u_t = u' - v\,o_t, \qquad \text{output}_t = o_t\,A / dt

    (:math:`A` the ``amplitude``; a spike of height :math:`A/dt` is NengoDL's spike
    convention).  Below one spike per step the mean output is :math:`A J / v`; above
    it the neuron saturates at :math:`A / dt`.

    In training (`IntegrateAndFireBuilder`) the forward pass is the same step, and
    the backward pass replaces :math:`dH/du` by the linear surrogate of Bellec et al.
    (2018) on the threshold-normalised potential :math:`u/v`,

    .. math:: \frac{\partial o_t}{\partial (u'/v)} = \gamma\,
              \max\!\left(0,\ 1 - \frac{|u' - v|}{v}\right),

    i.e. :math:`\partial o_t / \partial u' = (\gamma / v) \max(0, 1 - |u' - v|/v)`:
    exactly :math:`\gamma \max(\cdot)` at :math:`v = 1`, and for other thresholds the
    same gradient per unit of input relative to the threshold (a layer whose inputs
    and threshold are scaled together spikes identically and learns identically).
    The gradient flows back through the membrane from each timestep to the earlier
    ones (backpropagation through time); the reset term :math:`v\,o_t` is treated as
    a constant there, as in snnTorch and Zenke & Vogels (2021), so the membrane's own
    gradient path is the identity.

    Parameters
    ----------
    threshold : float
        Firing threshold :math:`v` of the membrane potential (units of current x
        seconds).  `nengo_hybrid.balancing` sets one per layer.
    amplitude : float
        Scaling of the output spikes (:math:`A`).
    surrogate_scale : float
        :math:`\gamma` of the surrogate gradient (Bellec et al. 2018 use 0.3).
    initial_state : {str: Distribution or array_like}
        The membrane starts at 0 unless given here (``{"voltage": ...}``).
    """

    state = {"voltage": nengo.dists.Choice([0])}
    spiking = True

    threshold = NumberParam("threshold", low=0, low_open=True)
    amplitude = NumberParam("amplitude", low=0, low_open=True)
    surrogate_scale = NumberParam("surrogate_scale", low=0)

    def __init__(self, threshold=1.0, amplitude=1.0, surrogate_scale=0.3, initial_state=None):
        super().__init__(initial_state=initial_state)
        self.threshold = threshold
        self.amplitude = amplitude
        self.surrogate_scale = surrogate_scale

    def rates(self, x, gain, bias):
        """The mean output :math:`A \\max(J, 0) / v` (Hz times ``amplitude``) below one
        spike per timestep (nengo calls this without a ``dt``, so without saturation)."""
        J = self.current(x, gain, bias)
        return self.amplitude * np.maximum(J, 0) / self.threshold

    def step(self, dt, J, output, voltage):
        """One timestep in numpy (nengo's reference simulator)."""
        voltage += J * dt
        spiked = voltage >= self.threshold
        output[:] = spiked * (self.amplitude / dt)
        voltage -= spiked * self.threshold


def heaviside_with_surrogate(over_threshold, threshold, surrogate_scale):
    r"""The spike :math:`H(u' - v)` as a float, whose derivative with respect to
    ``over_threshold`` :math:`= u' - v` is Bellec et al.'s linear surrogate
    :math:`(\gamma / v) \max(0, 1 - |u' - v| / v)`."""

    @tf.custom_gradient
    def spike(x):
        def grad(upstream):
            return upstream * (surrogate_scale / threshold) * tf.nn.relu(
                1 - tf.abs(x) / threshold
            )

        return tf.cast(x >= 0, x.dtype), grad

    return spike(over_threshold)


class IntegrateAndFireBuilder(TFNeuronBuilder):
    """Builds `.IntegrateAndFire`: one step for inference and training alike.

    NengoDL's spiking builders (``spiking = True``) hold the neuron state constant in
    training and output a rate instead.  Here ``spiking`` is off, so NengoDL runs
    `step` in both modes and leaves the state update differentiable: the spikes carry
    the surrogate gradient (`heaviside_with_surrogate`) and the membrane carries it
    from each timestep back to the earlier ones.  In inference the custom gradient is
    never evaluated; the forward values are the same.
    """

    spiking = False

    def build_pre(self, signals, config):
        super().build_pre(signals, config)
        ops = [op.neurons for op in self.ops]
        sizes = [op.J.shape[0] for op in self.ops]
        self.threshold = signals.op_constant(ops, sizes, "threshold", signals.dtype)
        self.surrogate_scale = signals.op_constant(ops, sizes, "surrogate_scale", signals.dtype)

    def step(self, J, dt, voltage):
        voltage = voltage + J * dt
        spikes = heaviside_with_surrogate(voltage - self.threshold, self.threshold,
                                          self.surrogate_scale)
        # reset by subtraction; the reset is a constant for the gradient
        voltage = voltage - self.threshold * tf.stop_gradient(spikes)
        return spikes * self.alpha, voltage


SimNeuronsBuilder.TF_NEURON_IMPL[IntegrateAndFire] = IntegrateAndFireBuilder
