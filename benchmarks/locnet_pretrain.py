"""Does LocNet's ANN localise better when its layers first learn to tell Caltech-101's ten
categories apart?  (Issue 12 §1: a lever outside the issue's list.)

    python benchmarks/locnet_pretrain.py [--data DIR] [--seed S] [--epochs E]
        --variants none conv trunk

For each variant the paper profile's LocNet (SoftLIF, seed S) is built, then

- ``none``: trained as `make locnet` trains it (the baseline, in the same process);
- ``conv``: its six convolutions first trained in tf.keras as a ten-way classifier
  (global average pooling and a linear layer on top of ``pool3``) for E epochs;
- ``trunk``: every layer but the box layer first trained as a ten-way classifier (a
  linear layer on top of ``dense3``),

and then the ANN stage of the paper profile runs from those weights (the box layer,
and for ``conv`` the dense layers, at their fresh initialisation).  The classifier
sees the nine other categories of the data folder and the airplanes the ANN stage
trains on — never its validation airplanes, never the test split — mirrored at random.
Each variant is scored on the validation airplanes as ``benchmarks/locnet_ann.py``
scores them (mean IoU, gain over the floor with its paired standard error, the
difference from the first variant).  Writes ``results/benchmarks/locnet_pretrain.json``.
"""

import nengo_hybrid  # noqa: F401, I001  (first: it quiets TensorFlow)

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import locnet  # noqa: E402
from locnet_ann import ValidationAirplanes, train_ann  # noqa: E402

from data_prep import caltech101  # noqa: E402
from nengo_hybrid import localisation, report  # noqa: E402
from nengo_hybrid.paths import add_data_argument, data_dir  # noqa: E402

OTHER = tuple(c for c in caltech101.CLASSIFICATION_CATEGORIES if c != "airplanes")


def other_images(root, config):
    """The nine other categories' images as LocNet reads its airplanes, with labels 1-9."""
    images, labels = [], []
    for label, name in enumerate(OTHER, start=1):
        for path in caltech101.category_images(root, name):
            images.append(caltech101.load_image(path, config.image_size, config.grey)[0])
            labels.append(label)
    return np.stack(images) - np.float32(config.pixel_offset), np.array(labels, dtype=np.int64)


def pretrain(model, variant, x, labels, epochs, seed):
    """Train ``model``'s layers below the box layer (``conv``: the convolutions only) as
    a ten-way classifier; the weights stay in ``model``'s layers."""
    if variant == "conv":
        top = tf.keras.layers.GlobalAveragePooling2D()(model.get_layer("pool3").output)
    else:
        top = model.get_layer("dense3").output
    logits = tf.keras.layers.Dense(10, name="category")(top)
    classifier = tf.keras.Model(model.input, logits)
    classifier.compile(tf.keras.optimizers.Adam(1e-3),
                       tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    rng = np.random.RandomState(seed)
    held = rng.rand(len(x)) < 0.1  # a check that it learns, not a selection
    data = (tf.data.Dataset.from_tensor_slices((x[~held], labels[~held]))
            .shuffle(len(x), seed=seed).batch(32)
            .map(lambda a, b: (tf.image.random_flip_left_right(a, seed=seed), b)))
    history = classifier.fit(data, epochs=epochs, validation_data=(x[held], labels[held]), verbose=2)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--variants", nargs="+", default=["none", "conv", "trunk"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--work", default="results/benchmarks/locnet_pretrain")
    parser.add_argument("--out", default="results/benchmarks/locnet_pretrain.json")
    args = parser.parse_args(argv)
    root = data_dir(args.data) / "caltech101"
    config = replace(locnet.PROFILES["paper"], seed=args.seed)
    airplanes = ValidationAirplanes(config, root)
    x_other, other_labels = other_images(root, config)
    x_classes = np.concatenate([airplanes.x_train[airplanes.train_idx], x_other])
    class_labels = np.concatenate([np.zeros(len(airplanes.train_idx), np.int64), other_labels])
    print(f"classifier: {len(x_classes)} images ({len(airplanes.train_idx)} training airplanes, "
          f"{len(x_other)} others)")
    record = {"seed": args.seed, "epochs": args.epochs, "variants": []}
    for variant in args.variants:
        tf.keras.utils.set_random_seed(args.seed)
        targets, model, augment, loss = localisation.training_setup(
            config, airplanes.x_train, airplanes.y_train, locnet.make_model)
        start = time.time()
        history = None if variant == "none" else pretrain(model, variant, x_classes, class_labels,
                                                          args.epochs, args.seed)
        pretrain_s = time.time() - start
        result, boxes = train_ann(config, model, targets, augment, loss, airplanes, Path(args.work) / variant)
        airplanes.score(record, variant, boxes, pretraining=history, pretrain_s=pretrain_s,
                        epochs=result["epochs"], best_epoch=result["best_epoch"], seconds=time.time() - start)
        report.write_probe(args.out, record)
    print(f"\n{report.describe_cpu(record['cpu'])}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
