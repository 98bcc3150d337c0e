r"""Binary and ternary input spikes: the two input codings the second paper compares, and
the comparison of one metric between them.

Poisson coding (`nengo_hybrid.encoding.poisson`) draws a spike of sign :math:`\mathrm{sign}(x)`
with probability :math:`|x|` at every timestep.  Inputs scaled to :math:`[0, 1]` give
**binary** spikes :math:`\{0, 1\}`; inputs scaled to :math:`[-1, 1]` (the paper's
zero-mean normalisation) give **ternary** spikes :math:`\{-1, 0, 1\}`.  Each coding names
an ``intensity`` of the data readers: ``"unit"`` and ``"zero_mean"``.
"""

import numpy as np

from nengo_hybrid import report

CODINGS = ("binary", "ternary")
INTENSITY = {"binary": "unit", "ternary": "zero_mean"}


def coding_of(intensity):
    """The coding (``"binary"`` or ``"ternary"``) of a reader's ``intensity``."""
    for coding, name in INTENSITY.items():
        if name == intensity:
            return coding
    raise ValueError(f"intensity {intensity!r}: expected one of {sorted(INTENSITY.values())}")


def scale(images, coding):
    r"""uint8 ``images`` as float32 in the coding's range:

    .. math:: x_{binary} = \frac{v}{255} \in [0, 1], \qquad
              x_{ternary} = \frac{2v}{255} - 1 \in [-1, 1]

    for pixel values :math:`v \in \{0, \dots, 255\}`.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 pixel values, got {images.dtype}")
    unit = images.astype(np.float32) / 255.0
    if coding == "binary":
        return unit
    if coding == "ternary":
        return 2.0 * unit - 1.0
    raise ValueError(f"coding {coding!r}: expected one of {CODINGS}")


def differences(values, metric, spread_over):
    r"""Ternary minus binary, model by model, with the spread of the paired differences.

    Parameters
    ----------
    values : dict
        ``{coding: {model: sequence}}``: the metric per unit (seed, fold or subject),
        the units in the same order for both codings (paired).
    metric : str
        The metric's name, for the records.
    spread_over : str
        What the units are (``"seeds"``, ``"folds"``, ``"test subjects"``).

    Returns
    -------
    list of dict
        Per model: ``ternary_minus_binary`` :math:`\bar d`, the mean of the paired
        differences :math:`d_k`; ``spread``, their sample standard deviation
        (``ddof=1``; None for one unit); ``n``; and ``exceeds_spread``,
        :math:`|\bar d| > s` (None without a spread).
    """
    records = []
    for model in values["ternary"]:
        ternary = np.asarray(values["ternary"][model], dtype=np.float64)
        binary = np.asarray(values["binary"][model], dtype=np.float64)
        if ternary.shape != binary.shape:
            raise ValueError(f"{model}: {len(ternary)} ternary values but {len(binary)} binary ones "
                             f"to pair")
        paired = ternary - binary
        spread = float(paired.std(ddof=1)) if len(paired) > 1 else None
        mean = float(paired.mean())
        records.append({"model": model, "metric": metric, "ternary_minus_binary": mean,
                        "spread": spread, "spread_over": spread_over, "n": int(len(paired)),
                        "exceeds_spread": None if spread is None else bool(abs(mean) > spread)})
    return records


def describe(differences_records):
    """The differences in words, for a caption."""
    parts = []
    for d in differences_records:
        if d["spread"] is None:
            verdict = "one unit, no spread"
        else:
            verdict = "larger than" if d["exceeds_spread"] else "within"
            verdict = f"± {d['spread']:.3f} over {d['n']} {d['spread_over']}: {verdict} the spread"
        parts.append(f"{d['model']} {d['ternary_minus_binary']:+.3f} ({verdict})")
    return "; ".join(parts)


def comparison_figure(path, records, metric, label, floor=None, title=""):
    """Bars of ``metric`` (mean ± its ``_std``) per model, binary beside ternary.
    Returns the heights drawn, ``{coding: {model: height}}``."""
    import matplotlib.pyplot as plt

    models = [m for m in dict.fromkeys(r["model"] for r in records if r.get("coding") in CODINGS)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.38
    drawn = {}
    for k, coding in enumerate(CODINGS):
        rows = {r["model"]: r for r in records if r.get("coding") == coding}
        x = np.arange(len(models)) + (k - 0.5) * width
        bars = ax.bar(x, [rows[m][metric] for m in models], width,
                      yerr=[rows[m].get(f"{metric}_std") or 0 for m in models], capsize=3,
                      label=f"{coding} ({'[-1, 1]' if coding == 'ternary' else '[0, 1]'} inputs)")
        drawn[coding] = {m: bar.get_height() for m, bar in zip(models, bars)}
    if floor is not None:
        ax.axhline(floor, color="grey", ls="--", label="floor (ignores the input)")
    ax.set_xticks(np.arange(len(models)), models)
    ax.set(ylabel=label, title=title)
    ax.legend(fontsize=8)
    report.save_figure(fig, path)
    return drawn
