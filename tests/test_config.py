"""Config validation: unknown keys, numbers as strings, budgets, duplicate keys, paths."""

from pathlib import Path

import pytest

from rayprune.config import Config, ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_configs_validate():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert isinstance(cfg, Config), path


def test_every_problem_reported_with_its_key_path():
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "model": {"nmae": "vgg16"},
                "search": {"finetune": {"iteratons": 3, "iterations": 5}},
                "pruning": {"min_keep": 0},
            },
            source="bad.yaml",
        )
    text = str(err.value)
    assert "bad.yaml" in text and "3 problem(s)" in text
    assert "model.nmae: unknown key" in text
    assert "search.finetune.iteratons: unknown key" in text
    assert "pruning.min_keep" in text and "greater than 0" in text


def test_misspelled_key_in_yaml_file_names_the_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: small_cnn\ndata:\n  nmae: digits\n")
    with pytest.raises(ConfigError, match=r"data\.nmae: unknown key"):
        load_config(path)


def test_numbers_written_as_strings_are_converted_and_checked():
    cfg = parse_config({"search": {"finetune": {"lr": "1e-3", "iterations": 10}}})
    assert cfg.search.finetune.lr == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match=r"search\.finetune\.lr"):
        parse_config({"search": {"finetune": {"lr": "fast", "iterations": 10}}})


def test_relative_budget_out_of_range_names_constraint_and_value():
    with pytest.raises(ConfigError, match=r"'params' must be in \(0, 1\] for a relative budget; got 1\.5"):
        parse_config({"budgets": {"params": 1.5}})


def test_absolute_and_explicit_budgets():
    cfg = parse_config({"budgets": {"latency_ms": 4.0, "macs": {"value": 2e8, "relative": False}, "params": 0.5}})
    budgets = {b.metric: b for b in cfg.budget_list()}
    assert not budgets["latency_ms"].relative and budgets["latency_ms"].limit(123.0) == 4.0
    assert not budgets["macs"].relative and budgets["macs"].limit(1e9) == 2e8
    assert budgets["params"].relative and budgets["params"].limit(1000) == 500


def test_unknown_cost_in_budgets_is_an_error_that_lists_builtins():
    with pytest.raises(ConfigError, match=r"unknown costs \['latncy'\].*latency_ms"):
        parse_config({"budgets": {"latncy": 3.0}})


def test_user_cost_must_be_declared_under_costs_custom():
    cfg = parse_config({"costs": {"custom": {"energy": "mypkg.costs:energy"}}, "budgets": {"energy": 2.0}})
    assert cfg.cost_names() == ["params", "macs", "energy"]


def test_exactly_one_of_iterations_and_epochs():
    with pytest.raises(ConfigError, match="exactly one of 'iterations' and 'epochs'"):
        parse_config({"search": {"finetune": {"iterations": 3, "epochs": 1}}})
    with pytest.raises(ConfigError, match="exactly one of 'iterations' and 'epochs'"):
        parse_config({"base_training": {"epochs": None}})
    # (a fine-tune section given without either keeps its default length: see below)


def test_fractions_must_leave_training_data():
    with pytest.raises(ConfigError, match=r"val_fraction \+ test_fraction must be < 1"):
        parse_config({"data": {"val_fraction": 0.5, "test_fraction": 0.5}})


def test_duplicate_yaml_keys_are_rejected(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("budgets:\n  params: 0.5\n  params: 0.25\n")
    with pytest.raises(ConfigError, match="duplicate key 'params'"):
        load_config(path)


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("model:\n  checkpoint: weights.pt\ndata:\n  name: cifar10\n  root: ../cifar\n")
    cfg = load_config(path)
    assert cfg.model.checkpoint == (tmp_path / "sub" / "weights.pt").resolve()
    assert cfg.data.root == (tmp_path / "cifar").resolve()


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config("nope.yaml")


def test_overrides_merge_deeply():
    cfg = parse_config({"search": {"finetune": {"iterations": 7}}}, overrides={"search": {"agent": "random"}})
    assert cfg.search.agent == "random" and cfg.search.finetune.iterations == 7


def test_benchmark_configs_validate_and_their_pinned_bases_load(monkeypatch):
    """configs/bench/*.yaml validate; a pinned base (model.checkpoint) is in the repository and loads
    into the architecture its config names (benchmarks/bases/: the converged bases the rows were measured on)."""
    import torch

    from rayprune.base_model import obtain_base_model
    from rayprune.problem import configured_dataset

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # user_models:dsconv_net lives there
    pinned = []
    for path in sorted((REPO / "configs" / "bench").glob("*.yaml")):
        cfg = load_config(path)
        if cfg.model.checkpoint is None:
            continue
        assert cfg.model.checkpoint.is_file(), f"{path.name}: pinned base {cfg.model.checkpoint} is missing"
        model, info = obtain_base_model(cfg, configured_dataset(cfg), device=torch.device("cpu"), progress=False,
                                        log=lambda m: None, train=False)
        assert info["source"] == "checkpoint" and sum(p.numel() for p in model.parameters()) > 0
        pinned.append(path.stem)
    assert {"user_cnn_trained_mnist", "resnet20_trained_mnist", "small_cnn_digits", "user_cnn_mnist", "resnet20_mnist",
            "vgg11_mnist"} <= set(pinned)


def test_a_malformed_budget_is_one_problem_saying_what_a_budget_looks_like():
    from rayprune.config import ConfigError, parse_config

    for bad, expected in (({"params": "half"}, "got 'half'"), ({"params": {"vlaue": 0.5}}, "['vlaue'] unknown"),
                          ({"params": True}, "got True")):
        with pytest.raises(ConfigError, match="1 problem") as err:
            parse_config({"budgets": bad})
        assert "budgets.params: expected a number" in str(err.value) and expected in str(err.value)
    assert parse_config({"budgets": {"params": "0.5"}}).budgets["params"] == 0.5  # a number in quotes is a number
    from rayprune.config import BudgetConfig, Config

    made = BudgetConfig(value=30, relative=False)  # the public class itself, as the Python API may pass it
    assert Config(budgets={"params": made}).budgets["params"] == made


def test_an_unset_evaluation_cpus_is_fitted_to_the_nodes_bundle_by_bundle():
    """Each bundle goes whole on one node: two 1-CPU nodes hold a 0.25 trial and two evaluators at 0.75, not 0.85."""
    from rayprune.config.search import EvaluationConfig

    one_node, message = EvaluationConfig().fitted([2.0], reserved=0.25)
    assert one_node.cpus == 0.85 and "CPUs per node: 2" in message
    two_nodes, message = EvaluationConfig().fitted([1.0, 1.0], reserved=0.25)
    assert two_nodes.cpus == 0.75 and "CPUs per node: 1, 1" in message
    assert EvaluationConfig(evaluators=3).fitted([1.0, 1.0])[0].cpus == 0.5  # prune: no trial bundle; 2 + 1 per node
    roomy, message = EvaluationConfig().fitted([8.0, 8.0], reserved=0.25)
    assert roomy.cpus == 1.0 and message is None
    assert EvaluationConfig(cpus=0.6).fitted([1.0, 1.0], reserved=0.25)[0].cpus == 0.6  # set: kept as given


def test_an_autoscaling_cluster_keeps_one_cpu_per_evaluator_without_asking_ray():
    from rayprune.search.prune import fitted_evaluation

    cfg = parse_config({"model": {"name": "small_cnn"}, "data": {"name": "digits"},
                        "sweep": {"wait_for_resources": True}}, source="x")
    assert fitted_evaluation(cfg, 0.25, log=print).cpus == 1.0


def test_bundles_that_fit_the_totals_but_not_the_nodes_are_refused_with_the_numbers(monkeypatch):
    from rayprune.search import prune

    monkeypatch.setattr(prune, "node_resources", lambda: [{"CPU": 1.0, "GPU": 0.0}] * 2)
    cpus = lambda *c: [{"CPU": x} for x in c]  # noqa: E731
    message = prune.unplaceable(cpus(0.25, 0.85, 0.85), "One trial's bundles")
    assert message == ("One trial's bundles (0.25 + 0.85 + 0.85 CPUs) cannot be placed on this cluster's nodes "
                       "(CPUs per node: 1, 1): each must fit on one node")
    assert prune.unplaceable(cpus(0.25, 0.75, 0.75), "One trial's bundles") is None
    assert prune.unplaceable(cpus(0.6, 0.5, 0.5, 0.4), "x") is None  # 0.6 + 0.4 | 0.5 + 0.5: first fit alone refused it


def test_an_evaluator_needs_its_cpus_on_the_node_that_holds_its_gpu_share(monkeypatch):
    """A CPU head and one GPU worker: the totals fit, but 5 evaluators of 1 CPU + 0.2 GPU need 5 CPUs beside the GPU."""
    from rayprune.config.search import EvaluationConfig
    from rayprune.search import prune

    head, gpu_worker = {"CPU": 8.0, "GPU": 0.0}, {"CPU": 4.0, "GPU": 1.0}
    monkeypatch.setattr(prune, "node_resources", lambda: [head, gpu_worker])
    trial = [{"CPU": 0.25}]
    assert prune.unplaceable(trial + [{"CPU": 1.0, "GPU": 0.25}] * 4, "One trial's bundles") is None
    message = prune.unplaceable(trial + [{"CPU": 1.0, "GPU": 0.2}] * 5, "One trial's bundles")
    assert message == ("One trial's bundles (0.25 CPU; 5 x (1 CPU + 0.2 GPU)) cannot be placed on this cluster's "
                       "nodes (per node: 8 CPU; 4 CPU + 1 GPU): each must fit on one node")
    # An unset evaluation.cpus is fitted to the GPU worker's CPUs, not to the head's.
    fitted, line = EvaluationConfig(evaluators=5, gpus=0.2).fitted([head, gpu_worker], reserved=0.25)
    assert fitted.cpus == 0.8 and "per node: 8 CPU; 4 CPU + 1 GPU" in line
    assert EvaluationConfig(evaluators=2, gpus=0.5).fitted([head, gpu_worker], reserved=0.25)[0].cpus == 1.0



def test_base_training_of_zero_epochs_says_so(tmp_path):
    """An untrained base on purpose (epochs: 0): the log line reads '0 epochs' (it raised a TypeError once)."""
    import torch

    from rayprune.base_model import obtain_base_model
    from rayprune.problem import configured_dataset

    cfg = parse_config({"model": {"name": "mlp", "kwargs": {"hidden_sizes": [8]}}, "data": {"name": "sklearn:iris"},
                        "base_training": {"epochs": 0, "cache_dir": str(tmp_path)}}, source="x")
    lines: list[str] = []
    obtain_base_model(cfg, configured_dataset(cfg), device=torch.device("cpu"), progress=False, log=lines.append)
    assert any("(0 epochs)" in line for line in lines), lines


def _notebook_cost(model, context):
    return 1.0


@pytest.mark.parametrize("section, field", [({"costs": {"custom": {"size": _notebook_cost}}}, "costs.custom.size"),
                                            ({"engine": {"loss": _notebook_cost}}, "engine.loss"),
                                            ({"search": {"metric": _notebook_cost}}, "search.metric")])
def test_a_function_object_where_a_name_belongs_says_what_to_write_and_why(section, field):
    from rayprune.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config({"name": "nb", **section})
    message = str(err.value)
    assert f"{field} takes the function's name, 'package.module:function', not the function object" in message
    assert "Write 'test_config:_notebook_cost'" in message and "other processes" in message  # its module is known
    _notebook_cost.__module__ = "__main__"  # as in a notebook: no module to name
    try:
        with pytest.raises(ConfigError) as err:
            parse_config({"name": "nb", **section})
    finally:
        _notebook_cost.__module__ = __name__
    assert "'that_module:_notebook_cost'" in str(err.value)
    with pytest.raises(ConfigError, match="'that_module:<lambda>'"):  # a lambda has no name to import it by
        parse_config({"name": "nb", "search": {"metric": lambda model, split, context: 1.0}})


def test_budget_strings_read_as_on_the_command_line_and_unknown_costs_name_the_configs_own():
    cfg = parse_config({"budgets": {"params": "40%", "latency_ms": "rel:0.5", "fb": "abs:5000"},
                        "costs": {"measure": ["params", "latency_ms", "fb"], "custom": {"fb": "m:f"}}})
    assert {b.metric: (b.value, b.relative) for b in cfg.budget_list()} == {
        "params": (0.4, True), "latency_ms": (0.5, True), "fb": (5000.0, False)}
    with pytest.raises(ConfigError, match=r"budgets.params: The value of budget 'params' must be a number"):
        parse_config({"budgets": {"params": "rel:x"}})
    with pytest.raises(ConfigError, match=r"unknown costs \['fbytes'\] \(did you mean fb\?\).*own costs \(costs.custom\) "
                                          r"are \['fb'\]"):
        parse_config({"budgets": {"fbytes": 0.3}, "costs": {"custom": {"fb": "m:f"}}})


def test_sweep_levels_take_budget_strings_as_budgets_and_the_command_line_do():
    """sweep.budgets refused 'abs:48' ("Input should be a valid number") where budgets and --budgets took it."""
    from rayprune.costs.levels import levels_from_config

    cfg = parse_config({"costs": {"measure": ["params", "latency_ms", "kib"], "custom": {"kib": "m:f"}},
                        "sweep": {"budgets": {"kib": ["abs:48", 32], "latency_ms": ["90%", "rel:0.8"],
                                              "params": ["50%", 0.25]}}})
    assert cfg.sweep.budgets == {"kib": [48.0, 32.0], "latency_ms": [0.9, 0.8], "params": [0.5, 0.25]}
    assert cfg.budgets == {} and cfg.sweep.relative == {"kib": False, "latency_ms": True, "params": True}
    levels = levels_from_config(cfg, {"params": 1000.0, "latency_ms": 10.0, "kib": 100.0}, sweep=True)
    assert {tuple(sorted(lvl.limits.items())) for lvl in levels} == {
        (("kib", k), ("latency_ms", 10.0 * f), ("params", 1000.0 * p))
        for k in (48.0, 32.0) for f in (0.9, 0.8) for p in (0.5, 0.25)}
    with pytest.raises(ConfigError, match=r"sweep.budgets.params: 'params' mixes relative and absolute levels"):
        parse_config({"sweep": {"budgets": {"params": ["abs:5000", "50%"]}}})
    # the single budget of `rayprune prune` is its own: neither changed nor added by the sweep's marked levels
    both = parse_config({"budgets": {"latency_ms": {"value": 0.8}, "params": 0.5},
                         "sweep": {"budgets": {"latency_ms": ["90%"], "params": ["abs:1e5"]}}})
    assert {b.metric: (b.value, b.relative) for b in both.budget_list()} == {
        "latency_ms": (0.8, False), "params": (0.5, True)}
    [level] = levels_from_config(both, {"params": 1e6, "latency_ms": 10.0}, sweep=True)
    assert level.limits == {"latency_ms": 9.0, "params": 1e5}


def test_a_check_across_sections_reads_as_its_own_message_not_pydantic_jargon():
    """A misspelt budget printed "- (top level): Value error, budgets names unknown costs ['param']"."""
    with pytest.raises(ConfigError) as err:
        parse_config({"budgets": {"param": 0.5}})
    assert "\n  - budgets names unknown costs ['param'] (did you mean params?)" in str(err.value)
    assert "top level" not in str(err.value) and "Value error" not in str(err.value)
    with pytest.raises(ConfigError) as twice:  # a message naming its own field is not prefixed with its section again
        parse_config({"budgets": {"params": "abs:50%"}})
    assert "\n  - budgets.params: Budget 'params'" in str(twice.value) and "budgets: budgets" not in str(twice.value)


def test_a_budget_the_sweep_levels_lack_is_warned_about_and_a_one_value_list_caps_every_level():
    """rayprune.sweep(budgets=...) was documented as 'fixed budgets every level also meets' and was dropped without a
    word: a MACs cap next to params levels limited nothing."""
    from rayprune.costs.levels import levels_from_config, unswept_budget_lines

    base = {"params": 1000.0, "macs": 1e6}
    cfg = parse_config({"budgets": {"params": 0.4, "macs": 0.3}, "sweep": {"budgets": {"params": [0.5, 0.25]}}})
    [line] = unswept_budget_lines(cfg)
    assert line.startswith("warning: budgets.macs (0.3) is not a limit of the sweep's levels") and "macs: [0.3]" in line and "levels={..., 'macs': [0.3]}" in line
    assert all("macs" not in lvl.limits for lvl in levels_from_config(cfg, base, sweep=True))
    capped = parse_config({"sweep": {"budgets": {"params": [0.5, 0.25], "macs": [0.3]}}})  # the advice
    assert unswept_budget_lines(capped) == []
    assert [lvl.limits["macs"] for lvl in levels_from_config(capped, base, sweep=True)] == [3e5, 3e5]
    assert unswept_budget_lines(parse_config({"budgets": {"params": 0.4}})) == []  # no sweep levels: prune's budget


def test_an_agent_listed_twice_in_a_sweep_is_refused():
    """[random, random] ran the same search (same seed) twice under one trial name and summed its candidates."""
    with pytest.raises(ConfigError, match=r"sweep.agents: lists 'random' more than once; each agent runs once per seed"):
        parse_config({"sweep": {"agents": ["random", "crl", "random"]}})


def test_a_fine_tune_section_given_without_a_length_keeps_the_default_length():
    """`search.finetune: {optimizer: adam, lr: 0.001}` was refused ('exactly one of iterations and epochs'): the
    default 50 iterations lived in the section's factory, which a given section replaced."""
    from rayprune.config.search import DEFAULT_ITERATIONS

    cfg = parse_config({"search": {"finetune": {"optimizer": "adam", "lr": 1e-3},
                                   "final_finetune": {"lr": 0.001}}}, source="test")
    assert (cfg.search.finetune.optimizer, cfg.search.finetune.iterations) == ("adam", DEFAULT_ITERATIONS["finetune"])
    assert cfg.search.final_finetune.iterations == DEFAULT_ITERATIONS["final_finetune"] == 600
    base = parse_config({"base_training": {"iterations": 100}}, source="test").base_training  # the same trap
    assert (base.iterations, base.epochs) == (100, None)
    given = parse_config({"search": {"finetune": {"epochs": 2}}}, source="test").search.finetune
    assert (given.iterations, given.epochs) == (None, 2.0)  # a length given is kept, not added to
    with pytest.raises(ConfigError, match="exactly one of 'iterations' and 'epochs'"):
        parse_config({"search": {"finetune": {"epochs": 2, "iterations": 5}}}, source="test")


@pytest.mark.parametrize("section", [{"costs": {"custom": {"k": "__main__:f"}}}, {"search": {"metric": "__main__:f"}},
                                     {"engine": {"loss": "__main__:f"}}])
def test_a_function_of_main_is_refused_up_front(section):
    """`costs.custom: {k: "__main__:my_cost"}` from a notebook was accepted, measured on the base in the driver, and
    then every evaluator died with a Ray traceback (their __main__ is not the notebook)."""
    with pytest.raises(ConfigError, match=r"names a function of __main__ \('__main__:f'\).*write 'that_module:f'"):
        parse_config(section, source="test")


def test_sweep_levels_as_the_python_api_names_them_points_at_sweep_budgets():
    with pytest.raises(ConfigError, match=r"sweep.levels: unknown key \(did you mean budgets\?\)"):
        parse_config({"sweep": {"levels": {"params": [0.5, 0.25]}}}, source="test")


def test_the_cache_folder_expands_a_tilde_and_ignores_an_empty_value(monkeypatch):
    """RAYPRUNE_CACHE="" put the cache in the working directory, and "~/rp" made a folder called "~" there."""
    from pathlib import Path

    from rayprune.config import default_cache_dir

    monkeypatch.setenv("RAYPRUNE_CACHE", "")
    assert default_cache_dir() == Path.home() / ".cache" / "rayprune"
    monkeypatch.setenv("RAYPRUNE_CACHE", "~/rp")
    assert default_cache_dir() == Path.home() / "rp"
    monkeypatch.setenv("RAYPRUNE_CACHE", "/tmp/rp-cache")
    assert default_cache_dir() == Path("/tmp/rp-cache")
