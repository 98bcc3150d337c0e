"""Where the data lives (``--data`` flag, else ``$NENGO_HYBRID_DATA``, else ``./data``) and
the command line the experiment scripts share."""

import argparse
import ast
import dataclasses
import os
from pathlib import Path

DATA_ENV = "NENGO_HYBRID_DATA"


def data_dir(flag=None):
    """The data directory: ``flag`` if given, else ``$NENGO_HYBRID_DATA``, else ``./data``."""
    if flag:
        return Path(flag)
    return Path(os.environ.get(DATA_ENV) or "data")


def add_data_argument(parser):
    """Add the ``--data DIR`` option every experiment takes to an argparse parser."""
    parser.add_argument(
        "--data",
        default=None,
        help=f"data directory (default: ${DATA_ENV}, else ./data)",
    )
    return parser


def experiment_parser(doc, name, profiles):
    """The command line every experiment script shares: ``run`` (``--profile``,
    ``--seed``, ``--set``, ``--out``, ``--resume``) and ``evaluate`` (``--checkpoint``,
    ``--out``).

    Returns ``(parser, run_parser, evaluate_parser)`` for the script to add its data
    arguments to; `resolve_run` turns parsed ``run`` arguments into a config and folder.
    """
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="train and evaluate the three models")
    run_parser.add_argument("--profile", choices=sorted(profiles), default="paper")
    run_parser.add_argument("--seed", type=int, default=None)
    run_parser.add_argument("--set", nargs="+", default=None, metavar="FIELD=VALUE",
                            help="override fields of the profile's configuration, e.g. finetune.epochs=1 "
                                 "eval_steps=100 (a dotted field sets a field of a nested one; values are "
                                 "Python literals); the run records them in its config.json")
    run_parser.add_argument("--out", default=None, help=f"default: results/{name} (quick: results/{name}_quick)")
    run_parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    eval_parser = sub.add_parser("evaluate", help="evaluate a trained run on a folder")
    eval_parser.add_argument("--checkpoint", required=True, help="the output folder of a run")
    eval_parser.add_argument("--out", default=None, help="default: CHECKPOINT/evaluate")
    return parser, run_parser, eval_parser


def resolve_run(args, name, profiles):
    """``(config, out_dir)`` of parsed ``run`` arguments: the profile, with ``--set``'s
    overrides (`config_with_overrides`), then ``--seed``.

    ``--seed N`` sets ``seed=N`` on the config and on every `TrainSettings` field of it,
    so that a second seed also draws other validation splits and epoch shuffles.  An
    override naming no field of the configuration, or whose value is no Python literal,
    ends the command with one error naming it.
    """
    config = profiles[args.profile]
    overrides = getattr(args, "set", None)
    if overrides:
        try:
            config = config_with_overrides(config, " ".join(overrides))
        except ValueError as error:
            raise SystemExit(f"--set: {error}") from None
    if args.seed is not None:
        config = with_seed(config, args.seed)
    return config, args.out or default_out(name, args.profile)


def config_with_overrides(config, overrides):
    """The frozen configuration ``config`` with the space-separated ``field=value``
    overrides of ``overrides`` (``"dropout=0.3 ann.learning_rate=0.002"``; a dotted
    field sets a field of a nested configuration, e.g. its `TrainSettings`; values are
    Python literals; ``"base"`` for none).  Raises ``ValueError`` naming an override
    whose field ``config`` does not have."""
    for override in overrides.split():
        if override == "base":
            continue
        path, equals, text = override.partition("=")
        if not equals:
            raise ValueError(f"override {override!r}: not field=value")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"override {override!r}: {text!r} is not a Python literal") from None
        *parents, name = path.split(".")
        chain = [config]
        for parent in parents:
            chain.append(getattr(chain[-1], parent, None))
        if not dataclasses.is_dataclass(chain[-1]) or name not in {f.name for f in dataclasses.fields(chain[-1])}:
            raise ValueError(f"override {override!r}: {type(config).__name__} has no field {path!r}")
        # rebuild from the innermost configuration outwards
        for holder, field in zip(reversed(chain), reversed([*parents, name])):
            value = dataclasses.replace(holder, **{field: value})
        config = value
    return config


def with_seed(config, seed):
    """``config`` with ``seed=seed`` on it and on every `TrainSettings` field of it, so
    that another seed also draws other validation splits and epoch shuffles."""
    from nengo_hybrid.stages import TrainSettings  # the module's one use of the stages

    stages = {field.name: dataclasses.replace(getattr(config, field.name), seed=seed)
              for field in dataclasses.fields(config) if isinstance(getattr(config, field.name), TrainSettings)}
    return dataclasses.replace(config, seed=seed, **stages)


def default_out(name, profile):
    """An experiment's results folder: ``results/<name>``, or ``results/<name>_<profile>``
    for any profile but ``paper``."""
    return f"results/{name}" if profile == "paper" else f"results/{name}_{profile}"
