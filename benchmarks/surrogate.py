"""Time and memory of one surrogate-gradient training step through time (BPTT).

What is compared, on one small convolutional network (``--network small``, the default:
input 56x40x1, Conv2D(16, 3, same, ReLU) -> AveragePooling2D(2) -> Conv2D(32, 3, same,
ReLU) -> Conv2D(1, 1, linear), no biases; minibatch 8) at T = 25, 50, 100, 200 timesteps,
or on the paper's U-Net (``--network unet``, below):

``nengo_if``  the package's integrate-and-fire family: ``nh.convert(model, "if")``,
              each layer's ``IntegrateAndFire(threshold=v, amplitude=v)``, the
              unrolled NengoDL simulator (``converted.simulator(8, n_steps=T)``),
              trained through ``sim.keras_model`` in a ``tf.function`` step.
``tf_loop``   the same equations written by hand as an unrolled TensorFlow loop
              (``tf.nn.conv2d`` / ``avg_pool2d`` per timestep): the floor that
              NengoDL adds its overhead to.
``snntorch``  the outside peer: the same network in snnTorch
              (``snntorch.Leaky(beta=1, reset_mechanism="subtract")``, the same
              surrogate as a custom autograd function), PyTorch on the same CPU with
              ``torch.set_num_threads(2)`` (``benchmarks/surrogate_snntorch.py``).

Equations (dt = 0.001, NengoDL units), per spiking layer::

    J_t = W * s_t(previous layer);  u' = u + J dt;  o = H(u' - v);
    u = u' - v stop_gradient(o);    s_t = o A / dt     (A = v here)
    surrogate  d o / d u' = (gamma / v) max(0, 1 - |u' - v| / v),  gamma = 0.3

The membrane starts at 0.  The output layer does not spike; the loss is the MSE of its
current averaged over the T steps against a fixed target.  Each layer's threshold v is
set from the equivalent ReLU network so that its neurons spike on about ``--rate`` of
the timesteps (with A = v the mean output of an IF layer is the ReLU activation).  All
three implementations get identical weights, thresholds, inputs (a fixed image
repeated every timestep, or with ``--encoding poisson`` one fixed spike train) and
targets through one ``.npz`` file, and their forward passes are checked against each
other (loss, time-averaged output, every neuron's spike count) before the times count.

Every (implementation, T) runs in a fresh subprocess: a training step (forward through
T steps, backward through time, Adam) is warmed up once (tracing) and then timed
``--repeats`` times (best and median).  Peak memory is the process's peak resident set
(VmHWM, reset through /proc/self/clear_refs once the model is built) minus the resident
set of the built model, over the warm-up and the timed steps; a line fitted to it over
T gives the bytes each timestep costs.  Writes ``results/benchmarks/surrogate.json``.

The peer needs PyTorch, whose package pulls gigabytes of CUDA libraries from the index,
so it lives in a benchmark-only virtual environment that CI never builds::

    make bench-env              # python3.11 -m venv .venv-bench; pip install torch==2.13.0 snntorch numpy
    .venv/bin/python benchmarks/surrogate.py [--steps 25 50 100 200] [--repeats 5]

Without ``.venv-bench/bin/python`` the peer is reported as not installed.

The U-Net (``--network unet``) is the paper's segmentation network,
``nengo_hybrid.models.unet.build_unet(input_shape=(56, 40, 1), activation="relu",
filters=FILTERS, dropout=0.0)`` with its own seeded (He uniform) initial weights:
``--filters 16 32 64`` (the default, the paper profile's) or ``8 16 32`` (the cpu
profile's); no biases, 2x2 average pooling, stride-2 2x2 ``Conv2DTranspose`` upsampling
(ReLU, so spiking too), skip connections by ``Concatenate`` and a linear 1x1 output.
Every ReLU layer (convolutions and transposed convolutions) becomes an IF layer with
its own threshold, set as above from a Keras model whose outputs are the ReLU network's
activations of every such layer (so through the concatenations).  Compared:

``nengo_if``  as for ``small``: ``nh.convert(model, "if")``, the same per-layer
              ``IntegrateAndFire(threshold=v, amplitude=v)``, the unrolled simulator.
``tf_loop``   the same IF equations by hand, walking the Keras graph each timestep
              (``tf.nn.conv2d`` / ``avg_pool2d`` / ``conv2d_transpose`` with the Keras
              kernel layout (kh, kw, out, in) and an explicit output shape / ``concat``).
``snntorch``  not implemented for the U-Net (the peer script runs sequential networks
              only); reported as such, not as an error.

The forward passes of ``nengo_if`` and ``tf_loop`` are checked against each other as
for ``small``; per T the table gives ms per training step (best / median) of both,
their ratio and the peak memory, and the line fitted over T the MiB (bytes) each
timestep costs.  Writes ``results/benchmarks/surrogate_unet.json``::

    .venv/bin/python benchmarks/surrogate.py --network unet --steps 10 20 40 --batch 8
"""

import nengo_hybrid as nh  # noqa: I001  (first: it quiets TensorFlow)

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from nengo_hybrid.models.unet import build_unet
from nengo_hybrid.report import cpu, describe_cpu, versions
from nengo_hybrid.atomic import write_json
from step_timing import timed_run  # noqa: E402  (beside this script; shared with the peer)

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
PEER_SCRIPT = ROOT / "benchmarks" / "surrogate_snntorch.py"
IMPLS = ("tf_loop", "nengo_if", "snntorch")
DT = 0.001
GAMMA = 0.3
MIB = 2 ** 20

# layers: ("conv", filters, kernel, "relu" (spiking) or "linear"), ("pool", size);
# "model": "unet" is `build_unet` with the spec's "filters" (set from --filters)
NETWORKS = {
    "small": {
        "input_shape": (56, 40, 1),
        "layers": [("conv", 16, 3, "relu"), ("pool", 2), ("conv", 32, 3, "relu"),
                   ("conv", 1, 1, "linear")],
    },
    "unet": {"model": "unet", "input_shape": (56, 40, 1)},
}
UNET_FILTERS = (16, 32, 64)  # the paper profile's; the cpu profile's is 8 16 32

# agreement demanded of the forward passes: relative difference of the initial loss,
# and the fraction of neurons whose spike count differs.  Rounding differs between the
# implementations (convolution algorithms, the order of sums), and a membrane that lands
# within rounding of its threshold flips a spike; one flipped spike then moves one
# output pixel by A w / T, so the largest output difference is reported, not demanded.
TOL_NENGO = 1e-4
TOL_PEER = 1e-4


# --------------------------------------------------------------------- the problem
def keras_model(spec):
    if spec.get("model") == "unet":
        return build_unet(input_shape=tuple(spec["input_shape"]), activation="relu",
                          filters=tuple(spec["filters"]), dropout=0.0)
    inp = tf.keras.Input(spec["input_shape"])
    x = inp
    n_conv = n_pool = 0
    for layer in spec["layers"]:
        if layer[0] == "pool":
            n_pool += 1
            x = tf.keras.layers.AveragePooling2D(layer[1], name=f"pool{n_pool}")(x)
        else:
            n_conv += 1
            _, filters, kernel, activation = layer
            x = tf.keras.layers.Conv2D(filters, kernel, padding="same", activation=activation,
                                       use_bias=False, name=f"conv{n_conv}")(x)
    return tf.keras.Model(inp, x)


def conv_names(model):
    """Every layer with a kernel (``Conv2DTranspose`` is a ``Conv2D`` too), in model order."""
    return [layer.name for layer in model.layers if isinstance(layer, tf.keras.layers.Conv2D)]


def spiking_names(model):
    return [layer.name for layer in model.layers
            if isinstance(layer, tf.keras.layers.Conv2D)
            and layer.activation is not tf.keras.activations.linear]


def make_problem(spec, batch, max_steps, rate, encoding, seed):
    """Weights, thresholds, inputs and target shared by every implementation."""
    rng = np.random.default_rng(seed)
    model = keras_model(spec)
    # the sequential networks get Glorot uniform weights from the seed; the U-Net keeps
    # its own seeded initialisers
    for layer in model.layers if "layers" in spec else []:
        if isinstance(layer, tf.keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            limit = np.sqrt(6 / (kh * kw * (cin + cout)))  # Glorot uniform
            layer.set_weights([rng.uniform(-limit, limit, (kh, kw, cin, cout)).astype(np.float32)])
    image = rng.uniform(0, 1, (batch,) + tuple(spec["input_shape"])).astype(np.float32)
    if encoding == "repeat":
        x_seq = np.repeat(image[:, None], max_steps, axis=1)
    else:
        x_seq = (rng.uniform(size=(batch, max_steps) + image.shape[1:]) < image[:, None]).astype(np.float32)
    # the ReLU network's activations: with A = v an IF layer's mean output is the ReLU
    # of its mean input, so v = mean activation x dt / rate gives about `rate` spikes
    # per neuron and timestep.  A Keras model with every spiking layer's output as an
    # output, so any graph (the U-Net's concatenations) is covered
    names = spiking_names(model)
    probe = tf.keras.Model(model.input, [model.get_layer(n).output for n in names] + [model.output])
    acts = probe.predict(image, verbose=0)
    thresholds = np.array([float(a.mean()) * DT / rate for a in acts[:-1]], dtype=np.float32)
    if not (thresholds > 0).all():
        silent = [n for n, v in zip(names, thresholds) if not v > 0]
        raise ValueError(f"layers {silent} are silent in the ReLU network: no threshold")
    out = acts[-1]
    target = (rng.standard_normal(out.shape) * out.std()).astype(np.float32)
    kernels = [model.get_layer(n).kernel.numpy() for n in conv_names(model)]
    return model, kernels, thresholds, x_seq, target


def write_npz(path, spec, kernels, thresholds, x_seq, target, lr):
    arrays = {f"kernel{i}": k for i, k in enumerate(kernels)}
    np.savez(path, spec=json.dumps(spec), thresholds=thresholds, amplitudes=thresholds,
             x_seq=x_seq, target=target, dt=DT, gamma=GAMMA, lr=lr, **arrays)


def load_npz(path):
    with np.load(path) as stored:
        data = {key: stored[key] for key in stored.files}
    spec = json.loads(str(data["spec"]))
    kernels = [data[f"kernel{i}"] for i in range(sum(1 for key in data if key.startswith("kernel")))]
    return spec, kernels, data


def stored_bytes_per_step(model, batch):
    """float32 values one timestep must keep for the backward pass at least: the input
    of every convolution, transposed ones included (its kernel's gradient), and every
    spiking layer's membrane (the surrogate's argument)."""
    spiking = set(spiking_names(model))
    total = 0
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.Conv2D):
            total += int(np.prod(layer.input_shape[1:]))  # the convolution's input
            if layer.name in spiking:
                total += int(np.prod(layer.output_shape[1:]))  # the membrane u'
    return 4 * batch * total


def layer_graph(model):
    """The model's layers in model (topological) order, each a dict: name, op ("input",
    "conv", "conv_transpose", "pool", "concat"), the names of its inputs, whether it
    spikes, and the op's parameters (``kernel``: index into `conv_names`)."""
    inbound = {c["name"]: [node[0] for node in c["inbound_nodes"][0]] if c["inbound_nodes"] else []
               for c in model.get_config()["layers"]}
    spiking = set(spiking_names(model))
    kernels = {name: i for i, name in enumerate(conv_names(model))}
    graph = []
    for layer in model.layers:
        node = {"name": layer.name, "inputs": inbound[layer.name], "spiking": layer.name in spiking}
        if isinstance(layer, tf.keras.layers.InputLayer):
            node["op"] = "input"
        elif isinstance(layer, tf.keras.layers.Conv2DTranspose):
            assert layer.dilation_rate == (1, 1) and layer.data_format == "channels_last"
            node.update(op="conv_transpose", kernel=kernels[layer.name], strides=layer.strides,
                        padding=layer.padding.upper(), output_shape=tuple(layer.output_shape[1:]))
        elif isinstance(layer, tf.keras.layers.Conv2D):
            assert layer.dilation_rate == (1, 1) and layer.data_format == "channels_last"
            node.update(op="conv", kernel=kernels[layer.name], strides=layer.strides,
                        padding=layer.padding.upper())
        elif isinstance(layer, tf.keras.layers.AveragePooling2D):
            node.update(op="pool", size=layer.pool_size, strides=layer.strides,
                        padding=layer.padding.upper())
        elif isinstance(layer, tf.keras.layers.Concatenate):
            node.update(op="concat", axis=layer.axis)
        else:
            raise NotImplementedError(f"layer {layer.name}: {type(layer).__name__}")
        if layer.name in spiking and node["op"] not in ("conv", "conv_transpose"):
            raise NotImplementedError(f"layer {layer.name}: spiking {node['op']}")
        graph.append(node)
    assert graph[-1]["name"] == model.output_names[0], "the output must be the last layer"
    return graph


# --------------------------------------------------------------------- TF loop
def make_spike(v, gamma):
    @tf.custom_gradient
    def spike(x):
        def grad(upstream):
            return upstream * (gamma / v) * tf.nn.relu(1 - tf.abs(x) / v)

        return tf.cast(x >= 0, x.dtype), grad

    return spike


def tf_forward(graph, kernels, x_seq, thresholds, amplitudes, n_steps, counts=False):
    """The unrolled loop over the layers of `layer_graph`: time-averaged output (and
    per-neuron spike counts of the spiking layers, in model order)."""
    spikes = [make_spike(float(v), GAMMA) for v in thresholds]
    state = [None] * len(thresholds)
    total = [None] * len(thresholds)
    batch = x_seq.shape[0]
    acc = None
    for t in range(n_steps):
        values = {}
        s = 0
        for node in graph:
            inputs = [values[name] for name in node["inputs"]]
            op = node["op"]
            if op == "input":
                h = x_seq[:, t]
            elif op == "pool":
                h = tf.nn.avg_pool2d(inputs[0], node["size"], node["strides"], node["padding"])
            elif op == "concat":
                h = tf.concat(inputs, axis=node["axis"])
            elif op == "conv":
                h = tf.nn.conv2d(inputs[0], kernels[node["kernel"]], node["strides"], node["padding"])
            else:  # Keras kernel (kh, kw, out, in): conv2d_transpose's own layout
                h = tf.nn.conv2d_transpose(inputs[0], kernels[node["kernel"]],
                                           (batch,) + node["output_shape"], node["strides"],
                                           node["padding"])
            if node["spiking"]:
                J = h
                u = J * DT if state[s] is None else state[s] + J * DT
                o = spikes[s](u - float(thresholds[s]))
                state[s] = u - float(thresholds[s]) * tf.stop_gradient(o)
                h = o * (float(amplitudes[s]) / DT)
                if counts:
                    total[s] = o if total[s] is None else total[s] + o
                s += 1
            values[node["name"]] = h
        acc = h if acc is None else acc + h  # the last layer: the output
    return acc / n_steps, total


def build_tf_loop(spec, kernels, data, n_steps):
    graph = layer_graph(keras_model(spec))
    x_seq = tf.constant(data["x_seq"][:, :n_steps])
    target = tf.constant(data["target"])
    thresholds, amplitudes = data["thresholds"], data["amplitudes"]
    variables = [tf.Variable(k) for k in kernels]
    opt = tf.keras.optimizers.Adam(float(data["lr"]))

    @tf.function
    def train_step(x_seq, target):
        with tf.GradientTape() as tape:
            out, _ = tf_forward(graph, variables, x_seq, thresholds, amplitudes, n_steps)
            loss = tf.reduce_mean(tf.square(out - target))
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return loss, out, tf.linalg.global_norm(grads)

    def step():
        loss, out, norm = train_step(x_seq, target)
        return loss.numpy(), out.numpy().reshape(len(out), -1), norm.numpy()

    def check():
        consts = [tf.constant(k) for k in kernels]
        _, counts = tf.function(lambda: tf_forward(graph, consts, x_seq, thresholds, amplitudes,
                                                   n_steps, counts=True))()
        return [c.numpy().reshape(len(c), -1) for c in counts]

    return step, check


# --------------------------------------------------------------------- NengoDL
def build_nengo(spec, kernels, data, n_steps):
    model = keras_model(spec)
    for name, kernel in zip(conv_names(model), kernels):
        model.get_layer(name).set_weights([kernel])
    names = spiking_names(model)
    thresholds, amplitudes = data["thresholds"], data["amplitudes"]
    batch = data["x_seq"].shape[0]

    def convert():
        converted = nh.convert(model, "if")
        assert list(converted.layer_probes) == names, (list(converted.layer_probes), names)
        for name, v, a in zip(names, thresholds, amplitudes):
            converted.layer_probes[name].target.ensemble.neuron_type = nh.IntegrateAndFire(
                threshold=float(v), amplitude=float(a), surrogate_scale=GAMMA)
        return converted

    def inputs(sim, converted):
        x = data["x_seq"][:, :n_steps]
        values = sim._generate_inputs({converted.input: x.reshape(x.shape[:2] + (-1,))})
        return {key: tf.constant(value) for key, value in values.items()}

    converted = convert()
    sim = converted.simulator(minibatch_size=batch, n_steps=n_steps)
    assert len(sim.model.probes) == 1  # the output probe only: output 0 of the model
    assert sim.dt == DT
    keras = sim.keras_model
    feed = inputs(sim, converted)
    target = tf.constant(data["target"].reshape(batch, -1))
    opt = tf.keras.optimizers.Adam(float(data["lr"]))

    @tf.function
    def train_step(feed, target):
        with tf.GradientTape() as tape:
            out = tf.reduce_mean(keras(feed, training=True)[0], axis=1)
            loss = tf.reduce_mean(tf.square(out - target))
        variables = keras.trainable_variables
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return loss, out, tf.linalg.global_norm(grads)

    def step():
        loss, out, norm = train_step(feed, target)
        return loss.numpy(), out.numpy(), norm.numpy()

    def check():
        # a second simulator (fresh initial weights) with a probe on every layer
        checked = convert()
        with checked.simulator(minibatch_size=batch, n_steps=n_steps, layer_probes=True) as probed:
            x = data["x_seq"][:, :n_steps]
            outputs = probed.predict_on_batch({checked.input: x.reshape(x.shape[:2] + (-1,))})
            return [np.rint(outputs[checked.layer_probes[n]].sum(axis=1) * DT / float(a))
                    for n, a in zip(names, amplitudes)]

    return step, check, sim


# --------------------------------------------------------------------- children
def run_child(args):
    spec, kernels, data = load_npz(args.npz)
    tf.random.set_seed(0)
    start = time.perf_counter()
    sim = None
    if args.child == "tf_loop":
        step, check = build_tf_loop(spec, kernels, data, args.steps[0])
    else:
        step, check, sim = build_nengo(spec, kernels, data, args.steps[0])
    build_s = time.perf_counter() - start
    result, out0, counts = timed_run(step, args.repeats, check if args.check else None)
    result["build_s"] = build_s
    arrays = {"out0": out0}
    if counts is not None:
        arrays.update({f"counts{i}": c for i, c in enumerate(counts)})
    np.savez(args.child_out + ".npz", **arrays)
    Path(args.child_out).write_text(json.dumps(result))
    if sim is not None:
        sim.close()


def run_config(impl, npz, n_steps, repeats, check, tmp, peer_threads=2):
    """One (implementation, T) in a fresh process; its result dict (with "error")."""
    out = str(Path(tmp) / f"{impl}_{n_steps}")
    if impl == "snntorch":
        cmd = [str(PEER_PYTHON), str(PEER_SCRIPT), "--npz", npz, "--steps", str(n_steps),
               "--repeats", str(repeats), "--threads", str(peer_threads), "--arrays-out", out + ".npz"]
        if check:
            cmd.append("--check")
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", impl, "--npz", npz,
               "--steps", str(n_steps), "--repeats", str(repeats), "--child-out", out]
        if check:
            cmd.append("--check")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    if impl == "snntorch":
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
        result = json.loads(Path(out).read_text())
    with np.load(out + ".npz") as arrays:
        result["_arrays"] = {key: arrays[key] for key in arrays.files}
    return result


# --------------------------------------------------------------------- report
def compare(ref, other, spiking):
    """How far ``other``'s forward pass is from ``ref``'s (both at the initial weights)."""
    a, b = ref["_arrays"], other["_arrays"]
    scale = float(np.abs(a["out0"]).max()) or 1.0
    found = {
        "loss_rel": abs(other["loss0"] - ref["loss0"]) / abs(ref["loss0"]),
        "output_rel": float(np.abs(a["out0"] - b["out0"]).max()) / scale,
        "grad_norm_rel": abs(other["grad_norm0"] - ref["grad_norm0"]) / abs(ref["grad_norm0"]),
    }
    if all(f"counts{i}" in a and f"counts{i}" in b for i in range(len(spiking))):
        differ = [int(np.count_nonzero(a[f"counts{i}"] != b[f"counts{i}"])) for i in range(len(spiking))]
        found["neurons_with_other_spike_count"] = dict(zip(spiking, differ))
        found["spike_count_mismatch_fraction"] = sum(differ) / sum(
            a[f"counts{i}"].size for i in range(len(spiking)))
    return found


def firing(result, spiking, n_steps):
    a = result["_arrays"]
    rates = {}
    for i, name in enumerate(spiking):
        counts = a[f"counts{i}"]
        rates[name] = {"spikes_per_neuron_step": float(counts.mean()) / n_steps,
                       "hz": float(counts.mean()) / n_steps / DT,
                       "fraction_of_neurons_spiking": float((counts > 0).mean())}
    return rates


def line_fit(steps, values):
    slope, intercept = np.polyfit(steps, values, 1)
    fitted = slope * np.asarray(steps) + intercept
    ss_res = float(((np.asarray(values) - fitted) ** 2).sum())
    ss_tot = float(((np.asarray(values) - np.mean(values)) ** 2).sum()) or 1.0
    return {"slope_mib_per_step": float(slope), "intercept_mib": float(intercept),
            "r2": 1 - ss_res / ss_tot}


def fmt_ms(result):
    if result is None:
        return f"{'-':>17}"
    if "error" in result:
        return f"{'failed':>17}"
    return f"{result['best_ms']:8.1f} /{result['median_ms']:8.1f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200], help="timesteps T")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps after the warm-up")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--network", choices=sorted(NETWORKS), default="small")
    parser.add_argument("--filters", type=int, nargs="+", default=list(UNET_FILTERS),
                        help="the U-Net's channels per level, the last the bottleneck's "
                             "(--network unet only; the cpu profile's: 8 16 32)")
    parser.add_argument("--rate", type=float, default=0.2,
                        help="target spikes per neuron and timestep that sets the thresholds")
    parser.add_argument("--encoding", choices=["repeat", "poisson"], default="repeat",
                        help="the image at every step, or one fixed Poisson train of it")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-steps", type=int, nargs="*", default=None,
                        help="T at which every neuron's spike count is compared "
                             "(default: the smallest T; loss and output are compared at every T)")
    parser.add_argument("--skip", nargs="*", default=[], choices=IMPLS)
    parser.add_argument("--peer-threads", type=int, default=2,
                        help="torch.set_num_threads of the snnTorch peer (TensorFlow uses every core)")
    parser.add_argument("--out", default=None, help="the JSON written (default: "
                        "results/benchmarks/surrogate.json, surrogate_unet.json for the U-Net)")
    # internal: one configuration in a fresh process
    parser.add_argument("--child", choices=["tf_loop", "nengo_if"], help=argparse.SUPPRESS)
    parser.add_argument("--npz", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args)

    unet = NETWORKS[args.network].get("model") == "unet"
    spec = dict(NETWORKS[args.network], filters=list(args.filters)) if unet else NETWORKS[args.network]
    if args.out is None:
        args.out = "results/benchmarks/" + ("surrogate_unet.json" if unet else "surrogate.json")
    steps = sorted(set(args.steps))
    check_steps = set(steps[:1] if args.check_steps is None else args.check_steps)
    model, kernels, thresholds, x_seq, target = make_problem(
        spec, args.batch, max(steps), args.rate, args.encoding, args.seed)
    spiking = spiking_names(model)
    impls = [i for i in IMPLS if i not in args.skip]
    peer = "snntorch" in impls
    if unet:  # the peer script runs sequential networks only
        peer_status = "not implemented for the U-Net"
    else:
        peer_status = "installed" if PEER_PYTHON.exists() else "not installed (make bench-env)"
    if peer and (unet or not PEER_PYTHON.exists()):
        impls.remove("snntorch")
    # the table's implementations: no snnTorch columns for the U-Net
    shown = [i for i in IMPLS if not (unet and i == "snntorch")]
    short = {"tf_loop": "tf", "nengo_if": "if", "snntorch": "snn"}
    table_ratios = [(a, b) for a, b in (("nengo_if", "tf_loop"), ("nengo_if", "snntorch"))
                    if a in shown and b in shown]

    floor_bytes = stored_bytes_per_step(model, args.batch)
    machine = cpu()
    print(f"CPU: {describe_cpu(machine)}; GPU: "
          f"{bool(tf.config.list_physical_devices('GPU'))}; {platform.platform()}")
    vers = versions()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items() if k not in ("machine", "cpu")))
    if unet:
        layout = (f"U-Net filters {spec['filters']} (build_unet, dropout 0), "
                  f"{len(spiking)} spiking layers {spiking}, linear output {model.output_names[0]}")
    else:
        layout = f"layers {spec['layers']}"
    print(f"network {args.network}: input {spec['input_shape']}, {layout}; "
          f"{model.count_params()} weights; batch {args.batch}; input {args.encoding}")
    print(f"IF neurons: dt {DT}, surrogate gamma {GAMMA}, thresholds = amplitudes "
          + ", ".join(f"{n} {v:.4g}" for n, v in zip(spiking, thresholds))
          + f" (set for {args.rate:g} spikes per neuron-step); Adam lr {args.lr:g}")
    print(f"snnTorch peer: {peer_status}, torch threads {args.peer_threads}")
    load_before = os.getloadavg()
    print(f"load average before the run: {load_before[0]:.2f} (1 min), {load_before[1]:.2f} (5 min) "
          f"on {os.cpu_count()} cores: above ~0.5 other processes share the CPU and the times "
          f"are not trustworthy")
    print(f"each cell: best / median ms per training step (forward over T, backward through "
          f"time, Adam) over {args.repeats} steps after one warm-up, every (implementation, T) "
          f"in a fresh process; ratios of best times; peak MiB over the built model\n", flush=True)

    results = {impl: {} for impl in IMPLS}
    checks = {}
    with tempfile.TemporaryDirectory() as tmp:
        npz = str(Path(tmp) / "problem.npz")
        write_npz(npz, spec, kernels, thresholds, x_seq, target, args.lr)
        header = (f"{'T':>4} | " + "".join(f"{i + ' ms':>17} | " for i in shown)
                  + "".join(f"{short[a] + '/' + short[b]:>6} | " for a, b in table_ratios)
                  + "peak MiB " + " / ".join(short[i] for i in shown))
        print(header)
        print("-" * len(header))
        for n_steps in steps:
            for impl in impls:
                results[impl][n_steps] = run_config(impl, npz, n_steps, args.repeats,
                                                    n_steps in check_steps, tmp, args.peer_threads)
            row = {impl: results[impl].get(n_steps) for impl in IMPLS}
            ok = {k: v for k, v in row.items() if v is not None and "error" not in v}

            def ratio(a, b):
                return ok[a]["best_ms"] / ok[b]["best_ms"] if a in ok and b in ok else None

            rs = [ratio(a, b) for a, b in table_ratios]
            mems = " / ".join(f"{ok[i]['peak_mib']:.0f}" if i in ok else "-" for i in shown)
            print(f"{n_steps:>4} | " + "".join(f"{fmt_ms(row[i])} | " for i in shown)
                  + "".join(f"{'-' if r is None else f'{r:6.2f}':>6} | " for r in rs)
                  + mems, flush=True)
            if "tf_loop" in ok:
                for impl in ("nengo_if", "snntorch"):
                    if impl in ok:
                        checks.setdefault(impl, {})[n_steps] = compare(ok["tf_loop"], ok[impl], spiking)
        load_after = os.getloadavg()
        print(f"load average after the run: {load_after[0]:.2f} (1 min), {load_after[1]:.2f} (5 min)")
        print("\nseconds to build the model / of the warm-up step (tracing included):")
        for impl in impls:
            print(f"  {impl:>9}: " + ", ".join(
                f"T={t}: {r['build_s']:.1f} / {r['first_step_s']:.1f}"
                for t, r in results[impl].items() if "error" not in r))
        for impl in IMPLS:
            for n_steps, result in results[impl].items():
                if "error" in result:
                    print(f"\n{impl} at T={n_steps} failed: {result['error']}")

    # ---- agreement of the forward passes
    print("\nforward agreement at the initial weights (against tf_loop; spike counts "
          f"per neuron at T={sorted(check_steps)}):")
    agreement = {}
    for impl, tol in (("nengo_if", TOL_NENGO), ("snntorch", TOL_PEER)):
        if impl not in checks:
            continue
        worst_loss = max(c["loss_rel"] for c in checks[impl].values())
        worst_out = max(c["output_rel"] for c in checks[impl].values())
        worst_grad = max(c["grad_norm_rel"] for c in checks[impl].values())
        mismatch = [c["spike_count_mismatch_fraction"] for c in checks[impl].values()
                    if "spike_count_mismatch_fraction" in c]
        worst_spikes = max(mismatch) if mismatch else None
        agree = worst_loss <= tol and (worst_spikes is None or worst_spikes <= tol)
        agreement[impl] = {"tolerance": tol, "agree": agree, "max_loss_rel": worst_loss,
                           "max_output_rel": worst_out, "max_grad_norm_rel": worst_grad,
                           "max_spike_count_mismatch_fraction": worst_spikes,
                           "by_steps": checks[impl]}
        spikes_text = "-" if worst_spikes is None else f"{worst_spikes:.2g}"
        print(f"  {impl:>9}: {'AGREES' if agree else 'DIFFERS'} (tolerance {tol:g} on loss and "
              f"spike counts): loss rel {worst_loss:.2g}, fraction of neurons with another spike "
              f"count {spikes_text}; largest output difference {worst_out:.2g} of the output's "
              f"scale, gradient norm rel {worst_grad:.2g}")
        for n_steps, c in checks[impl].items():
            if "neurons_with_other_spike_count" in c:
                print(f"             T={n_steps}: neurons with another spike count "
                      f"{c['neurons_with_other_spike_count']}")

    rates = {}
    for n_steps in sorted(check_steps):
        ref = results["tf_loop"].get(n_steps) or results["nengo_if"].get(n_steps)
        if ref is not None and "error" not in ref and "counts0" in ref["_arrays"]:
            rates[n_steps] = firing(ref, spiking, n_steps)
            print(f"firing at T={n_steps}: " + "; ".join(
                f"{n} {r['spikes_per_neuron_step']:.3f} spikes/neuron-step ({r['hz']:.0f} Hz), "
                f"{100 * r['fraction_of_neurons_spiking']:.0f}% of neurons spike"
                for n, r in rates[n_steps].items()))

    # ---- memory over T
    print("\npeak resident memory over the built model (warm-up incl. tracing + timed steps) "
          "vs T, line fit:")
    print(f"  float32 a step must keep for BPTT at least (conv inputs + membranes): "
          f"{floor_bytes / MIB:.2f} MiB/step")
    fits = {}
    for impl in IMPLS:
        ok = {t: r for t, r in results[impl].items() if "error" not in r}
        if len(ok) < 2:
            continue
        ts = sorted(ok)
        fits[impl] = {"peak": line_fit(ts, [ok[t]["peak_mib"] for t in ts])}
        f = fits[impl]["peak"]
        print(f"  {impl:>9}: {f['slope_mib_per_step']:6.2f} MiB/step + {f['intercept_mib']:4.0f} MiB "
              f"(R^2 {f['r2']:.4f}; {f['slope_mib_per_step'] * MIB / floor_bytes:.1f}x the "
              f"minimum); measured " + ", ".join(f"T={t}: {ok[t]['peak_mib']:.0f}" for t in ts))

    # ---- targets
    def ratios(a, b):
        return {t: results[a][t]["best_ms"] / results[b][t]["best_ms"]
                for t in steps if t in results[a] and t in results[b]
                and "error" not in results[a][t] and "error" not in results[b][t]}

    if_tf, if_snn, tf_snn = ratios("nengo_if", "tf_loop"), ratios("nengo_if", "snntorch"), ratios("tf_loop", "snntorch")
    targets = {}
    print("\ntargets (best times):")
    if if_tf:
        met = all(r <= 1.5 for r in if_tf.values())
        targets["if_within_1.5x_tf_loop"] = met
        print(f"  nengo_if step within 1.5x the hand-written TF loop: {'MET' if met else 'NOT MET'} "
              f"(ratios {', '.join(f'T={t}: {r:.2f}' for t, r in if_tf.items())})")
    if if_snn:
        met = all(r < 1 for r in if_snn.values())
        targets["if_faster_than_snntorch"] = met
        print(f"  nengo_if faster than snnTorch: {'MET' if met else 'NOT MET'} "
              f"(ratios {', '.join(f'T={t}: {r:.2f}' for t, r in if_snn.items())})")
    else:
        print(f"  nengo_if faster than snnTorch: not measured (peer {peer_status})")
    if "nengo_if" in fits:
        f = fits["nengo_if"]["peak"]
        met = f["r2"] >= 0.99
        targets["if_memory_linear_in_T"] = met
        print(f"  nengo_if memory linear in T (R^2 >= 0.99): {'MET' if met else 'NOT MET'}: "
              f"{f['slope_mib_per_step']:.2f} MiB/step ({f['slope_mib_per_step'] / args.batch:.3f} MiB "
              f"per step and example), intercept {f['intercept_mib']:.0f} MiB")

    for impl in IMPLS:
        for result in results[impl].values():
            result.pop("_arrays", None)
    peer_versions = next((r.get("versions") for r in results["snntorch"].values() if "versions" in r), None)
    out = {
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "network": args.network,
        **({"filters": list(args.filters)} if unet else {}),
        "spec": spec,
        "batch": args.batch,
        "steps": steps,
        "repeats": args.repeats,
        "encoding": args.encoding,
        "dt": DT,
        "surrogate_gamma": GAMMA,
        "target_rate": args.rate,
        "thresholds": dict(zip(spiking, thresholds.tolist())),
        "lr": args.lr,
        "firing": rates,
        "cpu": machine,
        "gpu": bool(tf.config.list_physical_devices("GPU")),
        "machine": platform.platform(),
        "versions": vers,
        "peer": peer_status,
        "peer_threads": args.peer_threads,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "peer_versions": peer_versions,
        "results": {impl: {str(t): r for t, r in rs.items()} for impl, rs in results.items()},
        "ratios": {"nengo_if/tf_loop": if_tf, "nengo_if/snntorch": if_snn, "tf_loop/snntorch": tf_snn},
        "agreement": agreement,
        "memory_fit": fits,
        "min_stored_mib_per_step": floor_bytes / MIB,
        "targets": targets,
    }
    write_json(args.out, out)
    print(f"\nwrote {args.out}")
    return out


if __name__ == "__main__":
    main()
