"""Losses usable both by Keras and by ``nengo_dl.Simulator.compile``.

`LastTimesteps` restricts any loss to a spiking output's final timesteps; the mask
losses (`BinaryCrossEntropy`, `DiceLoss` and their weighted sum `BCEDice`, the CAE's
loss) take the same masks as Keras images or as NengoDL's flattened probe outputs.
"""

import tensorflow as tf


class LastTimesteps(tf.keras.losses.Loss):
    r"""Apply ``loss`` to the mean of the last ``n_steps`` timesteps of a
    ``(batch, time, ...)`` output.

    .. math:: L = \ell\left(y_T,\ \frac{1}{n}\sum_{t=T-n+1}^{T} \hat y_t\right)

    A spiking network's output needs some timesteps to settle (every synapse low-pass
    filters its input), and it is read as its mean over a final window.  Training on
    that mean trains what is measured; a loss on every timestep of the window would
    also punish the spike noise around the mean, which the reading averages away (on a
    LocNet that per-step loss was ~50 times the loss of the mean).
    """

    def __init__(self, loss, n_steps, name=None):
        super().__init__(name=name or f"last_{n_steps}_steps")
        self.loss = tf.keras.losses.get(loss)
        self.n_steps = int(n_steps)

    def call(self, y_true, y_pred):
        window_mean = tf.reduce_mean(y_pred[:, -self.n_steps:], axis=1, keepdims=True)
        return self.loss(y_true[:, -1:], window_mean)

    def get_config(self):
        return dict(super().get_config(), loss=tf.keras.losses.serialize(self.loss), n_steps=self.n_steps)


class ReadoutWindows(tf.keras.losses.Loss):
    r"""``loss`` averaged over read-out windows of ``n_steps`` that end at several
    timesteps of a ``(batch, time, ...)`` output.

    .. math:: L = \frac{1}{K}\sum_{k=1}^{K} \ell\left(y,\ \frac{1}{n}
              \sum_{t=e_k-n+1}^{e_k} \hat y_t\right)

    A spiking network trained on one window (`LastTimesteps`) can learn to be right in
    that window while its output is still moving, and be wrong when read later.  With
    windows ending at :math:`e_1 < \dots < e_K` (the last at the final timestep) it is
    asked to be right at each, i.e. to have settled by :math:`e_1`.

    Parameters
    ----------
    loss : loss
    n_steps : int
        Timesteps in each window.
    ends : sequence of int
        The timesteps (counted from 1) at which the windows end.
    """

    def __init__(self, loss, n_steps, ends, name=None):
        super().__init__(name=name or f"windows_{n_steps}_steps")
        self.loss = tf.keras.losses.get(loss)
        self.n_steps = int(n_steps)
        self.ends = tuple(int(e) for e in ends)
        if not self.ends or min(self.ends) < self.n_steps:
            raise ValueError(f"every window must end at or after timestep {self.n_steps}: {self.ends}")

    def call(self, y_true, y_pred):
        losses = [self.loss(y_true[:, -1:], tf.reduce_mean(y_pred[:, end - self.n_steps:end], axis=1,
                                                            keepdims=True))
                  for end in self.ends]
        return tf.add_n(losses) / len(losses)

    def get_config(self):
        return dict(super().get_config(), loss=tf.keras.losses.serialize(self.loss), n_steps=self.n_steps,
                    ends=list(self.ends))


class MeanPotential(LastTimesteps):
    r"""Apply ``loss`` to a non-spiking output layer's membrane potential averaged over
    all ``n_steps`` timesteps.

    The output layer does not spike: it accumulates its input current into a membrane
    potential with no threshold and no reset, and the task loss (for segmentation, a
    sigmoid of it: the pixel probability) reads that potential.  A converted network's
    output probe holds the layer's input current :math:`J_t = W s_t` at each step, so

    .. math:: \bar u = \frac{u_T}{T\,dt} = \frac{1}{T} \sum_{t=1}^{T} J_t,

    which is `LastTimesteps` over the whole run.

    Averaged, not summed: the sum grows with :math:`T`, so the same weights would give
    logits :math:`T` times larger at :math:`T` steps and a sigmoid that saturates; the
    average is the ANN's logit in expectation (a rate-coded spike train's mean is the
    ANN's activation) at any :math:`T`, so the converted SNN starts from the ANN's loss
    and decision threshold, and networks read at different :math:`T` compare like with
    like.
    """

    def __init__(self, loss, n_steps, name=None):
        super().__init__(loss, n_steps, name=name or "mean_potential")


class MaskLoss(tf.keras.losses.Loss):
    r"""A loss computed mask by mask, for Keras images and NengoDL probe outputs alike.

    ``y_true`` and ``y_pred`` may be

    * ``(batch, H, W, C)``: a Keras model's masks, one mask per example;
    * ``(batch, steps, features)``: a NengoDL probe (the mask flattened), one mask per
      example and timestep (a ``(batch, H, W)`` array is read this way too);
    * ``(batch, features)``: one flattened mask per example.

    ``y_true`` of another rank (e.g. ``(batch, H, W)`` masks for a ``(batch, H, W, 1)``
    output) is reshaped to the shape of ``y_pred``.

    Subclasses implement `per_mask`, which maps ``(batch, steps, features)`` to
    ``(batch, steps)``; Keras then averages over the masks (its default reduction),
    so a batch of images and the same batch flattened over one timestep give the same
    loss.

    Parameters
    ----------
    from_logits : bool
        Whether ``y_pred`` holds logits :math:`z` (the CAE's output; the probability is
        :math:`p = \sigma(z)`) or probabilities :math:`p`.
    name, **kwargs
        As for ``tf.keras.losses.Loss`` (e.g. ``reduction``).
    """

    def __init__(self, from_logits=True, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.cast(y_true, y_pred.dtype)
        if y_true.shape.rank != y_pred.shape.rank:  # e.g. (batch, H, W) masks
            y_true = tf.reshape(y_true, tf.shape(y_pred))
        return self.per_mask(_as_masks(y_true), _as_masks(y_pred))

    def probabilities(self, y_pred):
        """:math:`p`: ``y_pred`` itself, or its sigmoid if it holds logits."""
        return tf.sigmoid(y_pred) if self.from_logits else y_pred

    def per_mask(self, y_true, y_pred):
        raise NotImplementedError("Subclasses must implement")

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


def _as_masks(y):
    """``y`` as ``(batch, steps, features)``."""
    if y.shape.rank == 4:
        return tf.reshape(y, (-1, 1, tf.reduce_prod(tf.shape(y)[1:])))
    if y.shape.rank == 3:
        return y
    if y.shape.rank == 2:
        return y[:, None, :]
    raise ValueError(
        f"masks must be (batch, H, W, C), (batch, steps, features) or (batch, features); "
        f"got shape {y.shape}"
    )


class BinaryCrossEntropy(MaskLoss):
    r"""Binary cross-entropy averaged over the pixels of each mask,

    .. math:: \mathrm{BCE} = -\frac{1}{N}\sum_i t_i \log p_i + (1 - t_i)\log(1 - p_i).

    Keras's own ``binary_crossentropy`` computes each term (from logits, as
    :math:`\max(z, 0) - z t + \log(1 + e^{-|z|})`, exact for any :math:`z`; from
    probabilities, clipped to :math:`[\epsilon, 1 - \epsilon]`), so the value equals
    ``tf.keras.losses.BinaryCrossentropy(from_logits=...)``.
    """

    def __init__(self, from_logits=True, name="bce", **kwargs):
        super().__init__(from_logits=from_logits, name=name, **kwargs)

    def per_mask(self, y_true, y_pred):
        elementwise = tf.keras.backend.binary_crossentropy(
            y_true, y_pred, from_logits=self.from_logits
        )
        return tf.reduce_mean(elementwise, axis=-1)


class DiceLoss(MaskLoss):
    r"""Soft Dice loss of each mask,

    .. math:: L_{Dice} = 1 - \frac{2\sum_i p_i t_i + s}{\sum_i p_i + \sum_i t_i + s},

    with probabilities :math:`p` (not thresholded, so it has a gradient) and
    smoothing :math:`s`.  A perfect prediction scores 0 and disjoint masks
    :math:`1 - s / (\sum p + \sum t + s)`, nearly 1.  The smoothing also decides the
    masks with no structure in them (most slices of a volume): an empty prediction of
    an empty target scores 0, and false positives cost
    :math:`\sum p / (\sum p + s)`, bounded by 1.

    With ``over_batch`` the sums run over every pixel of the minibatch (at each
    timestep), one Dice for the minibatch ("batch Dice"), which every mask then
    carries.  Slices with nothing to segment are then no longer decided by :math:`s`
    alone: per mask, an empty target's loss :math:`\sum p / (\sum p + s)` has the
    gradient :math:`s / (\sum p + s)^2` per pixel, :math:`\approx 1/s` while the
    prediction is empty, which at the paper's :math:`s = 10^{-5}` drives a network to
    predict nothing anywhere (measured here: a U-Net's Dice-loss ANN collapsed to an
    empty output in its third epoch).

    Parameters
    ----------
    smooth : float
        :math:`s`, in pixels.
    over_batch : bool
        One Dice over the minibatch's pixels instead of one per mask.
    """

    def __init__(self, from_logits=True, smooth=1.0, over_batch=False, name="dice", **kwargs):
        super().__init__(from_logits=from_logits, name=name, **kwargs)
        self.smooth = float(smooth)
        self.over_batch = bool(over_batch)

    def per_mask(self, y_true, y_pred):
        p = self.probabilities(y_pred)
        axes = (0, -1) if self.over_batch else -1
        overlap = tf.reduce_sum(p * y_true, axis=axes)
        total = tf.reduce_sum(p, axis=axes) + tf.reduce_sum(y_true, axis=axes)
        dice = 1.0 - (2.0 * overlap + self.smooth) / (total + self.smooth)
        # the minibatch's Dice for each of its masks: their mean is that Dice
        return tf.broadcast_to(dice, tf.shape(p)[:-1]) if self.over_batch else dice

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth, "over_batch": self.over_batch}


class SliceDiceError(MaskLoss):
    r"""One minus the Dice of each thresholded mask: what the tables score, as a
    validation measure early stopping can watch (it has no gradient).

    .. math:: E = 1 - \frac{2 |P \cap T|}{|P| + |T|},

    with :math:`P` the pixels whose probability exceeds ``threshold`` and :math:`T` the
    target's.  A mask whose target is empty:

    - ``on_target=False``: scores 0 if :math:`P` is empty too and 1 otherwise, the rule
      of `nengo_hybrid.metrics.dice_2d` (``empty="score"``), so the mean over a
      validation set is one minus that set's 2D Dice over all slices;
    - ``on_target=True``: scores 0 whatever is predicted, so the mean over a validation
      set of :math:`N` masks, :math:`N_T` of them with target, is
      :math:`\frac{N_T}{N}(1 - \overline{D}_T)` with :math:`\overline{D}_T` the mean
      Dice over the masks that show the target.  The set is fixed, so this falls exactly
      when that Dice rises: the tables' "on target" column, the number that compares
      with papers whose crops always show the target.

    A loss can fall while this rises: a fine-tuned U-Net lowered its validation BCE by
    shrinking every mask below the 0.5 cut-off (measured here), so the segmentation's
    fine-tuning keeps the epoch of least ``val_output_dice_error`` (or
    ``val_output_dice_error_on_target``).
    """

    def __init__(self, from_logits=True, threshold=0.5, on_target=False, name=None, **kwargs):
        name = name or ("dice_error_on_target" if on_target else "dice_error")
        super().__init__(from_logits=from_logits, name=name, **kwargs)
        self.threshold = float(threshold)
        self.on_target = bool(on_target)

    def per_mask(self, y_true, y_pred):
        predicted = tf.cast(self.probabilities(y_pred) > self.threshold, y_pred.dtype)
        target = tf.cast(y_true > 0.5, y_pred.dtype)
        overlap = tf.reduce_sum(predicted * target, axis=-1)
        n_pred = tf.reduce_sum(predicted, axis=-1)
        n_true = tf.reduce_sum(target, axis=-1)
        empty_score = tf.ones_like(n_pred) if self.on_target else tf.cast(n_pred == 0, y_pred.dtype)
        dice = tf.where(n_true > 0, 2.0 * overlap / tf.maximum(n_pred + n_true, 1.0), empty_score)
        return 1.0 - dice

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold, "on_target": self.on_target}


class BCEDice(MaskLoss):
    r"""The weighted sum of `BinaryCrossEntropy` and `DiceLoss` (the paper: 0.5 each),

    .. math:: L = w_{BCE}\,\mathrm{BCE} + w_{Dice}\,L_{Dice},

    summed mask by mask, so the batch loss is the same weighted sum of the two batch
    losses.
    """

    def __init__(self, bce_weight=0.5, dice_weight=0.5, from_logits=True, smooth=1.0,
                 over_batch=False, name="bce_dice", **kwargs):
        super().__init__(from_logits=from_logits, name=name, **kwargs)
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.bce = BinaryCrossEntropy(from_logits=from_logits)
        self.dice = DiceLoss(from_logits=from_logits, smooth=smooth, over_batch=over_batch)

    def per_mask(self, y_true, y_pred):
        bce = self.bce.per_mask(y_true, y_pred)
        dice = self.dice.per_mask(y_true, y_pred)
        return self.bce_weight * bce + self.dice_weight * dice

    def get_config(self):
        return {
            **super().get_config(),
            "bce_weight": self.bce_weight,
            "dice_weight": self.dice_weight,
            "smooth": self.dice.smooth,
            "over_batch": self.dice.over_batch,
        }


class StandardisedBoxLoss(tf.keras.losses.Loss):
    r"""Squared error of standardised boxes plus an IoU term on the boxes they stand for.

    .. math:: L = \frac{1}{4}\lVert z - \hat z\rVert^2
              + w\,\bigl(1 - \mathrm{IoU}(\mu + s z,\ \mu + s \hat z)\bigr)

    for standardised targets :math:`z = (y - \mu) / s` (`nengo_hybrid.targets`) of boxes
    ``(top, left, bottom, right)``.  The squared error alone weighs all four corners
    alike, while the table scores IoU; on LocNet's validation airplanes the IoU term
    (``iou_weight`` 10: both terms start near 1) raised the ANN's validation IoU from
    the mean box's level to 0.902 (the mean box: 0.896) in 16 epochs, where the squared
    error alone stayed at 0.897.

    Parameters
    ----------
    mean, spread : array_like (4,)
        The targets' :math:`\mu` and :math:`s`.
    iou_weight : float
        :math:`w`.
    """

    def __init__(self, mean, spread, iou_weight=10.0, name="box_loss"):
        super().__init__(name=name)
        self.mean = [float(v) for v in mean]
        self.spread = [float(v) for v in spread]
        self.iou_weight = float(iou_weight)

    def call(self, y_true, y_pred):
        mean = tf.constant(self.mean, y_pred.dtype)
        spread = tf.constant(self.spread, y_pred.dtype)
        true = mean + spread * tf.cast(y_true, y_pred.dtype)
        pred = mean + spread * y_pred
        height = tf.nn.relu(tf.minimum(true[..., 2], pred[..., 2]) - tf.maximum(true[..., 0], pred[..., 0]))
        width = tf.nn.relu(tf.minimum(true[..., 3], pred[..., 3]) - tf.maximum(true[..., 1], pred[..., 1]))
        inter = height * width

        def area(box):
            return tf.nn.relu(box[..., 2] - box[..., 0]) * tf.nn.relu(box[..., 3] - box[..., 1])

        iou = inter / (area(true) + area(pred) - inter + 1e-7)
        squared = tf.reduce_mean(tf.square(tf.cast(y_true, y_pred.dtype) - y_pred), axis=-1)
        return squared + self.iou_weight * (1.0 - iou)

    def get_config(self):
        return dict(super().get_config(), mean=self.mean, spread=self.spread, iou_weight=self.iou_weight)
