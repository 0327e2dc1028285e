"""Model zoo and model loading: CIFAR-style VGG/ResNet, a NEON-style MLP and a small CNN.

Plain PyTorch: nothing here imports Ray, and torchvision only when a ``torchvision:<name>`` model is
asked for.

Example:
    >>> from rayprune.models import build_model, output_layer_name
    >>> model = build_model("vgg16", num_classes=10, width_mult=0.25)
    >>> output_layer_name(model)
    'classifier'
"""

from rayprune.models.registry import (
    build_model,
    check_input_shape,
    check_model_for_data,
    check_output_width,
    list_models,
    load_model,
    output_layer_name,
)

__all__ = ["build_model", "check_input_shape", "check_output_width", "check_model_for_data", "list_models", "load_model", "output_layer_name"]
