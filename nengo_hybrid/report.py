"""Result tables (CSV, JSON, Markdown, the paper's numbers beside ours) and figures."""

import csv
import io
import os
import platform
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nengo_hybrid.stages import write_json  # noqa: E402


def write_text(path, text):
    """Write text atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_figure(fig, path):
    """Save a matplotlib figure as PNG atomically and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def versions():
    """Versions of the packages a result depends on."""
    import keras_spiking
    import nengo
    import nengo_dl
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "nengo": nengo.__version__,
        "nengo_dl": nengo_dl.__version__,
        "keras_spiking": keras_spiking.__version__,
        "numpy": np.__version__,
        "machine": platform.platform(),
    }


def _fmt(value, digits=4):
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 1e5 or (value != 0 and abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


def write_table(out_dir, name, records, columns, caption):
    """Write ``records`` (a list of dicts) as ``name``.json, .csv and .md.

    ``columns`` lists (key, header) pairs for the CSV and Markdown tables; the JSON
    keeps every key of every record.  ``caption`` goes under the Markdown table.
    """
    out_dir = Path(out_dir)
    write_json(out_dir / f"{name}.json", records)

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([key for key, _ in columns])
    for record in records:
        writer.writerow(["" if record.get(key) is None else record.get(key) for key, _ in columns])
    write_text(out_dir / f"{name}.csv", buffer.getvalue())

    lines = ["| " + " | ".join(header for _, header in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for record in records:
        lines.append("| " + " | ".join(_fmt(record.get(key)) for key, _ in columns) + " |")
    write_text(out_dir / f"{name}.md", "\n".join(lines) + "\n\n" + caption.strip() + "\n")


def firing_rate_bars(rates_by_model, path, title):
    """Bars of each layer's average firing rate, one group per layer, one bar per model."""
    models = list(rates_by_model)
    layers = list(next(iter(rates_by_model.values()))["layers"])
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * (len(layers) + 1)), 3.5))
    width = 0.8 / len(models)
    for k, model in enumerate(models):
        rates = rates_by_model[model]
        values = [rates["layers"][name] for name in layers] + [rates["network"]]
        ax.bar(np.arange(len(layers) + 1) + (k - (len(models) - 1) / 2) * width, values, width, label=model)
    ax.set_xticks(np.arange(len(layers) + 1), layers + ["network"], rotation=30)
    ax.set(ylabel="average firing rate (Hz)", title=title)
    ax.legend()
    save_figure(fig, path)


def training_curves(histories, path):
    """Loss per epoch of each training stage (training and validation)."""
    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.2), squeeze=False)
    for ax, (stage, history) in zip(axes[0], histories.items()):
        for key, values in history.items():
            if key in ("loss", "val_loss", "output_loss", "val_output_loss"):
                label = {"loss": "total loss (task + rate regularisation)",
                         "val_loss": "validation total loss",
                         "output_loss": "task loss (output)",
                         "val_output_loss": "validation task loss"}[key]
                ax.plot(np.arange(1, len(values) + 1), values, label=label)
        ax.set(xlabel="epoch", ylabel="loss", title=stage, yscale="log")
        ax.legend(fontsize=8)
    save_figure(fig, path)


def metric_vs_timesteps(curves, path, metric, floor=None, title=""):
    """A metric against the number of inference timesteps, one line per model."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for model, (steps, values) in curves.items():
        ax.plot(steps, values, "o-", label=model)
    if floor is not None:
        ax.axhline(floor, color="grey", ls="--", label="floor (ignores the input)")
    ax.set(xlabel="inference timesteps", ylabel=metric, xscale="log", title=title)
    ax.legend()
    save_figure(fig, path)


def box_grid(images, true_boxes, predicted, path, ious=None, columns=4):
    """Test images with the ground-truth box and each model's box drawn on them.

    ``predicted`` maps a model name to boxes ``(top, left, bottom, right)`` in [0, 1];
    ``ious`` (optional) maps a model name to per-image IoU, shown in the titles.
    """
    from matplotlib.patches import Rectangle

    n = len(images)
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    colours = ["tab:orange", "tab:red", "tab:blue", "tab:purple", "tab:brown"]
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        image = images[i]
        height, width = image.shape[:2]
        ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
        boxes = {"truth": true_boxes[i], **{m: b[i] for m, b in predicted.items()}}
        for k, (model, box) in enumerate(boxes.items()):
            top, left, bottom, right = np.asarray(box) * [height, width, height, width]
            colour = "lime" if model == "truth" else colours[(k - 1) % len(colours)]
            ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, lw=1.5,
                                   ec=colour, ls="-" if model == "truth" else "--",
                                   label=model if i == 0 else None))
        if ious:
            ax.set_title(" ".join(f"{m[:4]} {v[i]:.2f}" for m, v in ious.items()), fontsize=7)
    fig.legend(loc="lower center", ncol=len(predicted) + 1)
    save_figure(fig, path)
