"""rayprune.engine: fine-tuning, evaluation and BatchNorm re-calibration on tiny inline models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rayprune.data import Dataset, load_dataset
from rayprune.engine import FineTuneConfig, evaluate, fine_tune, recalibrate_batchnorm


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy shared CPU the threads'
    spin-waiting made these steps ~30x slower; restore the setting for other test modules."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _quadrants(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four linearly separable classes: the quadrant of the first two of four features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    x[:, :2] += torch.sign(x[:, :2]) * 0.3  # a margin around the axes
    y = (x[:, 0] > 0).long() * 2 + (x[:, 1] > 0).long()
    return x, y


@pytest.fixture(scope="module")
def quadrants() -> Dataset:
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (
        _quadrants(n, seed) for n, seed in ((512, 0), (128, 1), (256, 2))
    )
    return Dataset("quadrants", "tabular", x_train, y_train, x_val, y_val, x_test, y_test,
                   num_classes=4, input_shape=(4,))


def _mlp(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 4))


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# ----------------------------------------------------------------------------- fine_tune


def test_fine_tune_learns_a_separable_problem(quadrants: Dataset) -> None:
    model = _mlp()
    before = evaluate(model, quadrants.x_test, quadrants.y_test)
    result = fine_tune(model, quadrants, FineTuneConfig(iterations=100, lr=0.1, batch_size=64))
    after = evaluate(model, quadrants.x_test, quadrants.y_test)
    assert before < 0.6 < 0.9 < after
    assert result["iterations"] == 100 and result["seconds"] > 0
    assert result["final_loss"] < 0.5


def test_fine_tune_is_deterministic_and_leaves_the_global_rng_alone(quadrants: Dataset) -> None:
    config = FineTuneConfig(iterations=30, lr=0.05, batch_size=32)
    first, second, other = _mlp(dropout=0.5), _mlp(dropout=0.5), _mlp(dropout=0.5)
    state = torch.get_rng_state()
    fine_tune(first, quadrants, config, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    fine_tune(second, quadrants, config, seed=3)
    fine_tune(other, quadrants, config, seed=4)
    assert _same_weights(first, second)
    assert not _same_weights(first, other)


def test_zero_iterations_is_a_no_op(quadrants: Dataset) -> None:
    model, reference = _mlp(), _mlp()
    result = fine_tune(model, quadrants, FineTuneConfig(iterations=0))
    assert result["iterations"] == 0 and math.isnan(result["final_loss"])
    assert _same_weights(model, reference)


def test_epochs_set_the_number_of_iterations(quadrants: Dataset) -> None:
    result = fine_tune(_mlp(), quadrants, FineTuneConfig(epochs=1.5, batch_size=100))
    assert result["iterations"] == math.ceil(1.5 * (512 // 100))


@pytest.mark.parametrize("lengths", [{}, {"iterations": 10, "epochs": 1.0}])
def test_config_needs_exactly_one_of_iterations_and_epochs(lengths: dict) -> None:
    with pytest.raises(ValueError, match="'iterations' and 'epochs'"):
        FineTuneConfig(**lengths)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", 0.0), ("momentum", 1.0), ("optimizer", "rmsprop"), ("batch_size", 0),
     ("schedule", "step"), ("iterations", -1), ("label_smoothing", 1.0)],
)
def test_config_errors_name_the_field(field: str, value: object) -> None:
    kwargs = {"iterations": 10, field: value}
    with pytest.raises(ValueError, match=f"'{field}'.*{value!r}"):
        FineTuneConfig(**kwargs)


class _NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * float("nan")


def test_nan_loss_raises_with_the_step(quadrants: Dataset) -> None:
    with pytest.raises(FloatingPointError, match="at step 0"):
        fine_tune(_NaNModel(), quadrants, FineTuneConfig(iterations=5))
    with pytest.raises(FloatingPointError, match="at step [0-9]+"):
        fine_tune(_mlp(), quadrants,
                  FineTuneConfig(iterations=50, lr=1e30, schedule="constant"))


def test_progress_callable_sees_steps_and_losses(quadrants: Dataset) -> None:
    calls = []
    fine_tune(_mlp(), quadrants, FineTuneConfig(iterations=25),
              progress=lambda step, total, loss: calls.append((step, total, loss)))
    assert [(step, total) for step, total, _ in calls] == [(10, 25), (20, 25), (25, 25)]
    assert all(math.isfinite(loss) for _, _, loss in calls)


def test_progress_true_shows_a_bar(quadrants: Dataset, capsys: pytest.CaptureFixture) -> None:
    fine_tune(_mlp(), quadrants, FineTuneConfig(iterations=10), progress=True)
    assert "fine-tune" in capsys.readouterr().err


def test_fine_tune_with_image_augmentation_runs() -> None:
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    result = fine_tune(model, data, FineTuneConfig(iterations=20, batch_size=64, lr=0.05))
    assert result["iterations"] == 20 and math.isfinite(result["final_loss"])
    assert evaluate(model, data.x_val, data.y_val) > 0.1


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_counts_correct_predictions_and_restores_modes() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.9))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 1, 1])
    model.train()
    model[1].eval()  # a deliberately mixed state survives
    assert evaluate(model, x, y, batch_size=3) == 0.75  # dropout off, else this would vary
    assert model.training and not model[1].training and model[0].training
    model.eval()
    evaluate(model, x, y)
    assert not model.training


# ----------------------------------------------------------------------------- batchnorm


def test_recalibrate_batchnorm_sets_running_mean_to_the_data_mean() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(3, momentum=0.3), nn.Linear(3, 2), nn.Dropout(0.5))
    model[0].running_mean.fill_(100.0)  # stale statistics that must be replaced
    x = torch.randn(512, 3) * torch.tensor([1.0, 2.0, 3.0]) + torch.tensor([3.0, -2.0, 5.0])
    model.train()
    recalibrate_batchnorm(model, x, batch_size=128)
    assert torch.allclose(model[0].running_mean, x.mean(0), atol=1e-5)
    # Equal batches: the running variance is the mean of the unbiased per-batch variances.
    batch_vars = torch.stack([chunk.var(0) for chunk in x.split(128)]).mean(0)
    assert torch.allclose(model[0].running_var, batch_vars, atol=1e-4)
    assert model[0].momentum == 0.3 and model.training and model[2].training


def test_recalibrate_batchnorm_uses_an_even_spread_of_samples() -> None:
    model = nn.Sequential(nn.BatchNorm2d(2)).eval()
    x = torch.zeros(1000, 2, 4, 4)
    x[500:, 0] = 10.0  # sorted "classes": the first 2 batches alone would miss the second half
    recalibrate_batchnorm(model, x, batch_size=50, max_batches=4)
    assert abs(float(model[0].running_mean[0]) - 5.0) < 0.2
    assert float(model[0].running_mean[1]) == 0.0
    assert not model.training


def test_recalibrate_batchnorm_without_batchnorm_is_a_no_op() -> None:
    model, reference = _mlp(), _mlp()
    recalibrate_batchnorm(model, torch.randn(16, 4))
    assert _same_weights(model, reference)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fine_tune_on_gpu_is_deterministic_and_leaves_rngs_alone(quadrants: Dataset) -> None:
    data = quadrants.to("cuda")
    config = FineTuneConfig(iterations=30, lr=0.05, batch_size=32)
    first, second = _mlp(dropout=0.5).cuda(), _mlp(dropout=0.5).cuda()  # _mlp reseeds: take the states after
    cpu_state, cuda_state = torch.get_rng_state(), torch.cuda.get_rng_state()
    fine_tune(first, data, config, seed=1)
    fine_tune(second, data, config, seed=1)
    assert _same_weights(first, second)
    assert torch.equal(torch.get_rng_state(), cpu_state)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
    # Evaluation moves CPU batches to the model's device.
    assert evaluate(first, quadrants.x_test, quadrants.y_test) == evaluate(
        first, data.x_test, data.y_test
    )
