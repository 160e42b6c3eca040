"""A two-layer GCN on Zachary's karate club: the two factions from four labelled members.

The 34 members of the club are the nodes, their friendships the edges (the graph ships
with networkx). After the split, each member followed either the instructor (node 0, "Mr.
Hi") or the club's officer (node 33). Only four nodes are labelled: the two leaders and
one close friend of each; the other 30 carry the ignore label, so cross_entropy skips
them. The features are one-hot node ids, so all the model knows is the graph.

    python examples/gcn_karate.py                  # train, print the accuracy and time
    python examples/gcn_karate.py --backend llvm
    dlc train examples/gcn_karate.py               # the same run through `dlc train`
    dlc dump examples/gcn_karate.py                # the inference graph

The adjacency is a numpy constant: GCNConv normalizes it once at trace time and the
compiled graph holds D^-1/2 (A + I) D^-1/2 as a constant.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

import dlc
from dlc import nn
from dlc.nn import functional as F
from dlc.trainer import Training, fit

INSTRUCTOR, OFFICER = 0, 33
# the leaders and one close friend of each (nodes 1 and 32: tied to their leader and to
# many of the leader's friends)
LABELLED = (INSTRUCTOR, 1, OFFICER, 32)
IGNORE = -1
HIDDEN = 16
STEPS = 200
LEARNING_RATE = 0.01
EVAL_EVERY = 20


def karate_club() -> tuple[np.ndarray, np.ndarray]:
    """(adjacency (34, 34) float32, faction per node: 0 instructor, 1 officer)."""
    import networkx as nx
    graph = nx.karate_club_graph()
    nodes = sorted(graph.nodes)
    adj = nx.to_numpy_array(graph, nodelist=nodes, weight=None).astype(np.float32)
    faction = np.array([graph.nodes[n]["club"] != "Mr. Hi" for n in nodes], np.int64)
    return adj, faction


def partial_labels(faction: np.ndarray, labelled=LABELLED) -> np.ndarray:
    """The faction on the labelled nodes, IGNORE elsewhere."""
    target = np.full_like(faction, IGNORE)
    target[list(labelled)] = faction[list(labelled)]
    return target


class KarateGCN(nn.Module):
    """GCNConv(n, 16) -> ReLU -> GCNConv(16, 2) over a fixed adjacency.

    forward takes node features (graphs, nodes, features), one graph here, and returns
    logits (graphs, nodes, 2)."""

    def __init__(self, adj: np.ndarray | None = None, hidden: int = HIDDEN,
                 classes: int = 2):
        super().__init__()
        self.adj = karate_club()[0] if adj is None else adj
        nodes = self.adj.shape[0]
        self.conv1 = nn.GCNConv(nodes, hidden)
        self.conv2 = nn.GCNConv(hidden, classes)

    def forward(self, features):
        h = F.relu(self.conv1(features, self.adj))
        return self.conv2(h, self.adj)

    def example_inputs(self) -> list[dlc.TensorSpec]:
        """Node features of one graph: one-hot node ids for the karate club."""
        n = self.adj.shape[0]
        return [dlc.TensorSpec((1, n, n), "float32", name="features")]


def main_model() -> tuple[KarateGCN, list[dlc.TensorSpec]]:
    """The untrained model and its input spec: what `dlc dump examples/gcn_karate.py` uses."""
    model = KarateGCN()
    return model, model.example_inputs()


def masked_cross_entropy(logits, target):
    """Cross entropy over the labelled nodes only; classes on axis 1, as torch wants."""
    return F.cross_entropy(logits.permute(0, 2, 1), target, ignore_index=IGNORE)


def training(steps: int | None = None) -> Training:
    """What `dlc train examples/gcn_karate.py` runs: the whole graph is one example, its
    target the partial labels; the held-out target is every node's faction."""
    adj, faction = karate_club()
    features = np.eye(len(faction), dtype=np.float32)[None]
    return Training(KarateGCN(adj), masked_cross_entropy,
                    dlc.optim.Adam(lr=LEARNING_RATE, weight_decay=5e-4),
                    train=(features, partial_labels(faction)[None]),
                    test=(features, faction[None]), batch_size=1, steps=steps or STEPS,
                    metric_name="accuracy", eval_every=EVAL_EVERY)


@dataclass
class Result:
    accuracy: float            # of all 34 nodes
    unlabelled_accuracy: float
    initial_accuracy: float
    losses: list[float]
    seconds: float


def predict(model: KarateGCN, features: np.ndarray, backend: str = "eager") -> np.ndarray:
    """The faction the model assigns each node (eval mode), shape (nodes,)."""
    model.eval()
    try:
        exe = dlc.compile(model, *model.example_inputs(), backend=backend)
        return exe(features).argmax(axis=-1)[0]
    finally:
        model.train()


def train(steps: int = STEPS, seed: int = 0, backend: str = "eager",
          progress: bool = True) -> Result:
    """Full-batch training with Adam; accuracy before and after."""
    start = time.perf_counter()
    dlc.nn.init.manual_seed(seed)
    setup = training(steps)
    features, faction = setup.test[0], setup.test[1][0]
    initial = predict(setup.model, features, backend)
    report = fit(setup, steps=steps, seed=seed, backend=backend, progress=progress)
    predicted = predict(setup.model, features, backend)  # fit loaded the trained weights
    unlabelled = np.setdiff1d(np.arange(len(faction)), LABELLED)
    return Result(float((predicted == faction).mean()),
                  float((predicted[unlabelled] == faction[unlabelled]).mean()),
                  float((initial == faction).mean()), report.losses,
                  time.perf_counter() - start)


def main(argv: list[str] | None = None) -> Result:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="eager")
    args = p.parse_args(argv)
    result = train(args.steps, args.seed, args.backend)
    print(f"karate club GCN: {result.accuracy:.1%} of all 34 nodes right "
          f"({result.unlabelled_accuracy:.1%} of the 30 unlabelled; untrained "
          f"{result.initial_accuracy:.1%}); final loss {result.losses[-1]:.4f}; wall time "
          f"{result.seconds:.2f}s")
    return result


if __name__ == "__main__":
    main()
