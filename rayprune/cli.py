"""The ``rayprune`` command line: ``validate``, ``train-base``, ``prune``, ``pretrain`` (NEON), ...

Every command validates the config before anything heavy starts and exits with status 2 and a
message naming the problem when the input is wrong (a :class:`rayprune.errors.UserError`, a missing
or existing file); any other exception is a bug and is shown with its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["main", "build_parser"]


def _overrides(args: argparse.Namespace) -> dict:
    """Config overrides from command-line flags (budgets, agent, device, seed)."""
    from .costs import parse_budget

    over: dict = {}
    if getattr(args, "budget", None):
        budgets = {}
        for text in args.budget:
            b = parse_budget(text)
            if b.metric in budgets:  # two values of one cost: the last would win silently
                from .errors import UserError

                raise UserError(f"--budget {b.metric} is given twice ({budgets[b.metric]['text']} and {text}); a run "
                                f"meets one value per cost. To compare several, sweep them: rayprune sweep CONFIG "
                                f"--budgets {b.metric}=...,...")
            budgets[b.metric] = {"value": b.value, "relative": b.relative, "text": text}
        for entry in budgets.values():
            del entry["text"]
        over["budgets"] = budgets
    if getattr(args, "device", None):
        over["data"] = {"device": args.device}
    if getattr(args, "seed", None) is not None:
        over["seed"] = args.seed
    if getattr(args, "evaluations", None) is not None:
        over.setdefault("search", {})["evaluations"] = args.evaluations
    if getattr(args, "tolerance", None) is not None:
        over.setdefault("neon", {})["tolerance"] = args.tolerance
    if getattr(args, "agent_checkpoint", None):  # absolute: config paths are resolved against the config's folder
        over.setdefault("neon", {})["checkpoint"] = str(Path(args.agent_checkpoint).expanduser().resolve())
    if getattr(args, "iterations", None) is not None:
        over.setdefault("neon", {}).setdefault("pretrain", {})["iterations"] = args.iterations
    return over


def _load(args: argparse.Namespace):
    from .config import load_config

    over = _overrides(args)
    cfg = load_config(args.config)
    if over:
        from .config import parse_config

        if "budgets" in over:  # command-line budgets replace the config's, they do not merge with them
            cfg = cfg.model_copy(update={"budgets": {}})
        # the file passed validation alone: what fails now is what the command line changed
        cfg = parse_config(cfg.model_dump(mode="json"), source=f"{args.config} with the command line's flags",
                           overrides=over)
    return _resolve(cfg, args.config)


def _resolve(cfg, path):
    from .config import resolve_paths

    return resolve_paths(cfg, Path(path).parent)


def cmd_validate(args: argparse.Namespace) -> int:
    from .problem import PruningProblem

    cfg = _with_sweep_options(_load(args), args)  # --budgets: the levels a sweep would get
    # budgets depend on the architecture, not the weights: validate never trains the base model; built before
    # anything is printed, so that a data, model or cost error is the first thing a user reads. Its warnings are
    # said last, under the tables, not above a page of resolved config where they scroll away
    notes: list[str] = []
    try:
        problem = PruningProblem.from_config(cfg, progress=not args.quiet, log=notes.append, train_base=False)
    except BaseException:
        for note in notes:
            print(note, file=sys.stderr)
        raise
    try:
        return _validate_report(args, cfg, problem)
    finally:
        sys.stdout.flush()
        for note in notes:
            print(note, file=sys.stderr)


def _data_line(cfg, data) -> str:
    """``# data: ...``: the splits' sizes and what rayprune does to an input before the model sees it, so a user
    training their own model on the same files can match it before a run (a run writes it to spec.json)."""
    from .data import preprocessing_of

    facts = data.summary()
    prep = preprocessing_of(data)
    numbers = "".join(f", {key} {[round(float(v), 4) for v in prep[key]]}" for key in ("mean", "std", "low", "span")
                      if prep.get(key))
    return (f"# data: {cfg.data.name}: {facts['n_train']} train / {facts['n_val']} val / {facts['n_test']} test "
            f"samples of shape {tuple(facts['input_shape'])}; each input as the model sees it: "
            f"{'; '.join(prep['steps'])}{numbers}{_features_and_outputs(data, prep)}")


def _features_and_outputs(data, prep: dict, shown: int = 12) -> str:
    """``; features: ...; outputs: ...`` for the data line: a table's input columns (which text column each one-hot
    feature comes from) and what each model output is (a regression's target columns, a classifier's classes), so a
    user can check their model's input and output order before a run.

    >>> from types import SimpleNamespace
    >>> prep = {"feature_names": ["a", "zone_n", "zone_s"], "one_hot": {"zone_n": {"column": "zone", "value": "n"},
    ...         "zone_s": {"column": "zone", "value": "s"}}, "target_names": ["heat", "cool"]}
    >>> _features_and_outputs(SimpleNamespace(task="regression", num_classes=2), prep)
    '; features: a, zone_n, zone_s (zone_*: column zone one-hot); outputs: 2 targets: heat, cool'
    """
    def listed(names: list) -> str:
        return ", ".join(map(str, names[:shown])) + (f", ... ({len(names)} in all)" if len(names) > shown else "")

    parts = []
    features = list(prep.get("feature_names") or [])
    if features:
        columns = list(dict.fromkeys(v["column"] for v in (prep.get("one_hot") or {}).values()))
        encoded = f" ({', '.join(f'{c}_*' for c in columns)}: column{'s' if len(columns) > 1 else ''} " \
                  f"{', '.join(columns)} one-hot)" if columns else ""
        parts.append(f"features: {listed(features)}{encoded}")
    n = int(getattr(data, "num_classes", 0) or 0)
    if getattr(data, "task", "classification") == "regression":
        targets = list(prep.get("target_names") or [])
        parts.append(f"outputs: {n} target{'s' if n != 1 else ''}" + (f": {listed(targets)}" if targets else ""))
    elif n:
        classes = list(prep.get("class_names") or [])
        parts.append(f"outputs: {n} classes" + (f": {listed(classes)}" if classes else ""))
    return "".join(f"; {p}" for p in parts)


def _neon_line(cfg, problem) -> str:
    """``# neon: ...``: what decides whether tau can be met before a run: the split sizes and the resolution of the
    check (the smallest change a network agreeing with the base on every check sample is shown within)."""
    from .neon.selection import resolution_points, selection_split, tolerance_units_hint

    neon = cfg.neon
    split = selection_split(problem.data.to("cpu"), neon.selection_fraction, seed=cfg.seed)
    floor = -resolution_points(split.samples, neon.confidence)
    verdict = ("" if floor <= neon.tolerance else f": tau = {neon.tolerance:g} cannot be shown on so few samples, so "
               "the network comes back unpruned (a larger validation split, data.val_fraction, or "
               f"neon.selection_fraction or the tolerance let the check resolve it){tolerance_units_hint(neon.tolerance)}")
    return (f"# neon: tolerance {neon.tolerance:g} points, shown at {100 * neon.confidence:g} % confidence on "
            f"{split.samples} check samples of the validation split ({len(split.decide_indices)} to decide on); a "
            f"network that agrees with the base on every check sample is shown within {floor:.2f} pt{verdict}. "
            f"Layers may go down to {f'{neon.min_keep:g} of their width' if neon.min_keep else 'one neuron'} "
            "(neon.min_keep): the pruning space and reach below are the budgeted agents'")


def changed_settings(cfg) -> dict:
    """The config's settings that differ from the defaults, as a plain dict, with the model's and the data's
    names always in it (what is pruned on what, even where a name is the default)."""
    changed = cfg.model_dump(mode="json", exclude_defaults=True)
    named = {"name": changed.pop("name")} if "name" in changed else {}
    for section in ("model", "data"):
        named[section] = {"name": getattr(cfg, section).name, **changed.pop(section, {})}
    return {**named, **changed}


def _names(layers, shown: Optional[int] = 6) -> str:
    """``a, b, c (+4 more)``: a group's layers for the --groups table (``shown`` None: all of them; ``--full``).

    >>> _names("abcdefgh"), _names("abcdefgh", None)
    ('a, b, c, d, e, f (+2 more, --full lists them)', 'a, b, c, d, e, f, g, h')
    """
    layers = list(layers)
    if shown is None or len(layers) <= shown:
        return ", ".join(layers)
    return ", ".join(layers[:shown]) + f" (+{len(layers) - shown} more, --full lists them)"


def _yaml(values: dict) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _validate_report(args: argparse.Namespace, cfg, problem) -> int:
    """``rayprune validate``'s report on a built problem: the resolved config, the base model, each cost's reach,
    the sweep's levels; 3 when a budget cannot be met."""
    from .costs import ANALYTIC_COSTS
    from .costs.budget import fits, within
    from .costs.levels import Level, levels_from_config, unswept_budget_lines
    from .search.prune import BudgetUnreachable, check_reachable
    from .text_table import format_table, human

    if args.full:
        print("# resolved config (every value)")
        print(_yaml(cfg.model_dump(mode="json")), end="")
    else:
        print("# config: the settings that differ from the defaults (`--full` prints every resolved value)")
        print(_yaml(changed_settings(cfg)), end="")
    smallest = problem.reachable()
    if problem.base_info.get("source") == "untrained":
        print(f"\n# base model: {cfg.model.name}, not trained yet (validate does not train it; the first prune or "
              f"sweep, or `rayprune train-base`, trains and caches it at {problem.base_info['cache_path']})")
    else:
        from .report import format_metric

        metric = problem.objective.metric_name
        label = "accuracy" if metric == "accuracy" else metric.rsplit(":", 1)[-1]
        print(f"\n# base model: {cfg.model.name} ({problem.base_info.get('source')}), val {label} "
              f"{format_metric(problem.base_accuracy['val'], metric)}, test "
              f"{format_metric(problem.base_accuracy['test'], metric)}")
    print(_data_line(cfg, problem.data))
    if cfg.search.agent == "neon":
        print(_neon_line(cfg, problem))
    print(f"# pruning space: {problem.space.num_groups} groups, importance {cfg.pruning.importance}, "
          f"round_to {cfg.pruning.round_to}, min_keep {cfg.pruning.min_keep}; analytic params/MACs exact: {problem.analytic.exact}")
    rows = []
    for name in problem.costs:
        limit = problem.limits.get(name)
        ok = "-" if limit is None else ("yes" if within(smallest[name], limit) else "NO")
        rows.append([name, human(problem.base_costs[name]), human(smallest[name]),
                     f"{smallest[name] / problem.base_costs[name]:.3f}" if problem.base_costs[name] else "-",
                     human(limit), ok, "analytic" if name in ANALYTIC_COSTS else "measured"])
    print(format_table(["cost", "base", "smallest reachable", "smallest/base", "budget limit", "reachable", "kind"], rows))
    shown = None if args.full else 6  # --full: every layer a group edits (the one a user checks may be the 7th)
    groups = [[g.index, g.root, g.root_type, g.channels, g.blocks, _names(g.layers, shown)] for g in problem.space.groups]
    if args.groups:  # blocks: a grouped convolution's groups, each pruned alike (kept channels a multiple of it)
        print(format_table(["#", "root", "type", "channels", "blocks", "layers it edits"], groups))
    levels = []
    if cfg.sweep.budgets:  # a sweep's levels too, so an unreachable one is found before `rayprune sweep`
        levels = levels_from_config(cfg, problem.base_costs, sweep=True)
        for line in unswept_budget_lines(cfg):
            print(line, file=sys.stderr)
        print(format_table(["sweep level", *[f"{n} limit" for n in levels[0].limits], "reachable"],
                           [[lvl.name, *[human(v) for v in lvl.limits.values()],
                             "yes" if fits(smallest, lvl.limits) else "NO"] for lvl in levels]))
    try:
        check_reachable(problem, ([Level.from_budgets(problem.budgets, problem.base_costs)] if problem.budgets else [])
                        + levels, log=lambda line: print(line, file=sys.stderr), smallest=smallest)
    except BudgetUnreachable as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 3
    return 0


def cmd_train_base(args: argparse.Namespace) -> int:
    from .base_model import obtain_base_model
    from .problem import configured_dataset, resolve_device

    cfg = _load(args)
    dev = resolve_device(cfg.data.device)
    data = configured_dataset(cfg).to(dev)
    model, info = obtain_base_model(cfg, data, device=dev, progress=not args.quiet, retrain=args.force,
                                    save_to=Path(args.out) if args.out else None,
                                    log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: v for k, v in info.items() if k != "architecture"}, indent=1, default=str))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from .search.prune import run_prune

    cfg = _load(args)
    quiet = args.quiet
    agent = args.agent or cfg.search.agent
    ignored = (["--evaluations (neon's work is its rollouts x passes x layers, neon.rollouts and neon.passes)"]
               if agent == "neon" and args.evaluations is not None else []) + (
        [f"--tolerance (it is neon's tau; agent {agent!r} meets budgets)"]
        if agent != "neon" and args.tolerance is not None else [])
    if ignored:
        print(f"note: {'; '.join(ignored)} does not apply to agent {agent!r} and is ignored.", file=sys.stderr)
    summary = run_prune(cfg, args.out, agent=args.agent, progress=not quiet, address=args.address,
                        log=_warnings_only if quiet else _console)
    if quiet:
        from .search.prune import summary_table

        print(summary_table(summary))
    print(f"\nwrote {Path(args.out) / 'candidates.parquet'} and {Path(args.out) / 'best'}/")
    return 0 if summary["feasible"] else 4


def _console(message: str) -> None:
    """The log of a command that is not quiet: its progress to stdout, its warnings to stderr (as docs/reliability.md
    says; they went to stdout, so `rayprune prune ... 2> warnings.txt` caught none of them)."""
    if message.lstrip().startswith("warning:"):
        print(message.strip(), file=sys.stderr, flush=True)
    else:
        print(message, flush=True)


def _warnings_only(message: str) -> None:
    """``-q``'s log: the run's warnings, to stderr (`prune -q` dropped them all: a pipeline never saw that its
    latency budget was timed on misaligned channels, or that groups were left unpruned)."""
    if message.lstrip().startswith("warning:"):
        print(message.strip(), file=sys.stderr, flush=True)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .neon.pretrain import run_pretrain

    cfg = _load(args)
    report = run_pretrain(cfg, args.out, address=args.address,
                          log=(lambda m: None) if args.quiet else (lambda m: print(m, flush=True)))
    print(f"pretrained NEON agent: {report['iterations']} iterations, {report['episodes']} episodes on "
          f"{len(report['datasets'])} datasets in {report['seconds']:.0f} s; mean episode reward "
          f"{report['first_return_mean']:.3f} -> {report['last_return_mean']:.3f}")
    print(f"wrote {Path(args.out) / 'policy'}/ (use: rayprune prune CONFIG --agent neon --agent-checkpoint {args.out}), "
          f"{Path(args.out) / 'report.md'} and {Path(args.out) / 'curves.png'}")
    return 0


def _with_sweep_options(cfg, args: argparse.Namespace):
    """``cfg`` with the sweep options of ``sweep`` / ``submit`` applied as the sweep applies them: ``--budgets``
    merged into ``sweep.budgets`` (a rel:/%/abs: mark sets that cost's ``sweep.relative``), ``--seeds``,
    ``--max-concurrent-trials``, ``--agents``, ``--evaluations``."""
    from .sweeps.driver import parse_level_spec

    over: dict = {}
    if args.budgets:
        specs = [parse_level_spec(t) for t in args.budgets]
        over["budgets"] = {name: values for name, values, _ in specs}
        # rel:/% (or abs:) on the levels decides for that cost's levels (sweep.relative), as a mark in the config does
        marks = {name: rel for name, _, rel in specs if rel is not None}
        if marks:
            over["relative"] = {**cfg.sweep.relative, **marks}
    if args.seeds is not None:
        over["seeds"] = args.seeds
    if getattr(args, "first_seed", None) is not None:
        over["first_seed"] = args.first_seed
    if getattr(args, "max_concurrent_trials", None) is not None:
        over["max_concurrent_trials"] = args.max_concurrent_trials
    if args.agents:
        over["agents"] = [a.strip() for a in args.agents.split(",") if a.strip()]
    if not over and args.evaluations is None:
        return cfg
    from .config import parse_config

    overrides: dict = {"sweep": over}
    if args.evaluations is not None:
        overrides["search"] = {"evaluations": args.evaluations}
    flags = [f for f, given in (("--budgets", args.budgets), ("--seeds", args.seeds is not None),
                                ("--first-seed", getattr(args, "first_seed", None) is not None),
                                ("--max-concurrent-trials", getattr(args, "max_concurrent_trials", None) is not None),
                                ("--agents", args.agents), ("--evaluations", args.evaluations is not None)) if given]
    source = f"{args.config} with the command line's {', '.join(flags)}"  # a bad flag is not the file's fault
    return _resolve(parse_config(cfg.model_dump(mode="json"), source=source, overrides=overrides), args.config)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .errors import UserError
    from .sweeps.driver import run_sweep

    if args.resume:
        given = [flag for flag, value in (("a config", args.config), ("--budgets", args.budgets), ("--agents", args.agents),
                                          ("--seeds", args.seeds), ("--first-seed", args.first_seed), ("--evaluations", args.evaluations),
                                          ("--max-concurrent-trials", args.max_concurrent_trials),
                                          ("--seed", args.seed), ("--device", args.device), ("--budget", args.budget))
                 if value is not None]
        if given:  # they used to be dropped without a word
            raise UserError(f"sweep --resume continues the sweep in {args.out} with the config stored there; "
                            f"it takes no config or sweep options (given: {', '.join(given)}). Drop them, or start a new sweep in "
                            "another --out.")
        summary = run_sweep(None, args.out, address=args.address, resume=True,  # type: ignore[arg-type]
                            verbose=0 if args.quiet else 1, log=_console)
        return _sweep_status(summary)
    if args.config is None:
        raise UserError("sweep needs a YAML config (rayprune sweep CONFIG --out DIR), or --resume to continue the "
                        f"sweep in {args.out}.")
    cfg = _with_sweep_options(_load(args), args)
    summary = run_sweep(cfg, args.out, address=args.address, verbose=0 if args.quiet else 1, log=_console)
    return _sweep_status(summary)


def _sweep_status(summary: dict) -> int:
    """A sweep's exit status: 0, 5 when a trial failed, 4 when the sweep finished but a level ended without a model
    (its NO MODEL line says why; `--resume` will not change it), so that a script does not take a partial front for
    a whole one."""
    if summary.get("trial_errors"):
        return 5
    return 4 if any(level.get("candidate_id") is None for level in summary.get("levels", [])) else 0


def cmd_submit(args: argparse.Namespace) -> int:
    from .errors import UserError
    from .submit import submit_sweep
    from .sweeps.driver import budgets_text

    if args.resume:
        given = [flag for flag, value in (("a config", args.config), ("--budgets", args.budgets), ("--agents", args.agents),
                                          ("--seeds", args.seeds), ("--first-seed", args.first_seed),
                                          ("--evaluations", args.evaluations),
                                          ("--max-concurrent-trials", args.max_concurrent_trials)) if value is not None]
        if given:
            raise UserError(f"submit --resume continues the sweep in {args.out} with the config stored there; it "
                            f"takes no config or sweep options (given: {', '.join(given)}). Drop them, or submit a new "
                            "sweep to another --out.")
        metadata = {"submitted_by": "rayprune submit", "resume": "true", "out": args.out}
        job_id, status = submit_sweep(args.address, None, args.out, working_dir=args.working_dir, metadata=metadata,
                                      follow=not args.no_follow)
        return job_exit_status(status)
    if args.config is None:
        raise UserError("submit needs a YAML config (rayprune submit CONFIG --address URL --out DIR), or --resume to "
                        f"continue the sweep in {args.out}.")
    # validated here, before anything reaches the cluster, with the options the job's sweep will apply
    cfg = _with_sweep_options(_load(args), args)
    metadata = {"submitted_by": "rayprune submit", "rayprune_config": cfg.name, "config_file": str(args.config),
                "budgets": budgets_text(cfg), "out": args.out}
    job_id, status = submit_sweep(args.address, args.config, args.out, working_dir=args.working_dir,
                                  budgets=args.budgets or (), seeds=args.seeds,
                                  max_concurrent_trials=args.max_concurrent_trials, agents=args.agents,
                                  evaluations=args.evaluations, metadata=metadata,
                                  follow=not args.no_follow, first_seed=args.first_seed)
    return job_exit_status(status)


def job_exit_status(status: Optional[str]) -> int:
    """``rayprune submit``'s exit status for the job's final status line: 0 while not followed or on success, the
    sweep driver's own code where Ray reports it (2 bad input, 4 a level without a model, 5 a failed trial: a
    script can tell "fix the config" from "resume it"), 130 for a stopped job, else 1.

    >>> job_exit_status(None), job_exit_status("SUCCEEDED")
    (0, 0)
    >>> job_exit_status("FAILED (... a worker's exit code 1 in the logs ...) [driver exit code 5]")
    5
    >>> job_exit_status("STOPPED"), job_exit_status("FAILED (runtime env setup failed)")
    (130, 1)
    >>> job_exit_status("FAILED (killed) [driver exit code -9]")
    1
    """
    import re

    if status is None or status.endswith("SUCCEEDED"):
        return 0
    if status.startswith("STOPPED"):
        return 130
    code = re.search(r"\[driver exit code (-?\d+)\]$", status)
    return int(code.group(1)) if code and 0 < int(code.group(1)) < 256 else 1


def cmd_report(args: argparse.Namespace) -> int:
    from .report import make_report, summary_text

    path = make_report(args.dir)
    print(summary_text(args.dir))
    print(f"wrote {path} and {Path(args.dir) / 'report.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .agents.registry import BUDGETED_AGENTS

    parser = argparse.ArgumentParser(prog="rayprune", description="Budget-constrained structured pruning of PyTorch models.")
    parser.add_argument("--version", action="version", version=f"rayprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="YAML config (see configs/)")
        p.add_argument("--budget", action="append", metavar="NAME=VALUE",
                       help="budget, repeatable: params=0.25 (fraction of base), latency_ms=4.0 (absolute), macs=abs:2e8")
        p.add_argument("--device", help="override data.device (auto, cpu, cuda, cuda:1)")
        p.add_argument("--seed", type=int, help="override seed")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("validate", help="check a config: its settings, base costs, smallest reachable cost per budget")
    common(p)
    p.add_argument("--groups", action="store_true", help="also list the prunable groups")
    p.add_argument("--full", action="store_true",
                   help="print every resolved config value, not only the settings that differ from the defaults, and "
                        "with --groups every layer of each group")
    p.add_argument("--budgets", action="append", metavar="NAME=V1,V2,...",
                   help="check these sweep levels (as `rayprune sweep --budgets` takes them) instead of sweep.budgets")
    p.set_defaults(func=cmd_validate, seeds=None, agents=None, evaluations=None)

    p = sub.add_parser("train-base", help="train the config's base model and cache it")
    common(p)
    p.add_argument("--out", help="save the trained weights here instead of the cache")
    p.add_argument("--force", action="store_true", help="retrain even if a cached model exists")
    p.set_defaults(func=cmd_train_base)

    p = sub.add_parser("prune", help="prune for one budget level and export the best model")
    common(p)
    p.add_argument("--agent", choices=[*BUDGETED_AGENTS, "neon"],
                   help="search agent (default: search.agent)")
    p.add_argument("--evaluations", type=int, help="candidates the search scores (default: search.evaluations)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--address", help="Ray cluster to run on (auto, HOST:PORT, ray://...); default: a local Ray")
    p.add_argument("--agent-checkpoint", metavar="DIR",
                   help="neon: a `rayprune pretrain` output or policy directory (default: the agent shipped in the package)")
    p.add_argument("--tolerance", type=float, metavar="POINTS",
                   help="neon: accuracy loss (points) the agent may spend, tau (default: neon.tolerance); shown "
                        "within it on a held-out selection split at neon.confidence (0.7), not guaranteed on every "
                        "network (docs/neon.md)")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("pretrain", help="pretrain the NEON agent offline on random networks over the dataset suite")
    common(p)
    p.add_argument("--out", required=True, help="output directory: policy/, rllib_checkpoint/, curves, report")
    p.add_argument("--iterations", type=int, help="override neon.pretrain.iterations")
    p.add_argument("--address", help="Ray cluster to run on (auto, HOST:PORT, ray://...); default: a local Ray")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("sweep", help="agents x seeds as Ray Tune trials over every budget level; one model per level, Pareto front in Parquet")
    p.add_argument("config", nargs="?", help="YAML config (not needed with --resume)")
    p.add_argument("--budgets", action="append", metavar="NAME=V1,V2,...",
                   help="levels of one constraint (repeat for several: their product is swept); values as for "
                        "prune's --budget: latency_ms=90%%,80%% or rel:0.9,0.8 sweep fractions of the base latency")
    p.add_argument("--agents", metavar="A,B,...", help="agents side by side, one trial each per seed "
                   f"({', '.join(BUDGETED_AGENTS)}; default: sweep.agents or search.agent)")
    p.add_argument("--seeds", type=int, help="seeds per agent (default: sweep.seeds)")
    p.add_argument("--first-seed", type=int, metavar="N", help="the trials' search seeds start at N (default: "
                   "sweep.first_seed, 0); --seed is the data split's and base training's")
    p.add_argument("--evaluations", type=int, help="candidates each trial scores (default: search.evaluations)")
    p.add_argument("--max-concurrent-trials", type=int, help="trials at once (default: as resources allow)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--address", help="Ray cluster (auto, HOST:PORT, ray://...); default: a local Ray")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out after an interruption")
    p.add_argument("--device", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--budget", action="append", help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="less output")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("submit", help="submit a sweep to a Ray cluster as a Ray job and follow its logs")
    p.add_argument("config", nargs="?", help="YAML config, inside --working-dir (not needed with --resume)")
    p.add_argument("--address", required=True, help="the cluster's job server, e.g. http://127.0.0.1:8265")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in --out (interrupted or stopped) as a new job, with its stored config")
    p.add_argument("--out", required=True, help="output directory on the cluster: an absolute path (shared storage on several nodes)")
    p.add_argument("--working-dir", default=".", help="uploaded with the job (default: current directory)")
    p.add_argument("--budgets", action="append", metavar="NAME=V1,V2,...", help="as for `rayprune sweep`")
    p.add_argument("--agents", metavar="A,B,...", help="as for `rayprune sweep`")
    p.add_argument("--seeds", type=int)
    p.add_argument("--first-seed", type=int, metavar="N", help="as for `rayprune sweep`")
    p.add_argument("--evaluations", type=int, help="as for `rayprune sweep`")
    p.add_argument("--max-concurrent-trials", type=int)
    p.add_argument("--no-follow", action="store_true", help="print the job id and return")
    p.add_argument("-q", "--quiet", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("report", help="Pareto plot (PNG + HTML) and front table of a sweep directory")
    p.add_argument("dir", help="the --out directory of a sweep")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    import os

    # like `python -m`, let configs name user code next to where the command runs (mymodule:fn)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "address", None):
        from ._auth import use_cluster_token

        use_cluster_token()  # before anything imports ray
    from .errors import BudgetUnreachable, NoModelError, UserError
    from .ray_session import sigterm_interrupts

    sigterm_interrupts()  # a scheduler's stop is an interruption: what was kept is said, exit 130
    try:
        return int(args.func(args) or 0)
    # (a model directory naming code it may not run raises UntrustedArchitectureError, a PermissionError)
    except (UserError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, ImportError,
            NoModelError) as exc:
        # bad input (or no model, with its cause): one line naming the field or file; anything else
        # is a bug and keeps its traceback
        print(f"rayprune {args.command}: error: {exc}", file=sys.stderr)
        # 4: ran, but no model meets the budget (as sweep's levels); 3: no model in the space can (before any search)
        return 4 if isinstance(exc, NoModelError) else 3 if isinstance(exc, BudgetUnreachable) else 2
    except KeyboardInterrupt as exc:
        print(f"rayprune {args.command}: interrupted" + (f": {exc}" if str(exc) else ""), file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - only the user's own code's failures are turned into one line
        cause = _user_code_failure(exc)
        if cause is None:
            raise
        import traceback

        # the user's function's own frames (what they need to fix it), then one line naming it
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
        print(f"rayprune {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _user_code_failure(exc: BaseException):
    """The exception raised inside the user's own function (a cost function, a model factory) when ``exc`` is
    rayprune's report of it; else None."""
    from .costs.registry import CostFunctionError
    from .models.registry import ModelFactoryError

    if isinstance(exc, (CostFunctionError, ModelFactoryError)) and exc.__cause__ is not None:
        return exc.__cause__
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
