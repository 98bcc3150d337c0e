"""The snnTorch peer of ``benchmarks/surrogate.py``: one training step through time.

Runs in the benchmark-only environment ``.venv-bench`` (``make bench-env``: PyTorch CPU
build and snnTorch; no TensorFlow).  ``surrogate.py`` writes the problem into an
``.npz`` file (network spec, Keras kernels, per-layer thresholds and amplitudes,
the input sequence, the target, dt, gamma, Adam's learning rate) and calls::

    .venv-bench/bin/python benchmarks/surrogate_snntorch.py --npz problem.npz --steps 25 \\
        --repeats 5 [--check] [--arrays-out arrays.npz]

It prints one line of JSON on stdout (times, memory, initial loss and gradient norm,
versions); ``--arrays-out`` keeps the time-averaged output of the first step and, with
``--check``, every neuron's spike count at the initial weights.

Each spiking layer is ``snntorch.Leaky(beta=1.0, threshold=v, spike_grad=<the linear
surrogate>, reset_mechanism="subtract")`` fed the current ``J dt``.  snnTorch's
semantics (reset_delay=True, the default): ``reset = H(mem_{t-1} - v)`` detached,
``mem_t = mem_{t-1} + J dt - v reset``, ``spk_t = H(mem_t - v)``.  Its ``mem_t`` is the
package's pre-reset potential ``u'`` and its detached reset is the package's
``stop_gradient(o)``, so spikes, loss and gradients are the same equations.  The
surrogate is a custom ``torch.autograd.Function``: ``H(x >= 0)`` forward,
``(gamma / v) max(0, 1 - |x| / v)`` backward, ``x = mem - v``.
"""

import argparse
import json
import platform
import sys
import time

import numpy as np
import snntorch
import torch
from torch import nn

from step_timing import timed_run  # beside this script; shared with surrogate.py

MIB = 2 ** 20


class LinearSurrogateSpike(torch.autograd.Function):
    """H(x) forward; Bellec et al.'s (gamma / v) max(0, 1 - |x| / v) backward."""

    @staticmethod
    def forward(ctx, x, v, gamma):
        ctx.save_for_backward(x)
        ctx.v, ctx.gamma = v, gamma
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, upstream):
        (x,) = ctx.saved_tensors
        return upstream * (ctx.gamma / ctx.v) * torch.relu(1 - x.abs() / ctx.v), None, None


def spike_grad(v, gamma):
    def spike(x):
        return LinearSurrogateSpike.apply(x, v, gamma)

    return spike


class Network(nn.Module):
    def __init__(self, spec, kernels, thresholds, amplitudes, dt, gamma):
        super().__init__()
        self.spec, self.dt = spec, dt
        self.convs = nn.ModuleList()
        self.lifs = nn.ModuleList()
        self.amplitudes = [float(a) for a in amplitudes]
        s = 0
        for layer in spec["layers"]:
            if layer[0] != "conv":
                continue
            kernel = kernels[len(self.convs)]  # Keras HWIO -> torch OIHW
            conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0],
                             padding=kernel.shape[0] // 2, bias=False)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
            self.convs.append(conv)
            if layer[3] == "relu":
                v = float(thresholds[s])
                self.lifs.append(snntorch.Leaky(beta=1.0, threshold=v, spike_grad=spike_grad(v, gamma),
                                                reset_mechanism="subtract"))
                s += 1

    def forward(self, x_seq, counts=False):
        """``x_seq`` (batch, T, C, H, W): the output averaged over T (and spike counts)."""
        n_steps = x_seq.shape[1]
        mems = [lif.reset_mem() for lif in self.lifs]
        totals = [None] * len(self.lifs)
        acc = None
        for t in range(n_steps):
            h = x_seq[:, t]
            k = s = 0
            for layer in self.spec["layers"]:
                if layer[0] == "pool":
                    h = nn.functional.avg_pool2d(h, layer[1])
                    continue
                J = self.convs[k](h)
                k += 1
                if layer[3] != "relu":
                    h = J
                    continue
                spk, mems[s] = self.lifs[s](J * self.dt, mems[s])
                h = spk * (self.amplitudes[s] / self.dt)
                if counts:
                    totals[s] = spk if totals[s] is None else totals[s] + spk
                s += 1
            acc = h if acc is None else acc + h
        return acc / n_steps, totals




def nhwc_flat(t):
    """A torch (batch, C, H, W) tensor in Keras's (batch, H*W*C) order."""
    return t.detach().permute(0, 2, 3, 1).reshape(t.shape[0], -1).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npz", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="spike counts at the initial weights")
    parser.add_argument("--arrays-out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    data = np.load(args.npz)
    spec = json.loads(str(data["spec"]))
    n_conv = sum(1 for layer in spec["layers"] if layer[0] == "conv")
    kernels = [data[f"kernel{i}"] for i in range(n_conv)]
    dt, gamma = float(data["dt"]), float(data["gamma"])
    thresholds, amplitudes = data["thresholds"], data["amplitudes"]
    x_seq = torch.from_numpy(np.ascontiguousarray(
        data["x_seq"][:, :args.steps].transpose(0, 1, 4, 2, 3)))  # (B, T, C, H, W)
    target = torch.from_numpy(np.ascontiguousarray(data["target"].transpose(0, 3, 1, 2)))

    start = time.perf_counter()
    net = Network(spec, kernels, thresholds, amplitudes, dt, gamma)
    # Keras's Adam epsilon, so that the updates match too
    opt = torch.optim.Adam(net.parameters(), lr=float(data["lr"]), eps=1e-7)
    build_s = time.perf_counter() - start

    def step():
        opt.zero_grad(set_to_none=True)
        out, _ = net(x_seq)
        loss = torch.mean((out - target) ** 2)
        loss.backward()
        norm = torch.sqrt(sum((p.grad ** 2).sum() for p in net.parameters()))
        opt.step()
        return loss.item(), nhwc_flat(out), norm.item()

    result, out0, _ = timed_run(step, args.repeats, None)

    arrays = {"out0": out0}
    if args.check:
        fresh = Network(spec, kernels, thresholds, amplitudes, dt, gamma)
        with torch.no_grad():
            _, counts = fresh(x_seq, counts=True)
        arrays.update({f"counts{i}": nhwc_flat(c) for i, c in enumerate(counts)})
    if args.arrays_out:
        np.savez(args.arrays_out, **arrays)

    result.update({
        "build_s": build_s,
        "threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "snntorch": snntorch.__version__, "numpy": np.__version__},
    })
    sys.stdout.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
