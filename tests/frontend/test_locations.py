"""Every node's loc is the user's line: the line in forward that made it, or, for a library
layer called by another library layer (a Sequential), the line that built the layer."""
import dlc
from dlc import nn

BUILT_AT = __file__.rsplit("/", 1)[-1]


def build_sequential():
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))  # the building line


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = build_sequential()
        self.head = nn.Linear(2, 1)

    def forward(self, x):
        return self.head(self.body(x)).sum()  # the forward line


def line_of(marker: str) -> int:
    with open(__file__) as f:
        return next(i for i, text in enumerate(f, 1) if marker in text and "line_of" not in text)


def test_sequential_nodes_point_at_the_line_that_built_it():
    graph = dlc.trace(build_sequential(), dlc.TensorSpec((2, 4)))
    built = line_of("# the building line")
    assert graph.nodes and all(n.loc and n.loc.endswith(f"{BUILT_AT}:{built}")
                               for n in graph.nodes)


def test_user_forward_lines_win_over_building_lines():
    graph = dlc.trace(Model(), dlc.TensorSpec((2, 4)))
    fwd = line_of("# the forward line")
    assert graph.nodes and all(n.loc.endswith(f"{BUILT_AT}:{fwd}") for n in graph.nodes)
