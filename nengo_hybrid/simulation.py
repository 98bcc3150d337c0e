"""Running a NengoDL simulator over a data set of any size."""

import numpy as np


def iterate_predictions(sim, inputs, chunk_batches=4):
    """Yield ``(start, outputs)`` over ``inputs`` in chunks of whole minibatches.

    NengoDL drops the examples that do not fill a last minibatch; here the last chunk
    is padded with copies of its final example and the copies are cut from the
    outputs, so every example is predicted exactly once.

    Parameters
    ----------
    sim : nengo_dl.Simulator
    inputs : dict of {nengo.Node: ndarray}
        Arrays of shape ``(n_examples, n_steps, size)``.
    chunk_batches : int
        Minibatches per ``sim.predict`` call (bounds the memory of probed outputs).

    Yields
    ------
    start : int
        Index of the chunk's first example.
    outputs : dict of {nengo.Probe: ndarray}
        Probed outputs of shape ``(n_chunk, n_steps, size)``.
    """
    n = len(next(iter(inputs.values())))
    chunk = sim.minibatch_size * chunk_batches
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        pad = (-(stop - start)) % sim.minibatch_size
        batch = {}
        for node, data in inputs.items():
            part = data[start:stop]
            if pad:
                part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
            batch[node] = part
        outputs = sim.predict(batch, verbose=0)
        yield start, {probe: value[: stop - start] for probe, value in outputs.items()}


def predict(sim, inputs, probe, last_steps=None):
    """Predicted output of ``probe`` for every example, averaged over the last
    ``last_steps`` timesteps (all of them if None): shape ``(n_examples, size)``."""
    parts = []
    for _, outputs in iterate_predictions(sim, inputs):
        values = outputs[probe]
        if last_steps is not None:
            values = values[:, -last_steps:]
        parts.append(values.mean(axis=1))
    return np.concatenate(parts)
