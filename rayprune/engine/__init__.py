"""Fine-tune, evaluate and re-calibrate BatchNorm: the plain-PyTorch loop each candidate runs.

Example:
    >>> import torch
    >>> from rayprune.data import load_dataset
    >>> from rayprune.engine import FineTuneConfig, evaluate, fine_tune, recalibrate_batchnorm
    >>> data = load_dataset("sklearn:iris", seed=0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.BatchNorm1d(16),
    ...                             torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> _ = fine_tune(model, data, FineTuneConfig(iterations=100, lr=0.1, batch_size=32))
    >>> recalibrate_batchnorm(model, data.x_train)
    >>> evaluate(model, data.x_test, data.y_test) > 0.8
    True
"""

from rayprune.engine.batchnorm import recalibrate_batchnorm
from rayprune.engine.evaluate import channels_last, evaluate, model_device, training_mode, wants_channels_last
from rayprune.engine.train import FineTuneConfig, ProgressCallback, checked_loss, fine_tune

__all__ = [
    "FineTuneConfig",
    "ProgressCallback",
    "channels_last",
    "checked_loss",
    "evaluate",
    "fine_tune",
    "model_device",
    "recalibrate_batchnorm",
    "training_mode",
    "wants_channels_last",
]
