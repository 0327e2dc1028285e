"""``rayprune sweep``: agents x seeds as Ray Tune trials over every budget level, then one selection.

Every trial searches all levels of the sweep and writes its scored candidates into one store
(``OUT/candidates/``). When the trials are done, the driver selects, for each level, from *all*
candidates of all trials that fit it — re-rank, final fine-tune, export
(:func:`rayprune.search.selection.select_and_finalize`) — so a larger level never ends with a
worse model than a smaller one, and writes the front and the report.

Layout of ``OUT/``::

    sweep.json            the sweep's config, id, levels, trials and base model facts (read by --resume and report)
    tune/                 Tune's experiment directory (trial checkpoints, result.json, tuner.pkl)
    candidates/           Parquet shards, one per flush, written atomically by the trials and the selection
    candidates.parquet    every row, merged and deduplicated on row_id
    pareto.parquet        the non-dominated exported models (max accuracy, min every cost)
    front_history.parquet per trial, the front of its search rows after each batch
    models/<level>/       the exported model of every level (load with rayprune.load_pruned)
    report.png, report.html
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pandas as pd
import pyarrow as pa

from .._io import atomic_write_text
from ..agents.registry import BUDGETED_AGENTS
from ..config import Config, parse_config
from ..costs.budget import Budget, parse_level_spec
from ..costs.levels import Level, levels_from_config, unswept_budget_lines
from ..errors import Interrupted, UserError
from ..names import SELECTION_TRIAL, STAGE_SEARCH, STAGE_SELECT
from ..results import exported_rows, frame_table, merge_candidates, read_candidates, write_parquet_atomic
from .pareto import front_history, pareto_front, with_served_levels
from .trainable import SweepSetup, placement_bundles, sweep_trial, trial_name

__all__ = ["run_sweep", "finish_sweep", "load_state", "parse_levels", "sweep_agents", "without_unswept_neon", "TUNE_DIR",
           "SWEEP_FILE"]

TUNE_DIR = "tune"
SWEEP_FILE = "sweep.json"
Log = Callable[[str], None]


def parse_levels(text: str) -> tuple[str, list[float]]:
    """``params=0.5,0.25,0.1`` -> ``("params", [0.5, 0.25, 0.1])`` (see :func:`parse_level_spec`)."""
    name, values, _ = parse_level_spec(text)
    return name, values


def space_signature(space) -> list[list]:
    """``[root, channels, blocks, multiple]`` of every prunable group: what a candidate's keep ratios and counts
    mean. A resumed sweep must find the same (:func:`check_same_space`)."""
    return [[g.root, int(g.channels), int(g.blocks), int(m)] for g, m in zip(space.groups, space.multiples)]


def check_same_space(state: dict[str, Any], space, out: Path) -> None:
    """Refuse to resume a sweep whose pruning space the current rayprune builds differently: its scored
    candidates, and its agents' checkpoints, are keep ratios of the old groups. A sweep from before the
    signature was stored (rayprune before session 28) differs exactly where a group is pruned in blocks now
    (a grouped convolution or multi-head attention, then left whole or pruned to any count)."""
    now = space_signature(space)
    then = state.get("space")
    if then is None:
        if not any(blocks > 1 for _, _, blocks, _ in now):
            return
        changed = "groups coupled to grouped convolutions or attention heads are now pruned alike in each block"
    elif [list(g) for g in then] == now:
        return
    else:
        changed = f"its groups were {then}, and are now {now}"
    raise UserError(f"--resume: the sweep in {out} was started by a rayprune that built this model's pruning space "
                    f"differently ({changed}), so its scored candidates and its agents' state describe other "
                    "networks. Start a new sweep in another --out (the old one's models and rows stay where they "
                    "are).")


def trial_seeds(cfg: Config) -> list[int]:
    """The search seeds of each agent's trials: ``sweep.first_seed`` onwards, ``sweep.seeds`` of them.

    >>> from rayprune.config import parse_config
    >>> trial_seeds(parse_config({"sweep": {"seeds": 2, "first_seed": 3}}))
    [3, 4]
    """
    return list(range(cfg.sweep.first_seed, cfg.sweep.first_seed + cfg.sweep.seeds))


def sweep_agents(cfg: Config) -> list[str]:
    """The agents a sweep runs side by side: ``sweep.agents``, else ``search.agent``."""
    agents = list(cfg.sweep.agents) or [cfg.search.agent]
    if "neon" in agents:
        raise UserError("agent 'neon' prunes by tolerance, not to budget levels, and cannot be swept; use `rayprune "
                        "prune --agent neon`, "
                         f"or set sweep.agents to budgeted agents ({', '.join(BUDGETED_AGENTS)}).")
    return agents


def without_unswept_neon(cfg: Config, agents: list[str], log: Log) -> Config:
    """``cfg`` with ``search.agent`` set to the sweep's first agent when it names neon: the config's agent for
    ``rayprune prune``, which a sweep of ``agents`` (budgeted, :func:`sweep_agents`) never runs, so neon's checks
    (a dense model, data as tensors) must not refuse the sweep's model."""
    if cfg.search.agent != "neon":
        return cfg
    log(f"search.agent is neon, the agent of `rayprune prune` on this config; the sweep runs sweep.agents "
        f"({', '.join(agents)}) and stores search.agent: {agents[0]}.")
    return cfg.model_copy(update={"search": cfg.search.model_copy(update={"agent": agents[0]})})


def _check_resources(cfg: Config, log: Log) -> Config:
    """``cfg`` with its evaluation section fitted to the cluster (an unset ``evaluation.cpus``); refuses, with
    the numbers, a trial whose placement group the cluster cannot hold."""
    import ray

    from ..evaluation.gpu_sharing import log_gpu_sharing
    from ..placement import copies_that_fit
    from ..search.prune import fitted_evaluation, node_resources, resource_shortfall, unplaceable, warn_idle_evaluators

    if "crl" in sweep_agents(cfg) and cfg.search.crl.env_runners > 0:
        raise UserError(f"search.crl.env_runners is {cfg.search.crl.env_runners}, but a sweep's crl trial runs inside "
                        "its placement group (the trial and its evaluators), which has no CPU for RLlib's remote env "
                        "runners: the trial would wait for them forever. Set search.crl.env_runners: 0 (the policy "
                        "samples in the trial's own process; the candidates are scored by the evaluators either way).")
    cfg = cfg.model_copy(update={"evaluation": fitted_evaluation(cfg, cfg.sweep.trial_cpus, log)})
    bundles = placement_bundles(cfg)
    need: dict[str, float] = {}
    for bundle in bundles:
        for k, v in bundle.items():
            need[k] = need.get(k, 0.0) + v
    have = ray.cluster_resources()
    short = resource_shortfall(need, have)
    spread = None if short else unplaceable(bundles, "One trial's bundles (the trial's and each evaluator's)")
    if spread and cfg.sweep.wait_for_resources:
        log(f"{spread}; waiting for the autoscaler (sweep.wait_for_resources).")
    elif spread:
        raise UserError(f"{spread}. Lower evaluation.cpus, evaluation.gpus or evaluation.evaluators (or leave evaluation.cpus unset: "
                        "it is then fitted to the nodes), or set sweep.wait_for_resources: true on an autoscaling "
                        "cluster.")
    if short:
        parts = ", ".join(f"{k}: needs {v:g}, cluster has {h:g}" for k, (v, h) in short.items())
        if cfg.sweep.wait_for_resources:
            log(f"No trial fits on the cluster yet ({parts}); waiting for the autoscaler (sweep.wait_for_resources).")
            return cfg
        raise UserError(
            f"One trial's placement group (trial + {cfg.evaluation.evaluators} evaluators) cannot fit on this "
            f"cluster ({parts}). Lower evaluation.evaluators / evaluation.cpus / evaluation.gpus or sweep.trial_cpus, "
            "or set sweep.wait_for_resources: true on an autoscaling cluster."
        )
    warn_idle_evaluators(cfg, cfg.evaluation.evaluators, log)
    log_gpu_sharing(cfg.evaluation.gpus, cfg.evaluation.evaluators, log)
    reserved = ", ".join(f"{v:.4g} {k}" for k, v in need.items())
    trials = len(sweep_agents(cfg)) * cfg.sweep.seeds
    log(f"Each trial reserves {reserved} (trial + {cfg.evaluation.evaluators} evaluators); "
        f"the cluster has {have.get('CPU', 0):g} CPUs / {have.get('GPU', 0):g} GPUs "
        f"-> up to {copies_that_fit(bundles, node_resources(), at_most=trials)} of its {trials} trial(s) at once.")
    return cfg


def _trainable(setup: SweepSetup, cfg: Config, shared_ref):
    """The trial function with its parameters. ``shared_ref``: the driver's problem in the object store
    (:meth:`~rayprune.problem.PruningProblem.shareable`), boxed so that Tune hands each trial the ref,
    not a copy: every trial and its evaluators, on any node, prune the same base weights and read the
    one copy of the data."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(sweep_trial, setup=setup, shared_box=[shared_ref]),
                               tune.PlacementGroupFactory(placement_bundles(cfg)))


def _claim(out: Path) -> None:
    """Create ``sweep.json`` exclusively: of two sweeps started into one directory, one wins at once."""
    from ..search.prune import check_out_dir

    if (out / SWEEP_FILE).exists():
        finished = _status_of(out / SWEEP_FILE) == "finished"
        raise FileExistsError(f"{out} already holds a " + ("finished sweep (rayprune report shows it); choose another "
                              "--out." if finished else "sweep; continue it with --resume (resume=True in Python) or choose another "
                              "--out."))
    check_out_dir(out, what="sweep")
    try:
        fd = os.open(out / SWEEP_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise FileExistsError(f"{out} already holds a sweep (another one just started there).") from None
    with os.fdopen(fd, "w") as fh:
        json.dump({"status": "starting", "started": time.time()}, fh)


def resume_how(out: Path, from_python: bool, in_memory: bool = False) -> str:
    """How to continue the sweep in ``out``: the way it was started first, the other way second (``in_memory``: a
    model or data handed over from Python, which only Python can hand over again).

    A sweep that runs as a job of ``rayprune submit`` (:data:`~rayprune.submit.SUBMITTED_FROM` set) is continued by
    submitting it again.

    >>> print(resume_how(Path("runs/s"), False))
    rayprune sweep --resume --out runs/s (add the --address you used; from Python: rayprune.sweep(..., out='runs/s', resume=True))
    """
    from ..submit import SUBMITTED_FROM

    python = f"rayprune.sweep(..., out={str(out)!r}, resume=True)"
    shell = f"rayprune sweep --resume --out {out}"
    job_server = os.environ.get(SUBMITTED_FROM)
    if job_server and not from_python and not in_memory:
        return (f"rayprune submit --resume --out {out} --address {job_server} (from the working directory you "
                f"submitted it from, or with its --working-dir)")
    if in_memory:
        return f"{python}, passing the same model and data (and the address you used)"
    if from_python:
        return f"{python} (and the address you used; from a shell: {shell})"
    return f"{shell} (add the --address you used; from Python: {python})"


def _status_of(path: Path) -> Optional[str]:
    """The ``status`` recorded in a ``sweep.json`` (None if unreadable)."""
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


@contextlib.contextmanager
def _tune_output(verbose: int) -> Iterator[None]:
    """With ``verbose=0`` (``rayprune sweep -q``), Tune prints nothing: Ray 2.60's new console output prints its
    experiment box and result-folder lines at every verbosity, so the legacy reporter (silent at 0) is used, and
    Tune's INFO lines are held back; both are restored afterwards."""
    if verbose:
        yield
        return

    tune_logger = logging.getLogger("ray.tune")
    saved_env, saved_level = os.environ.get("RAY_AIR_NEW_OUTPUT"), tune_logger.level
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    tune_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        tune_logger.setLevel(saved_level)
        if saved_env is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved_env


#: Tune's own closing lines that rayprune says better: an interrupted experiment's "Resume experiment with:
#: Tuner.restore(...)" (rayprune's resume command is the one that works) and "Trials did not complete: [...]"
#: (rayprune names the unfinished and the failed trials itself).
TUNE_ENDINGS = ("Experiment has been interrupted", "Trials did not complete")


class _HoldTuneEndings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TUNE_ENDINGS)


@contextlib.contextmanager
def tune_endings_held() -> Iterator[None]:
    """While a sweep's ``Tuner.fit`` runs: Tune's closing lines in :data:`TUNE_ENDINGS` are not printed."""
    tune_logger, held = logging.getLogger("ray.tune.tune"), _HoldTuneEndings()
    tune_logger.addFilter(held)
    try:
        yield
    finally:
        tune_logger.removeFilter(held)


def budgets_text(cfg: Config) -> str:
    """The sweep's levels as the Jobs page shows them: ``params=0.5,0.25;macs=0.5`` (``;`` between constraints;
    ``latency_ms=90%,80%`` for fractions of the base latency, as the levels are named)."""
    if cfg.sweep.budgets:
        levels = {k: [Budget(k, float(v), cfg.level_relative(k)) for v in vs] for k, vs in cfg.sweep.budgets.items()}
    else:
        levels = {b.metric: [b] for b in cfg.budget_list()}
    return ";".join(f"{k}={','.join(b.value_text for b in bs)}" for k, bs in levels.items())


def _job_metadata(cfg: Config, out: Path) -> dict[str, str]:
    """What the Ray dashboard's Jobs page shows for this sweep's driver."""
    return {"rayprune": "sweep", "config": cfg.name, "budgets": budgets_text(cfg), "out": str(out)}


def _release(out: Path) -> None:
    """Undo :func:`_claim` for a sweep that failed before it started: its ``sweep.json`` (still "starting"; the
    folders the claim created go with :func:`~rayprune.search.prune.given_back_if_empty`)."""
    try:
        if _status_of(out / SWEEP_FILE) == "starting":
            (out / SWEEP_FILE).unlink()
    except OSError:
        pass  # best effort: the original error is the one to report


#: the config's file paths, as :func:`~rayprune.config.resolve_paths` makes them absolute
PATH_FIELDS = (("model", "checkpoint"), ("data", "root"), ("data", "path"), ("neon", "checkpoint"))


def rebased_paths(cfg: Config, started_in: Optional[str], log: Log = print) -> Config:
    """``cfg`` (a sweep's stored config) with each file path that no longer exists but lay under the directory the
    sweep started in (``started_in``) taken from this process's working directory instead, where it exists there.

    A submitted sweep runs in Ray's temporary copy of the working dir, so its stored config names files there
    (``.../runtime_resources/working_dir_files/_ray_pkg_<hash>/base.pt``); after the cluster restarted they were
    gone and ``--resume`` could not start (``rayprune submit --resume`` uploads the working dir again)."""
    if not started_in:
        return cfg
    out = cfg.model_copy(deep=True)
    for section, name in PATH_FIELDS:
        value = getattr(getattr(out, section), name)
        if value is None or Path(value).exists():
            continue
        try:
            moved = Path.cwd() / Path(value).relative_to(started_in)
        except ValueError:
            continue
        if moved.exists():
            setattr(getattr(out, section), name, moved)
            log(f"{section}.{name}: {value} is gone (the sweep started in {started_in}); using the same file under "
                f"this run's working directory: {moved}")
    return out


def load_state(out: str | Path, *, what: str = "") -> dict[str, Any]:
    """``OUT/sweep.json``, checked: it exists and is past the start (``setup`` is written once the base
    model and the levels are known). ``what`` (e.g. ``--resume``) prefixes the error."""
    path = Path(out) / SWEEP_FILE
    prefix = f"{what}: " if what else ""
    if not path.is_file():
        raise FileNotFoundError(f"{prefix}{path} not found: {out} is not the output of `rayprune sweep`.")
    state = json.loads(path.read_text())
    if "setup" not in state:
        raise UserError(f"{prefix}{path} is from a sweep that stopped before its first trial started; there is "
                        "nothing to resume or report. Start it again into a new directory.")
    return state


def _write_state(out: Path, state: dict[str, Any]) -> None:
    atomic_write_text(out / SWEEP_FILE, json.dumps(state, indent=1))


def _mark(out: Path, status: str) -> None:
    """Record the sweep's ``status`` in ``sweep.json`` (``running``, ``interrupted``; ``finished`` comes with the
    summary). Best effort: an interrupt must still say how to resume if the file cannot be written."""
    try:
        state = json.loads((out / SWEEP_FILE).read_text())
        _write_state(out, {**state, "status": status})
    except (OSError, ValueError):
        pass


#: a sweep's driver rewrites ``OUT/driver.json`` (host, pid, time) this often while it runs
HEARTBEAT_S = 10.0
DRIVER_FILE = "driver.json"


@contextlib.contextmanager
def _heartbeat(out: Path, owned: bool) -> Iterator[threading.Event]:
    """While a sweep's driver runs, ``OUT/driver.json`` says which process it is and when it was last alive, so that
    a ``--resume`` started beside it is refused (:func:`refuse_if_running`). It beats once the sweep is this
    driver's: at once for a resume (``owned``), else when the event it yields is set (``sweep.json`` claimed: a
    sweep refused because ``OUT`` holds another must not speak for that one's driver)."""
    import socket

    me = {"host": socket.gethostname(), "pid": os.getpid()}
    stop, mine = threading.Event(), threading.Event()
    if owned:
        mine.set()
    path = out / DRIVER_FILE

    def beat() -> None:
        while True:
            # past its start only: until then a failure gives the claimed directory back, and it must be empty
            if mine.is_set() and _status_of(out / SWEEP_FILE) not in (None, "starting"):
                try:
                    atomic_write_text(path, json.dumps({**me, "time": time.time()}))
                except OSError:
                    pass
            if stop.wait(HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, name="rayprune-sweep-heartbeat", daemon=True)
    thread.start()
    try:
        yield mine
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            recorded = json.loads(path.read_text())
            if mine.is_set() and (recorded.get("host"), recorded.get("pid")) == (me["host"], me["pid"]):
                path.unlink()
        except (OSError, ValueError):
            pass


def refuse_if_running(out: Path, log: Log = print) -> None:
    """Refuse to resume a sweep whose driver is alive, whatever ``sweep.json`` says (a resume marks it ``running``
    only once it has connected and loaded the base; a stopped driver may still be winding down): two drivers would
    score, drop and export the same trials' rows at once (a resume submitted while the first job still ran
    re-scored and re-exported a sweep that finished under it). Alive: ``driver.json`` names a process of this host
    that exists, or, for another host's (its clock may differ from this one), one that rewrites the file within
    :data:`HEARTBEAT_S` (this waits that long). A driver that ends removes the file."""
    import socket

    path = out / DRIVER_FILE
    try:
        first = path.read_text()
        driver = json.loads(first)
        host, pid = driver["host"], int(driver["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no driver recorded: none runs (or one of an older rayprune, or killed before its first beat)
    if host == socket.gethostname():
        if pid == os.getpid():
            return  # this process's own sweep, ended (the Python API resuming what it interrupted)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return  # that process is gone: killed without a word
        except PermissionError:
            pass
        alive = f"process {pid} on this host is alive"
    else:
        log(f"--resume: {path} names a driver on {host}; checking for {HEARTBEAT_S + 2:.0f} s whether it is alive")
        time.sleep(HEARTBEAT_S + 2.0)
        try:
            if path.read_text() == first:
                return  # not rewritten: its driver is gone
        except OSError:
            return  # removed: its driver ended
        alive = f"the driver on {host} (pid {pid}) is still writing {path.name}"
    raise UserError(f"--resume: the sweep in {out} is running: {alive}. Stop it first (Ctrl-C; `ray job stop JOB_ID` "
                    f"for a submitted sweep) and resume once it has stopped. (If that process is no sweep of yours, "
                    f"delete {path}.)")


def run_sweep(
    cfg: Optional[Config],
    out_dir: str | Path,
    *,
    address: Optional[str] = None,
    resume: bool = False,
    log: Log = print,
    verbose: int = 1,
    problem=None,
    from_python: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a sweep and select its models; returns the summary also written to sweep.json.

    ``problem``: an already built :class:`~rayprune.problem.PruningProblem` for ``cfg`` (the Python
    API's model and data in memory); a resumed sweep of such a problem needs it passed again.
    ``from_python``: the caller is :func:`rayprune.sweep` (an interrupted sweep names its resume call first).
    A resume is refused while the sweep's driver is alive (:func:`refuse_if_running`)."""
    out = Path(out_dir).resolve()
    if resume:
        load_state(out, what="--resume")  # (its errors first: not a sweep, or one that never started)
        refuse_if_running(out, log)
    with _heartbeat(out, owned=resume) as claimed:
        return _run_sweep(cfg, out, address=address, resume=resume, log=log, verbose=verbose, problem=problem,
                          from_python=from_python, claimed=claimed)


def _run_sweep(cfg: Optional[Config], out: Path, *, address: Optional[str], resume: bool, log: Log, verbose: int,
               problem, from_python: bool, claimed: threading.Event) -> dict[str, Any]:
    import ray
    from ray import tune

    from ..agents.crl_batches import rounds_note, scored_by
    from ..base_model import base_cache_key, weights_fingerprint
    from ..problem import PruningProblem, config_in_memory
    from ..ray_session import connect
    from ..search.prune import check_reachable

    if resume:
        flag, other = ("resume=True", "another out=") if from_python else ("--resume", "another --out")  # the caller's words
        state = load_state(out, what=flag)
        cfg = rebased_paths(parse_config(state["config"], source=str(out / SWEEP_FILE)), state.get("cwd"), log)
        setup = SweepSetup(**{**state["setup"], "config": cfg.model_dump(mode="json")})
        if (problem is None and state.get("base_key") and cfg.model.checkpoint is None
                and base_cache_key(cfg) != state["base_key"]):
            raise UserError(f"{flag}: the model's source file or the data ({cfg.model.name}, {cfg.data.name}) "
                            f"changed since the sweep in {out} started, so its base model is not the one its "
                            "candidates were pruned from. Put them back as they were, or start a new sweep in "
                            f"{other}.")
        if problem is None and config_in_memory(cfg):
            raise UserError(f"{flag}: the sweep in {out} prunes a model handed over in memory; resume it from "
                            "Python with the same model and data: rayprune.sweep(model, data, out=..., resume=True).")
        handed_over = problem is not None and problem.base_info.get("source") == "in-memory"  # not a retrained name
        if handed_over and state.get("base_fingerprint") not in (None, weights_fingerprint(problem.base_model)):
            raise UserError(f"{flag}: the model handed over is not the one the sweep in {out} started with (its "
                            "weights differ), so the candidates already scored were pruned from another network. "
                            f"Resume with the same model, or start a new sweep in {other}.")
        failed = list((out / TUNE_DIR).rglob("error.txt"))  # Tune's mark of a failed trial: resume retries it
        if state.get("status") == "finished" and state.get("summary") is not None and not failed:
            # nothing to continue: re-selecting would re-run every final fine-tune and overwrite the exported models
            shows = "the result's front and models show them" if from_python else f"rayprune report {out} shows them"
            log(f"The sweep in {out} has finished already; its models are in {out / 'models'} ({shows}). Nothing "
                f"was re-run. To sweep again, start a new sweep in {other}.")
            return state["summary"]
        connect(address, log=log, metadata=_job_metadata(cfg, out))
        tune_path = out / TUNE_DIR
        if not tune.Tuner.can_restore(str(tune_path)):
            raise FileNotFoundError(f"{flag}: no restorable Tune experiment in {tune_path}.")
        if problem is None:
            problem = PruningProblem.from_config(cfg, log=log, base_costs=setup.base_costs,
                                                 base_accuracy=setup.base_accuracy, progress=bool(verbose))
        check_same_space(state, problem.space, out)
        if (cfg.model.checkpoint is not None and state.get("base_fingerprint") is not None
                and state["base_fingerprint"] != weights_fingerprint(problem.base_model)):
            raise UserError(f"{flag}: model.checkpoint {cfg.model.checkpoint} is not the network the sweep in {out} "
                            "started from (its weights differ), so the candidates already scored were pruned from "
                            f"another one. Put the checkpoint back as it was, or start a new sweep in {other}.")
        shared_ref = ray.put(problem.shareable())
        _mark(out, "running")  # an interrupted sweep runs again
        log(f"Resuming sweep {setup.sweep_id} from {tune_path}")
        tuner = tune.Tuner.restore(str(tune_path), trainable=_trainable(setup, cfg, shared_ref),
                                   resume_unfinished=True, resume_errored=True)
    else:
        from ..search.prune import given_back_if_empty

        agents = sweep_agents(cfg)
        cfg = without_unswept_neon(cfg, agents, log)
        # until the state is written, a failure (no cluster, a bad model) gives back the directory, and every
        # parent folder the claim created with it
        with given_back_if_empty(out):
            _claim(out)
            claimed.set()  # the sweep is this driver's: its heartbeat starts
            try:
                connect(address, log=log, metadata=_job_metadata(cfg, out))
                cfg = _check_resources(cfg, log)
                if problem is None:
                    # trains and caches the base model once (-q: without its progress)
                    problem = PruningProblem.from_config(cfg, log=log, progress=bool(verbose))
                levels = levels_from_config(cfg, problem.base_costs, sweep=True)
                for line in unswept_budget_lines(cfg):
                    log(line)
                check_reachable(problem, levels, log=log)
                from ..agents.registry import warmup_warning

                for warning in filter(None, (warmup_warning(a, cfg.search, len(levels)) for a in agents)):
                    log(warning)  # the trials' own logs are not the user's console
                setup = SweepSetup(
                    config=cfg.model_dump(mode="json"), out_dir=str(out), sweep_id=uuid.uuid4().hex[:12],
                    base_costs=dict(problem.base_costs), base_accuracy=dict(problem.base_accuracy),
                    relative={n: cfg.level_relative(n) for n in levels[0].values}, levels=[lvl.to_json() for lvl in levels],
                )
                state = {"config": setup.config, "setup": setup.__dict__, "levels": [lvl.values for lvl in levels],
                         "agents": agents, "seeds": cfg.sweep.seeds, "trial_seeds": trial_seeds(cfg),
                         "started": time.time(), "status": "running", "cwd": os.getcwd(),
                         "base_key": None if config_in_memory(cfg) else base_cache_key(cfg),
                         "base_fingerprint": weights_fingerprint(problem.base_model),
                         "space": space_signature(problem.space)}
                _write_state(out, state)
            except BaseException:
                _release(out)
                raise
        rounds = "; ".join(note for note in (rounds_note(a, cfg.search, len(levels)) for a in agents) if note)
        seeds = trial_seeds(cfg)
        log(f"Sweep {setup.sweep_id}: {len(agents)} agent(s) x {cfg.sweep.seeds} seed(s) "
            f"({seeds[0]}{f'-{seeds[-1]}' if len(seeds) > 1 else ''}) = "
            f"{len(agents) * cfg.sweep.seeds} trial(s), each searching {len(levels)} budget level(s) with "
            f"{cfg.search.evaluations} candidates{f' ({rounds})' if rounds else ''} -> {out}")
        shared_ref = ray.put(problem.shareable())
        tuner = tune.Tuner(
            _trainable(setup, cfg, shared_ref),
            param_space={"agent": tune.grid_search(agents), "seed": tune.grid_search(trial_seeds(cfg))},
            tune_config=tune.TuneConfig(max_concurrent_trials=cfg.sweep.max_concurrent_trials,
                                        trial_dirname_creator=lambda t: trial_name(t.config["agent"], t.config["seed"])),
            run_config=tune.RunConfig(
                name=TUNE_DIR, storage_path=str(out),
                failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                verbose=verbose,
            ),
        )
    # crl's whole rollouts may score more than search.evaluations: the count would otherwise stop short of them
    total = cfg.sweep.seeds * sum(scored_by(a, cfg.search, len(setup.levels)) for a in sweep_agents(cfg))
    with _sigterm_stops_trials(out, resume_how(out, from_python, config_in_memory(cfg))), _tune_output(verbose), tune_endings_held(), \
            (progress_lines(out, total, log) if not verbose else contextlib.nullcontext()):
        results = tuner.fit()
    unfinished = unfinished_count(results, len(sweep_agents(cfg)) * cfg.sweep.seeds)
    if unfinished:  # Tune stops gracefully on Ctrl-C (SIGINT) and returns: no selection on half a search
        _mark(out, "interrupted")
        raise Interrupted(
            f"{unfinished}; no model "
            f"was selected and every scored candidate is kept in {out}. Continue the sweep with: "
            + resume_how(out, from_python, config_in_memory(cfg)))
    errors = [str(r.error) for r in results if r.error is not None]
    failed = [failed_trial(r) for r in results if r.error is not None]
    if errors:
        log(f"{len(errors)} trial(s) failed: " + "; ".join(e.splitlines()[0] for e in errors))
    try:
        summary = finish_sweep(out, log=log, problem=problem, shared_ref=shared_ref, failed_trials=failed)
    except KeyboardInterrupt:
        _mark(out, "interrupted")
        raise Interrupted(
            f"during the selection (re-rank and final fine-tunes): every search finished and every scored candidate "
            f"is kept in {out}, but {out / 'models'} may hold models of an unfinished selection. Finish it with "
            f"(it redoes only the selection): " + resume_how(out, from_python, config_in_memory(cfg))) from None
    summary["trial_errors"] = errors
    return summary


@contextlib.contextmanager
def _sigterm_stops_trials(out: Optional[Path] = None, resume: Optional[str] = None) -> Iterator[None]:
    """While Tune runs the trials, SIGTERM (what a job scheduler or `kill` sends) stops them as Ctrl-C does:
    through Tune's graceful stop (SIGUSR1), so the driver then says the sweep was interrupted and how to resume,
    instead of dying inside Ray with a stack dump. ``out``: ``sweep.json`` says ``interrupted`` at once, before any
    Ray call — a scheduler's SIGTERM to the whole process group also stops the local Ray the driver started, and
    the driver then never got back from Tune to say so. After it, every handler is what it was before (Ctrl-C during
    the selection interrupts it). ``resume``: how to continue the sweep, said at once too (a job's stop sends SIGKILL
    a few seconds after SIGTERM, before a loaded driver got back from Tune to say it). Outside this block, and off
    the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
        yield
        return
    # Tune installs its own SIGINT/SIGUSR1 handlers and leaves them in place after fit(): without restoring them,
    # Ctrl-C during the selection (re-rank, final fine-tunes: the long part) only printed Tune's stop warning
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    def stop(signum: int, frame: Any) -> None:
        if out is not None:
            _mark(out, "interrupted")  # a file write: no Ray, which may be going down with the whole group
        signal.raise_signal(signal.SIGUSR1)
        if out is not None and resume:
            try:  # after the stop is under way: a closed stderr (a pipe killed with the group) must not prevent it
                os.write(2, (f"rayprune sweep: stopping (SIGTERM); every scored candidate is kept in {out}. "
                             f"Continue the sweep with: {resume}\n").encode())
            except OSError:
                pass

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


#: Seconds between two progress lines of a sweep whose Tune output is off (:func:`progress_lines`).
PROGRESS_SECONDS = 30.0


def scored_so_far(out: Path) -> int:
    """Rows in the candidate shards under ``out`` (read from the Parquet footers; a shard being replaced is
    skipped this time)."""
    import pyarrow.parquet as pq

    n = 0
    for shard in (Path(out) / "candidates").glob("part-*.parquet"):
        try:
            n += pq.read_metadata(shard).num_rows
        except Exception:  # noqa: BLE001 - replaced while read: counted next time
            pass
    return n


@contextlib.contextmanager
def progress_lines(out: Path, total: int, log: Log, every: Optional[float] = None) -> Iterator[None]:
    """While Tune's own output is off (``verbose=0``: Python's default, ``rayprune sweep -q``), one line every
    ``every`` seconds (:data:`PROGRESS_SECONDS`) when more candidates were scored, so that a running sweep does not
    look like a hung one in a notebook."""
    every = PROGRESS_SECONDS if every is None else every
    stop = threading.Event()
    started = time.monotonic()

    def report() -> None:
        last = scored_so_far(out)
        while not stop.wait(every):
            n = scored_so_far(out)
            if n != last:
                log(f"{min(n, total)} of {total} candidates scored ({time.monotonic() - started:.0f} s)")
                last = n

    thread = threading.Thread(target=report, name="rayprune-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def unfinished_count(results, trials: int) -> str:
    """``'1 of 2 trial(s) had not finished (crl,seed=0, 1 not started)'``: the trials a Ctrl-C left unfinished, '' if none. Tune's
    results leave out a trial that was still PENDING (it never started), so the sweep's own count of trials
    (agents x seeds) is the total.

    >>> from types import SimpleNamespace as R
    >>> unfinished_count([R(error=None, metrics={"done": False, "trial_name": "crl,seed=0"})], 2)
    '2 of 2 trial(s) had not finished (crl,seed=0, 1 not started)'
    >>> unfinished_count([R(error=None, metrics={"done": True, "trial_name": "a"})], 1)
    ''
    """
    names = unfinished_trials(results)
    total = max(len(results), trials)
    missing = total - len(results)
    if not names and not missing:
        return ""
    listed = ", ".join(names) + (f"{', ' if names else ''}{missing} not started" if missing else "")
    return f"{len(names) + missing} of {total} trial(s) had not finished ({listed})"


def unfinished_trials(results) -> list[str]:
    """Names of the trials in Tune's ``results`` that neither finished (their last report says ``done``) nor
    failed: what a Ctrl-C leaves, which Tune reports as a normal return.

    >>> from types import SimpleNamespace as R
    >>> unfinished_trials([R(error=None, metrics={"done": True, "trial_name": "a"}),
    ...                    R(error=None, metrics={"done": False, "trial_name": "b"}),
    ...                    R(error=RuntimeError("x"), metrics={}), R(error=None, metrics=None),
    ...                    R(error=None, metrics={}, config={"agent": "crl", "seed": 1}),
    ...                    R(error=None, metrics=None, config=None, path="/o/tune/evolution,seed=0")])
    ['b', '?', 'crl,seed=1', 'evolution,seed=0']
    """
    def name(r) -> str:  # a trial stopped before its first report has no trial_name metric: its config says it,
        config = getattr(r, "config", None) or {}  # or, for one that never started, its folder (named after it)
        path = getattr(r, "path", None)
        fallback = (trial_name(config["agent"], config["seed"]) if {"agent", "seed"} <= set(config)
                    else Path(path).name if path else "?")
        return str((r.metrics or {}).get("trial_name") or fallback)

    return [name(r) for r in results if r.error is None and not (r.metrics or {}).get("done")]


def _selection_pool(problem, cfg: Config, shared_ref=None):
    """Evaluators for the re-rank and final fine-tunes, once the trials have freed the cluster."""
    import ray

    from ..evaluation.pool import EvaluatorPool

    free = ray.available_resources()
    ev = cfg.evaluation
    by_cpu = int(free.get("CPU", 0) // ev.cpus_each)
    by_gpu = int(free.get("GPU", 0) // ev.gpus) if ev.gpus else by_cpu
    size = max(1, min(by_cpu, by_gpu, 8))
    return EvaluatorPool(problem, size=size, num_cpus=ev.cpus_each, num_gpus=ev.gpus, max_restarts=ev.max_restarts,
                         max_task_retries=ev.max_task_retries, timeout_s=ev.timeout_s,
                         final_timeout_s=ev.final_timeout_s, name=SELECTION_TRIAL, shared_ref=shared_ref)


def _priors_of(problem, levels, cfg, search: pd.DataFrame):
    """The structured candidates of a weak level's finals (``search.rerank.weak_uniform``, ``weak_global``:
    :func:`~rayprune.search.selection.weak_level_priors`). A timed budget (latency) is aimed at through the cost
    proxy fitted on the sweep's measured ``search`` rows, as the trials' own spaces were."""
    from functools import cache

    from ..agents import SearchSpace
    from ..search.selection import weak_level_priors

    @cache
    def space() -> SearchSpace:  # built only if a level is weak
        built = SearchSpace.from_problem(problem, levels)
        built.observe(search.to_dict("records"))
        return built

    return weak_level_priors(cfg.search.rerank, space)


def failed_trial(result) -> dict[str, Any]:
    """A failed Tune trial as the summary lists it: its name, the first line of its error, and the candidates it had
    scored when it failed (its last report; 0 when it reported nothing)."""
    config = getattr(result, "config", None) or {}
    name = trial_name(config["agent"], config["seed"]) if "agent" in config and "seed" in config else "?"
    metrics = getattr(result, "metrics", None) or {}
    return {"trial": name, "error": (str(result.error).strip().splitlines() or [""])[0][:300],
            "evaluations": int(metrics.get("evaluations") or 0)}


def finish_sweep(out_dir: str | Path, *, log: Log = print, problem=None, shared_ref=None,
                 failed_trials: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """Select and export one model per level from the whole store, then fronts and the report.

    ``shared_ref``: ``problem``'s shareable already in the object store (the trials' copy).
    ``failed_trials`` (:func:`failed_trial`): trials that failed before their search ended; the models are
    selected from what every trial scored, and the summary (and report) say the sweep is incomplete.
    Safe to run again: the selection's earlier rows are replaced."""
    from ..evaluation.score import score_specs
    from ..problem import PruningProblem
    from ..results import CandidateWriter, drop_rows_after
    from ..search.prune import say_fixed_costs
    from ..search.score_signal import chance_and_base, say_metric_direction
    from ..search.selection import select_and_finalize

    out = Path(out_dir)
    if problem is None:
        shared_ref = None  # it would be another problem's
    state = load_state(out)
    cfg = parse_config(state["config"])
    setup = SweepSetup(**state["setup"])
    levels = [Level.from_json(lvl) for lvl in setup.levels]
    rows = read_candidates(out)
    search = rows[rows["stage"] == STAGE_SEARCH] if not rows.empty else rows
    results = []
    if not search.empty:
        if problem is None:
            problem = PruningProblem.from_config(cfg, progress=False, log=log, base_costs=setup.base_costs,
                                                 base_accuracy=setup.base_accuracy)
        _, rerank = score_specs(cfg)
        drop_rows_after(out, SELECTION_TRIAL, -1)  # a selection run before (an interrupted finish) is redone
        writer = CandidateWriter(out, constants={"sweep_id": setup.sweep_id, "trial_id": SELECTION_TRIAL, "stage": STAGE_SELECT},
                                 name=SELECTION_TRIAL)
        say_fixed_costs(search, levels, setup.base_costs, log)
        say_metric_direction(search, problem, log)
        pool = _selection_pool(problem, cfg, shared_ref)
        try:
            pool.wait_ready()
            results = select_and_finalize(search, levels, pool=pool, out_dir=out, rerank_spec=rerank,
                                          top_k=cfg.search.rerank.top_k, writer=writer, seed=cfg.seed,
                                          cost_names=list(setup.base_costs), log=log,
                                          extra={"sweep_id": setup.sweep_id}, reference=chance_and_base(problem),
                                          weak_finals=cfg.search.rerank.weak_finals,
                                          priors=_priors_of(problem, levels, cfg, search))
        finally:
            pool.shutdown()
    try:
        merge_candidates(out)
    except Exception as exc:  # noqa: BLE001 - every row is still in the shards
        log(f"warning: could not merge the shards into candidates.parquet ({exc}); rows are in {out / 'candidates'}/")
    rows = read_candidates(out)
    costs = [c for c in cfg.cost_names() if c in rows.columns] if not rows.empty else []
    front = pd.DataFrame()
    if not rows.empty:
        finals = exported_rows(rows)
        front = with_served_levels(pareto_front(finals, costs), finals, levels)
        write_parquet_atomic(frame_table(front), out / "pareto.parquet")
        history = front_history(rows[rows["stage"] == STAGE_SEARCH], costs)
        if not history.empty:
            write_parquet_atomic(pa.Table.from_pandas(history, preserve_index=False), out / "front_history.parquet")
    summary = {"rows": int(len(rows)), "front_size": int(len(front)),
               "levels": [r.to_json() for r in results], "monotone": _is_monotone(results),
               "failed_trials": list(failed_trials or [])}
    state.update(finished=time.time(), status="finished", summary=summary)
    _write_state(out, state)
    from ..report import make_report, summary_text

    summary["report"] = str(make_report(out))
    log(summary_text(out))
    return summary


def _is_monotone(results) -> bool:
    """Whether no level that contains another ended with a less accurate model (validation)."""
    from ..costs.levels import contains

    for a in results:
        for b in results:
            if a is not b and contains(a.level, b.level) and b.accuracy_val is not None and (
                    a.accuracy_val is None or a.accuracy_val < b.accuracy_val):
                return False
    return True

