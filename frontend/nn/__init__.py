"""Layers under PyTorch's names, parameter layouts and state_dict keys."""
from frontend.nn.module import Module, Parameter

__all__ = ["Module", "Parameter"]
