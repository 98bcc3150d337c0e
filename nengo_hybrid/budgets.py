"""One trained ANN's spiking models read at several timestep budgets, in one table.

An SNN read at fewer timesteps is cheaper: its synaptic operations, and so its energy,
scale with :math:`T \\times` rate.  A *budget* is a name, the configuration of a
`nengo_hybrid.stages.run_stages` run at that budget (its ``eval_steps``: the timesteps
:math:`T` the spiking models run) and that run's results; the first budget is the main
one.  The table holds the floor and the ANN once (``budget`` and ``timesteps`` None)
and every budget's spiking models, each record marked with its ``budget`` and
``timesteps``; the fine-tuned model of each budget (the last of its outputs) carries its
training columns (`nengo_hybrid.experiment.finetuning_record`).
"""

from nengo_hybrid.experiment import finetuning_record


def spiking_only(results):
    """``results`` with the outputs of its spiking models only (those with rates)."""
    return dict(results, outputs={name: out for name, out in results["outputs"].items()
                                  if name in results["rates"]})


def budget_records(score, budgets):
    """Table records of every budget.

    Parameters
    ----------
    score : callable
        ``score(config, results, main)`` returns one record (a dict with ``"model"``) per
        output of ``results``, the floor's first when ``main`` (the main budget).
    budgets : sequence of (str, config, dict)
        ``(name, config, results)``, the main budget first; the later ones contribute
        their spiking models only.
    """
    records = []
    for index, (name, config, results) in enumerate(budgets):
        main = index == 0
        scored = score(config, results if main else spiking_only(results), main)
        scored[-1].update(finetuning_record(results))
        for record in scored:
            spiking = record["model"] in results["rates"]
            record.update(budget=name if spiking else None, timesteps=config.eval_steps if spiking else None)
        records += scored
    return records


def budget_sweeps(budgets):
    """The main budget's output sweeps (``{model: {T: outputs}}``) and, of every later
    budget, its fine-tuned model's sweep as ``"<model> (<T> steps)"``."""
    (_, _, main), later = budgets[0], budgets[1:]
    sweeps = dict(main["sweeps"])
    for _, config, results in later:
        tuned = list(results["sweeps"])[-1]
        sweeps[f"{tuned} ({config.eval_steps} steps)"] = results["sweeps"][tuned]
    return sweeps
