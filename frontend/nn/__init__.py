"""Layers under PyTorch's names, parameter layouts and state_dict keys.

Each module file defines `__all__`; this package re-exports them all.
"""
from frontend.nn.module import Module, Parameter
from frontend.nn.container import *  # noqa: F401,F403
from frontend.nn.activation import *  # noqa: F401,F403
from frontend.nn.linear import *  # noqa: F401,F403
from frontend.nn.conv import *  # noqa: F401,F403
from frontend.nn.pooling import *  # noqa: F401,F403
from frontend.nn.norm import *  # noqa: F401,F403
from frontend.nn.dropout import *  # noqa: F401,F403
from frontend.nn.embedding import *  # noqa: F401,F403
from frontend.nn.attention import *  # noqa: F401,F403
from frontend.nn.transformer import *  # noqa: F401,F403
from frontend.nn.recurrent import *  # noqa: F401,F403
from frontend.nn.graph import *  # noqa: F401,F403
from frontend.nn import (activation, attention, container, conv, dropout, embedding,  # noqa
                         graph, linear, norm, pooling, recurrent, transformer)

__all__ = ["Module", "Parameter"] + [
    name for mod in (container, activation, linear, conv, pooling, norm, dropout, embedding,
                     attention, transformer, recurrent, graph) for name in mod.__all__]
