"""Timing one training step and the peak resident memory it needs (Linux ``/proc``),
for the benchmarks that run in either virtual environment (standard library only)."""

import collections
import gc
import statistics
import time

MIB = 2 ** 20


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None


class PeakMemory:
    """Peak resident set since the last `reset` (VmHWM, reset through clear_refs)."""

    def __init__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.resettable = True
        except OSError:
            self.resettable = False
        self.reset()

    def reset(self):
        if self.resettable:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        self.base = _status("VmRSS")

    def peak(self):
        if self.resettable:
            return _status("VmHWM")
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed_run(step, repeats, check):
    """Warm-up (tracing) and ``repeats`` timed steps; memory over both; the forward
    check at the initial weights.  ``step()`` returns (loss, time-mean output, gradient
    norm) as numpy values, computed before its update; ``check()`` the spike counts of
    the initial weights."""
    gc.collect()
    mem = PeakMemory()
    built = mem.base
    start = time.perf_counter()
    loss0, out0, grad0 = step()
    first_s = time.perf_counter() - start
    peak_first = mem.peak()
    mem.reset()
    before_steps = mem.base
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak_steps = mem.peak()
    counts = check() if check is not None else None
    result = {
        "times_ms": [1e3 * t for t in times],
        "best_ms": 1e3 * min(times),
        "median_ms": 1e3 * statistics.median(times),
        "first_step_s": first_s,
        "rss_built_mib": built / MIB,
        "peak_mib": (max(peak_first, peak_steps) - built) / MIB,
        "step_peak_mib": (peak_steps - before_steps) / MIB,
        "memory_probe": "VmHWM reset via clear_refs" if mem.resettable else "ru_maxrss",
        "loss0": float(loss0),
        "grad_norm0": float(grad0),
    }
    return result, out0, counts


def backward_coverage(sim):
    """How much of the forward pass the training step differentiates: the number of
    kernel gradients (``Conv2DBackpropFilter``) over the number of convolutions
    (``Conv2D``) in the graph of ``sim``'s Keras training function (traced: call after a
    fit).  TensorFlow builds a gradient only where a path leads to the loss, and a
    layer's activity at step t reaches the output only after the synapses between them
    have passed it on, so the last few steps of the lower layers have no gradient: at
    few timesteps that is much of the backward pass.  None if the timesteps run in a
    loop (its body is another graph)."""
    function = sim.keras_model.train_function
    graph = function._list_all_concrete_functions_for_serialization()[0].graph
    counts = collections.Counter(op.type for op in graph.get_operations())
    if counts["While"] or not counts["Conv2D"]:
        return None
    return counts["Conv2DBackpropFilter"] / counts["Conv2D"]
