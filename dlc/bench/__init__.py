"""`dlc bench`: workloads timed on dlc's backends and on peer frameworks, with the machine's
floors, agreement checks before timing, and a per-kernel report."""
from dlc.bench.workload import Workload  # noqa: F401
