"""The `dlc` command line (also `python -m dlc`).

Subcommands live in one table, `COMMANDS`: each is a name, a help line, a function that adds
its arguments and a function that runs it. A module that brings more subcommands calls
`register(...)` at import and is listed in `COMMAND_MODULES`, which `main` imports first.

Errors a user can cause (a missing file, an unknown name, an unreadable .npy, any
dlc.errors.DlcError) print one line `dlc: error: ...` on stderr: exit status 2 for a bad
command line, 1 for a failure while tracing, compiling or running. `--debug` shows the
traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import textwrap
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from dlc.errors import DlcError
from dlc.fileio import atomic_write_text, save_npy, save_npz

# Modules that register further subcommands when imported (see `register`).
COMMAND_MODULES: tuple[str, ...] = ("dlc.cli_bench", "dlc.cli_dump", "dlc.cli_compile", "dlc.cli_train", "dlc.cli_cache")

HELP_WIDTH = 90
DEFAULT_FACTORY = "main_model"
SPECS_METHOD = "example_inputs"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO_ROOT / "examples" / "mlp.py"

MODEL_HELP = f"""\
model files:
  MODEL is FILE.py or FILE.py:NAME. The file is imported as Python (it is your code and
  runs as such); the weights of dlc.nn layers are drawn after reseeding dlc.nn.init with
  --seed, so every run sees the same weights. NAME is one of:
    - an nn.Module subclass that can be built with no arguments and defines
      `{SPECS_METHOD}()` (a static, class or plain method) returning a list of
      dlc.TensorSpec, one per input of forward;
    - a function taking no arguments that returns (model_or_function, [specs]).
  Without :NAME the file's `{DEFAULT_FACTORY}()` function is used, with the same contract
  as a NAME function.

example:
  class MLP(dlc.nn.Module):
      ...
      @staticmethod
      def {SPECS_METHOD}():
          return [dlc.TensorSpec((64, 784), "float32")]

  def {DEFAULT_FACTORY}():
      model = MLP()
      return model, model.{SPECS_METHOD}()
"""


# -- errors ------------------------------------------------------------------------------------
class UsageError(Exception):
    """The command line names something that is not there or not usable (exit status 2)."""


class UserCodeError(Exception):
    """The user's model file raised an exception that is not a DlcError (exit status 1)."""


EXIT_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (UsageError, 2), (DlcError, 1), (UserCodeError, 1))


def one_line(text: str) -> str:
    """Messages print on one line: newlines and runs of spaces become single spaces."""
    return " ".join(str(text).split())


def _user_frame(exc: BaseException, path: Path) -> str:
    """file:line of the innermost traceback frame inside the user's file, or ''."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve() == path]
    if not frames and isinstance(exc, SyntaxError) and exc.lineno:
        return f"{display_path(path)}:{exc.lineno}"
    return f"{display_path(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""


@contextmanager
def user_code(path: Path, what: str) -> Iterator[None]:
    """Run the user's code; a non-dlc exception becomes a UserCodeError naming file:line."""
    try:
        yield
    except DlcError:
        raise
    except Exception as e:
        where = _user_frame(e, path)
        at = f" at {where}" if where else ""
        raise UserCodeError(f"{what}{at}: {type(e).__name__}: {e}") from e


def display_path(path: str | os.PathLike) -> str:
    """A path relative to the working directory when it is below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


# -- the subcommand table ----------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """One subcommand: `configure(parser)` adds its arguments; `run(args)` returns a status."""
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""
    epilog: str = ""


COMMANDS: dict[str, Command] = {}


def register(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None],
             description: str = "", epilog: str = "") -> Callable:
    """Decorator: register the decorated `run(args) -> int` as subcommand `name`."""
    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable:
        if name in COMMANDS:
            raise ValueError(f"dlc subcommand {name!r} registered twice")
        COMMANDS[name] = Command(name, help, configure, run, description or help, epilog)
        return run
    return wrap


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors in dlc's format (`dlc: error: ...`, status 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"dlc: error: {one_line(message)} (see '{self.prog} --help')\n")


def build_parser() -> Parser:
    parser = Parser(prog="dlc", description="dlc: a graph-compiling deep learning compiler.",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback on errors")
    from dlc import __version__
    parser.add_argument("--version", action="version", version=f"dlc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help,
                           description=textwrap.fill(cmd.description, HELP_WIDTH),
                           epilog=cmd.epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        # SUPPRESS keeps `dlc --debug run ...` working: the subparser leaves it unset
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback on errors")
        cmd.configure(p)
    return parser


def _load_command_modules() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dlc` console script; returns the exit status."""
    _load_command_modules()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors end here
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(COMMANDS[args.command].run(args) or 0)
    except Exception as e:
        if args.debug:
            raise
        return report(e)


def report(exc: Exception) -> int:
    """Print one line for `exc` on stderr and return the exit status it calls for."""
    for kind, status in EXIT_STATUS:
        if isinstance(exc, kind):
            print(f"dlc: error: {one_line(exc)}", file=sys.stderr)
            return status
    print(f"dlc: error: internal error: {type(exc).__name__}: {one_line(exc)} "
          f"(rerun with --debug for the traceback)", file=sys.stderr)
    return 1


# -- model files -------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A model file resolved to what `dlc.trace` takes."""
    label: str           # FILE.py:NAME as shown to the user
    path: Path
    target: Any          # a Module instance or a function
    specs: list


def split_model_ref(ref: str) -> tuple[Path, str | None]:
    """'dir/file.py:NAME' -> (path, 'NAME'); 'dir/file.py' -> (path, None)."""
    head, sep, tail = ref.rpartition(":")
    if sep and head and tail.isidentifier():
        return Path(head), tail
    return Path(ref), None


def import_file(path: Path) -> ModuleType:
    """Import a Python file by path under a private module name (fresh on every call)."""
    if not path.is_file():
        raise UsageError(f"model file {display_path(path)} does not exist")
    if path.suffix != ".py":
        raise UsageError(f"model file {display_path(path)} is not a .py file")
    name = f"_dlc_model_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {display_path(path)}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    sys.path.insert(0, str(path.parent))  # so the file can import its neighbours
    try:
        with user_code(path, f"loading {display_path(path)}"):
            spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def _candidates(module: ModuleType) -> str:
    from frontend.nn.module import Module
    names = [n for n, v in vars(module).items() if not n.startswith("_") and (
        (isinstance(v, type) and issubclass(v, Module) and hasattr(v, SPECS_METHOD)
         and v.__module__ == module.__name__)
        or (callable(v) and getattr(v, "__module__", None) == module.__name__
            and not isinstance(v, type)))]
    return ", ".join(names) if names else "none"


def _from_module_class(cls: type, label: str, path: Path) -> tuple[Any, list]:
    if not hasattr(cls, SPECS_METHOD):
        raise UsageError(f"{label}: {cls.__name__} defines no {SPECS_METHOD}() giving its "
                         f"input specs (see 'dlc dump --help')")
    with user_code(path, f"building {label}"):
        model = cls()
    with user_code(path, f"{label}.{SPECS_METHOD}()"):
        specs = getattr(model, SPECS_METHOD)()
    return model, specs


def _from_factory(fn: Callable, label: str, path: Path) -> tuple[Any, list]:
    with user_code(path, f"calling {label}()"):
        result = fn()
    if not (isinstance(result, tuple) and len(result) == 2):
        raise UsageError(f"{label}() must return (model_or_function, [specs]), got "
                         f"{type(result).__name__}")
    return result


def resolve(obj: Any, label: str, path: Path) -> tuple[Any, list]:
    """The (model, specs) pair that a NAME in a model file stands for."""
    from frontend.nn.module import Module
    if isinstance(obj, type) and issubclass(obj, Module):
        return _from_module_class(obj, label, path)
    if callable(obj) and not isinstance(obj, (type, Module)):
        return _from_factory(obj, label, path)
    raise UsageError(f"{label} is a {type(obj).__name__}; expected an nn.Module subclass "
                     f"or a function returning (model, [specs])")


def _check_specs(specs: Any, label: str) -> list:
    from frontend.tracer import TensorSpec
    if not isinstance(specs, (list, tuple)) or not all(
            isinstance(s, TensorSpec) for s in specs):
        raise UsageError(f"{label}: the input specs must be a list of dlc.TensorSpec, got "
                         f"{specs!r}")
    return list(specs)


def load_model(ref: str, seed: int = 0) -> LoadedModel:
    """Load FILE.py[:NAME] (see MODEL_HELP): import the file, build the model, get specs."""
    from frontend import init
    path, name = split_model_ref(ref)
    path = path.resolve() if path.exists() else path
    init.manual_seed(seed)
    module = import_file(path)
    attr = name or DEFAULT_FACTORY
    label = f"{display_path(path)}:{attr}"
    if not hasattr(module, attr):
        hint = "" if name else " (name one: FILE.py:NAME)"
        raise UsageError(f"{display_path(path)} defines no {attr!r}{hint}; candidates: "
                         f"{_candidates(module)}")
    target, specs = resolve(getattr(module, attr), label, path)
    return LoadedModel(label, path, target, _check_specs(specs, label))


def trace_model(loaded: LoadedModel):
    """Trace a loaded model into a Graph; errors in the user's forward name its line."""
    import dlc
    with user_code(loaded.path, f"tracing {loaded.label}"):
        return dlc.trace(loaded.target, *loaded.specs)


# -- shared options and output helpers ---------------------------------------------------------
def add_model_argument(p: argparse.ArgumentParser, **kwargs) -> None:
    p.add_argument("model", metavar="MODEL", help="FILE.py or FILE.py:NAME (see below)",
                   **kwargs)
    p.add_argument("--seed", type=int, default=0,
                   help="seed of dlc.nn.init before the file is loaded (default 0)")


def add_backend_argument(p: argparse.ArgumentParser) -> None:
    from backends.registry import BACKENDS
    p.add_argument("--backend", default="eager", choices=sorted(BACKENDS),
                   help="backend that compiles the graph (default eager)")


def write_text(text: str, out: str | None) -> None:
    """Write to the file `out`, or to stdout."""
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        atomic_write_text(out, text if text.endswith("\n") else text + "\n")
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None


def summarize(array: np.ndarray) -> str:
    """One line per array: its type and checksum-style statistics (computed in float64)."""
    from dlc.ir.types import TensorType
    kind = TensorType(array.shape, array.dtype.name)
    a = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(a)
    stats = f"sum={a.sum():.9g} mean={a.mean():.6g} std={a.std():.6g} " \
            f"min={a.min():.6g} max={a.max():.6g}" if a.size else "empty"
    bad = "" if finite.all() else f" non-finite={int((~finite).sum())}"
    return f"{kind} {stats}{bad}"


def print_outputs(outputs: list[np.ndarray]) -> None:
    for i, out in enumerate(outputs):
        print(f"output {i}: {summarize(out)}")


def as_list(result) -> list[np.ndarray]:
    return list(result) if isinstance(result, tuple) else [result]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


# -- dlc run -----------------------------------------------------------------------------------
NPY_MAGIC = b"\x93NUMPY"


def load_npy(path: str) -> np.ndarray:
    """Read one array from a .npy file (no pickles)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(NPY_MAGIC))
        if magic != NPY_MAGIC:
            raise UsageError(f"--input {path}: not a .npy file (it does not start with the "
                             f"NumPy header; write it with numpy.save)")
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"--input {path}: no such file") from None
    except (OSError, ValueError, EOFError) as e:
        raise UsageError(f"--input {path}: not a readable .npy array ({one_line(e)})") \
            from None
    if not isinstance(array, np.ndarray):  # np.load gives an NpzFile for .npz archives
        raise UsageError(f"--input {path}: expected a .npy file holding one array")
    return array


def check_inputs(graph, arrays: list[np.ndarray], paths: list[str]) -> None:
    """Each --input file against the graph input it feeds: count, shape, dtype."""
    wanted = graph.user_inputs
    names = ", ".join(f"{v.name}: {v.type}" for v in wanted)
    if len(arrays) != len(wanted):
        raise UsageError(f"the model takes {len(wanted)} input(s) ({names}); got "
                         f"{len(arrays)} --input file(s)")
    for v, a, path in zip(wanted, arrays, paths):
        if a.shape != v.type.shape or a.dtype.name != v.type.dtype:
            hint = f" (save it with .astype(np.{v.type.dtype}))" \
                if a.shape == v.type.shape else ""
            raise UsageError(f"--input {path}: input {v.name!r} expects {v.type} "
                             f"({v.type.dtype}, shape {v.type.shape}), the file holds "
                             f"{a.dtype.name}, shape {a.shape}{hint}")


def save_outputs(outputs: list[np.ndarray], out: str) -> list[str]:
    """One output: OUT.npy. Several: OUT.npz (output0, output1, ...) or OUT_i.npy each."""
    path = Path(out)
    try:
        if path.suffix == ".npz":
            save_npz(path, {f"output{i}": o for i, o in enumerate(outputs)})
            return [str(path)]
        if len(outputs) == 1:
            name = path if path.suffix == ".npy" else Path(f"{path}.npy")  # as np.save does
            save_npy(name, outputs[0])
            return [str(name)]
        stem = path.with_suffix("")
        written = [f"{stem}_{i}.npy" for i in range(len(outputs))]
        for name, o in zip(written, outputs):
            save_npy(name, o)
        return written
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None


def _configure_run(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    p.add_argument("--input", "-i", action="append", default=[], metavar="X.npy",
                   help="an input array, one per model input, in order (repeat the flag)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="save the outputs: OUT.npy for one, OUT.npz or OUT_0.npy, ... "
                        "for several")
    add_backend_argument(p)


@register("run", "run a model on .npy inputs", _configure_run,
          description="Trace MODEL, compile it and run it on arrays read from .npy files; "
                      "print each output's shape, dtype and a checksum-style summary.",
          epilog=MODEL_HELP)
def cmd_run(args: argparse.Namespace) -> int:
    import dlc
    arrays = [load_npy(p) for p in args.input]
    loaded = load_model(args.model, args.seed)
    graph = trace_model(loaded)
    check_inputs(graph, arrays, args.input)
    exe = dlc.compile(graph, backend=args.backend)
    start = time.perf_counter()
    outputs = as_list(exe(*arrays))
    elapsed = time.perf_counter() - start
    print_outputs(outputs)
    print(f"ran {loaded.label} on the {args.backend} backend in {ms(elapsed)}")
    if args.output:
        for name in save_outputs(outputs, args.output):
            print(f"wrote {name}")
    return 0


# -- dlc demo ----------------------------------------------------------------------------------
def _random_array(rng: np.random.Generator, type_) -> np.ndarray:
    """Random data for one input: floats in [0, 1) like pixel intensities, small ints."""
    if type_.dtype == "bool":
        return rng.random(type_.shape) < 0.5
    if type_.dtype.startswith("int"):
        return rng.integers(0, 10, size=type_.shape).astype(type_.dtype)
    return rng.random(type_.shape).astype(type_.dtype)


def _configure_demo(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, nargs="?", default=str(DEMO_MODEL))
    add_backend_argument(p)
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the IR")


@register("demo", "trace, compile and run the example MLP", _configure_demo,
          description="Trace a model (by default examples/mlp.py, an MLP 784-512-512-10 on "
                      "batches of flattened 28x28 digit images), print its IR, compile it "
                      "and run it on a random batch.",
          epilog=MODEL_HELP)
def cmd_demo(args: argparse.Namespace) -> int:
    import dlc
    loaded = load_model(args.model, args.seed)
    t0 = time.perf_counter()
    graph = trace_model(loaded)
    t1 = time.perf_counter()
    if not args.quiet:
        print(graph)
    n_params = sum(int(np.prod(v.type.shape)) for v in graph.inputs_with_role("param"))
    print(f"model {loaded.label}: {len(graph.nodes)} ops, {n_params:,} parameters; "
          f"inputs {', '.join(f'{v.name}: {v.type}' for v in graph.user_inputs)}")
    exe = dlc.compile(graph, backend=args.backend)
    t_compiled = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    inputs = [_random_array(rng, v.type) for v in graph.user_inputs]
    t2 = time.perf_counter()
    outputs = as_list(exe(*inputs))
    t3 = time.perf_counter()
    print_outputs(outputs)
    print(f"trace {ms(t1 - t0)}, compile ({args.backend}) {ms(t_compiled - t1)}, "
          f"run {ms(t3 - t2)}")
    return 0
