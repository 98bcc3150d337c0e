"""Result tables (CSV, JSON, Markdown, the paper's numbers beside ours) and figures."""

import csv
import io
import os
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nengo_hybrid.atomic import replacing, save_array, write_json, write_text  # noqa: E402, F401
from nengo_hybrid.history import START_SCORES, curve  # noqa: E402


def save_figure(fig, path):
    """Save a matplotlib figure as PNG atomically and close it."""
    with replacing(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def cpu():
    """The CPU a result was measured on: model name (as ``lscpu`` prints it), cores, whether
    it has AVX-512 VNNI (without it TensorFlow 2.12 leaves oneDNN's kernels off unless
    ``TF_ENABLE_ONEDNN_OPTS=1``, which this package sets) and that setting, and the size of
    oneDNN's kernel cache if the user set it (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``; 0 is
    faster on some CPUs, see the README's Stack).  Machines of
    one type differ up to 3x in speed: a timing means little without this.  The family
    and model numbers tell apart CPUs that share a name ("AMD EPYC"); stepping, microcode
    and cache sizes are kept because numerics may follow them too (Eigen and oneDNN size
    their blocks, and so their order of summation, by the caches the CPU reports)."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first core's
    except OSError:  # not Linux
        pass
    return {"model": fields.get("model name", platform.processor() or "unknown"),
            "family": fields.get("cpu family"), "model_number": fields.get("model"),
            "stepping": fields.get("stepping"), "microcode": fields.get("microcode"), "caches": caches(),
            "cores": os.cpu_count(), "avx512_vnni": "avx512_vnni" in fields.get("flags", "").split(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
            "onednn_primitive_cache": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "default")}


def caches():
    """The first core's caches as Linux reports them, e.g. ``{"L1d": "32K", "L2": "512K",
    "L3": "32768K"}`` (empty where ``/sys`` does not say)."""
    sizes = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / name).read_text().strip() for name in ("level", "type", "size"))
        except OSError:
            continue
        sizes[f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")] = size
    return sizes


def describe_cpu(machine):
    """One line for a `cpu` record, as the benchmarks print it."""
    return (f"{machine['model']} (family {machine['family']}, model {machine['model_number']}), "
            f"{machine['cores']} cores, oneDNN {machine['onednn']}")


def write_probe(path, record):
    """Write a probe's ``record`` to ``path`` (atomically) with the CPU and versions it
    ran on; a probe calls it after every variant, so a killed one keeps what it measured."""
    record.update(cpu=cpu(), versions=versions())
    write_json(path, record)


def versions():
    """Versions of the packages a result depends on, and the CPU it ran on."""
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
        "cpu": cpu(),
    }


def format_value(value, digits=4):
    """A table cell: 4 decimals, 3 significant digits for the very large and small, – for None."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 1e5 or (value != 0 and abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


def compare_with_floor_and_paper(records, floor, gains, paper, paper_key, compared,
                                 paper_rates=None):
    """Add to every record its gain over the floor row and the paper's numbers beside
    ours (in place; returns ``records``).

    Parameters
    ----------
    records : list of dict
        One per model (``record["model"]``), the floor's among them.
    floor : str
        The floor row's model name: what a model that ignores its input scores.
    gains : dict
        ``{metric: column}``: ``record[column] = record[metric] - floor[metric]``.
    paper : dict
        ``{model: value}``, the paper's number for each model it reports (a model
        not in it gets None).
    paper_key : str
        The column the paper's number goes in (e.g. ``"paper_dice"``).
    compared : str
        Our metric that the paper's number is comparable with: ``diff_vs_paper =
        record[compared] - paper[model]`` (None where the paper has no number).
    paper_rates : dict, optional
        ``{model: Hz}``, the paper's firing rates (``paper_firing_rate_hz``).
    """
    floor_record = next(r for r in records if r["model"] == floor)
    for record in records:
        for metric, column in gains.items():
            record[column] = record[metric] - floor_record[metric]
        theirs = paper.get(record["model"])
        record[paper_key] = theirs
        record["diff_vs_paper"] = None if theirs is None else record[compared] - theirs
        if paper_rates is not None:
            record["paper_firing_rate_hz"] = paper_rates.get(record["model"])
    return records


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

    write_text(out_dir / f"{name}.md", markdown_table(records, columns) + "\n\n" + caption.strip() + "\n")


def markdown_table(records, columns):
    """``records`` as a Markdown table of ``columns`` ((key, header) pairs)."""
    lines = ["| " + " | ".join(header for _, header in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(format_value(record.get(key)) for key, _ in columns) + " |" for record in records]
    return "\n".join(lines)


def firing_rate_bars(rates_by_model, path, title, thresholds=None):
    """Bars of each layer's average firing rate, one group per layer, one bar per model;
    with ``thresholds`` ({layer: v}, e.g. balanced ones) each layer's threshold is
    written under its name (the second paper's Figure 4)."""
    models = list(rates_by_model)
    layers = list(next(iter(rates_by_model.values()))["layers"])
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * (len(layers) + 1)), 3.5))
    width = 0.8 / len(models)
    for k, model in enumerate(models):
        rates = rates_by_model[model]
        values = [rates["layers"][name] for name in layers] + [rates["network"]]
        ax.bar(np.arange(len(layers) + 1) + (k - (len(models) - 1) / 2) * width, values, width, label=model)
    names = [f"{name}\nv={thresholds[name]:.3g}" if thresholds and name in thresholds else name
             for name in layers]
    ax.set_xticks(np.arange(len(layers) + 1), names + ["network"], rotation=30,
                  fontsize=8 if thresholds else None)
    ax.set(ylabel="average firing rate (Hz)", title=title)
    ax.legend()
    save_figure(fig, path)


CURVE_LABELS = {"loss": "total loss (task + rate regularisation)",
                "val_loss": "validation total loss",
                "output_loss": "task loss (output)",
                "val_output_loss": "validation task loss",
                "val_output_dice_error": "validation 1 - 2D Dice (early stopping)",
                "val_output_dice_error_on_target": "validation (1 - 2D Dice on target) x share of "
                                                   "slices on target (early stopping)"}


def training_curves(histories, path):
    """Loss per epoch of each training stage (training and validation).

    A validation curve whose history holds the starting weights' value
    (`nengo_hybrid.history`) starts at epoch 0 with it, marked: for fine-tuning, the converted network's, which
    an epoch must beat to be kept."""
    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.2), squeeze=False)
    for ax, (stage, history) in zip(axes[0], histories.items()):
        for key, values in history.items():
            if history.get(f"{key[:-4]}output_loss" if key.endswith("loss") else None) == values:
                continue  # a total with nothing but the task loss in it: drawn once
            if key in CURVE_LABELS:
                # the watched validation Dice error (no loss) dashed beside the losses
                style = "--" if "dice_error" in key else "-"
                epochs, values = curve(history, key)
                line, = ax.plot(epochs, values, style, label=CURVE_LABELS[key])
                if epochs[0] == 0:
                    ax.plot(0, values[0], "*", ms=10, color=line.get_color())
        if history.get(START_SCORES):
            ax.plot([], [], "*", color="grey", label="epoch 0: the starting weights")
        ax.set(xlabel="epoch", ylabel="loss", title=stage, yscale="log")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    save_figure(fig, path)


def metric_vs_timesteps(curves, path, metric, floor=None, title="", ann=None):
    """A metric against the number of inference timesteps, one line per model, with
    the ``floor`` (a model that ignores its input) and the ``ann`` they were converted
    from as horizontal lines: how far each spiking model is from either.  ``ann`` is
    one value, or ``{label: value}`` for curves converted from several ANNs."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for model, (steps, values) in curves.items():
        ax.plot(steps, values, "o-", label=model)
    anns = ann if isinstance(ann, dict) else {} if ann is None else {"ANN (rate neurons)": ann}
    for (label, value), style in zip(anns.items(), [":", "-.", (0, (1, 3)), (0, (5, 2, 1, 2))] * 4):
        ax.axhline(value, color="black", ls=style, label=label)
    if floor is not None:
        ax.axhline(floor, color="grey", ls="--", label="floor (ignores the input)")
    ax.set(xlabel="inference timesteps", ylabel=metric, xscale="log", title=title)
    ax.legend()
    save_figure(fig, path)


def curves_and_numbers(curves, path, metric, key, floor=None, ann=None, title="", **extra):
    """`metric_vs_timesteps` at ``path`` (a .png) and its numbers beside it (.json, for
    a reader who wants more than the picture): ``floor``, ``ann``, ``extra`` and
    ``models``: ``{model: {"timesteps": [...], key: [...]}}``."""
    metric_vs_timesteps(curves, path, metric, floor=floor, title=title, ann=ann)
    write_json(Path(path).with_suffix(".json"), {
        "floor": floor, "ann": ann, **extra,
        "models": {name: {"timesteps": list(steps), key: list(values)} for name, (steps, values) in curves.items()}})


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


def config_from_json(cls, data):
    """The frozen configuration dataclass ``cls`` rebuilt from the dict a run wrote as
    ``config.json`` (`dataclasses.asdict`): fields that are dataclasses themselves (e.g.
    `TrainSettings`, `SpikingSettings` and the `Balancing` inside it, optional or not)
    rebuilt from their dicts, JSON lists back to tuples."""
    import dataclasses
    import typing

    values = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue  # a run written before the field existed gets its default
        value = data[field.name]
        # Optional[X] is Union[X, None]: X is the dataclass to rebuild
        candidates = [t for t in (typing.get_args(field.type) or (field.type,)) if t is not type(None)]
        nested = next((t for t in candidates if dataclasses.is_dataclass(t)), None)
        if nested is not None and isinstance(value, dict):
            value = config_from_json(nested, value)
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        values[field.name] = value
    return cls(**values)


def activity_columns(model, rates, name, n_steps, input_rate_hz=None):
    """A table row's activity and cost columns for model ``name``.

    ``rates`` maps the spiking models' names to their measured rates
    (`ConvertedNetwork.firing_rates`); a model not in it (the ANN) has no rate and no
    synaptic operations.  Every row gets the ANN's MACs and, when any spiking model was
    measured (for its neuron count), what the ANN costs on a GPU.  ``input_rate_hz``
    is the input's rate for `metrics.synaptic_operations` (None: real values every
    timestep; Poisson-coded inputs: `metrics.input_spike_rate_hz`).
    """
    from nengo_hybrid import metrics

    ops = metrics.synaptic_operations(model, rates[name]["layers"] if name in rates else {}, n_steps,
                                      input_rate_hz=input_rate_hz)
    columns = {"firing_rate_hz": None, "synaptic_ops": None, "ann_macs": ops["ann_macs"]}
    n_neurons = sum(next(iter(rates.values()))["neurons"].values()) if rates else None
    if name in rates:
        energy = metrics.energy_per_inference(ops["synaptic_ops"], ops["ann_macs"], n_neurons, n_steps)
        columns.update(firing_rate_hz=rates[name]["network"], synaptic_ops=ops["synaptic_ops"],
                       energy_j_loihi=energy["snn_loihi_j"], layer_rates_hz=rates[name]["layers"])
    if n_neurons is not None:
        columns["energy_j_ann_gpu"] = metrics.energy_per_inference(0, ops["ann_macs"], n_neurons, 1)["ann_gpu_j"]
    return columns


def mask_grid(images, truths, probabilities, path, scores=None, row_titles=None):
    """Segmentations side by side, one row per slice: the input, the ground truth and
    each model's probability mask (the paper's Figure 3).

    ``images`` and ``truths`` are ``(n, H, W)`` or ``(n, H, W, 1)`` (``truths`` None
    without labels: no ground-truth column); ``probabilities`` maps a model name to its
    ``(n, H, W[, 1])`` masks in [0, 1]; ``scores`` (optional) maps a model name to each
    slice's Dice, shown under its mask; ``row_titles`` names each row.
    """
    def flat(a):
        a = np.asarray(a)
        return a[..., 0] if a.ndim == 4 else a

    columns = [("input", flat(images), "gray")]
    if truths is not None:
        columns.append(("ground truth", flat(truths), "magma"))
    columns += [(model, flat(p), "magma") for model, p in probabilities.items()]
    n = len(columns[0][1])
    fig, axes = plt.subplots(n, len(columns), figsize=(1.9 * len(columns), 2.4 * n), squeeze=False)
    shown = None
    for row in range(n):
        for col, (name, values, cmap) in enumerate(columns):
            ax = axes[row, col]
            limits = {} if name == "input" else {"vmin": 0.0, "vmax": 1.0}
            image = ax.imshow(values[row], cmap=cmap, **limits)
            if name != "input":
                shown = image
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if scores is not None and name in scores:
                ax.set_xlabel(f"Dice {scores[name][row]:.2f}", fontsize=8)
            if col == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[row], fontsize=7)
    if shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.6, label="probability")
    save_figure(fig, path)


def write_benchmark(path, profile, timings, budget_s):
    """Print seconds per stage (one row each) against a time budget and write them,
    with the machine and versions, as JSON to ``path``; returns the record."""
    print()
    for stage, seconds in timings.items():
        print(f"{stage:>18}: {seconds:8.1f} s")
    print(f"{'total / budget':>18}: {timings['total_s'] / budget_s:8.2f}")
    machine = cpu()
    print(f"{'CPU':>18}: {describe_cpu(machine)}")
    record = {"profile": profile, "timings_s": timings, "budget_s": budget_s,
              "fraction_of_budget": timings["total_s"] / budget_s,
              "cpu": machine, "machine": platform.platform(), "versions": versions()}
    write_json(path, record)
    return record
