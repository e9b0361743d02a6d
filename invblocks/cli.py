"""The ``invblocks`` command line: tasks, blocks, train, eval, embed, restore, report.

Exit codes: 0 success; 2 a user error (bad arguments, missing or corrupt files, unknown task,
mismatched checkpoint, unwritable output, an installed plugin that fails to load, an input
too large for the memory), reported as one sentence on stderr; 1 anything else (a bug: the
traceback is shown).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]


def _one_line(message: str, limit: int = 280) -> str:
    from ._text import one_line

    return one_line(message, limit)


def _short(value: Any) -> str:
    from ._text import short

    return short(value)


def _count(least: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; received {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected at least {least}; received {value}")
        return value

    parse.__name__ = "count"
    return parse


def _memory(text: str) -> int:
    """An argparse type: a number of bytes, ``512M``, ``3G``, ``1.5GiB``, ``800k``."""
    import re

    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if found is None:
        raise argparse.ArgumentTypeError(f"expected a size such as 3G or 512M; received {text!r}")
    number, unit = float(found[1]), found[2]
    value = int(number * 1024 ** " kmgt".index(unit or " "))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size; received {text!r}")
    return value


def _count_or_all(text: str) -> int | str:
    """An argparse type: a positive integer, or ``all``."""
    return "all" if text.lower() == "all" else _count(1)(text)


def _quality(text: str) -> int:
    """An argparse type: a JPEG quality 1..100."""
    value = _count(1)(text)
    if value > 100:
        raise argparse.ArgumentTypeError(
            f"expected a JPEG quality of at most 100; received {value}"
        )
    return value


def _size(text: str) -> tuple[int, int]:
    """An argparse type: ``WIDTHxHEIGHT`` with positive integers."""
    width, sep, height = text.lower().partition("x")
    try:
        size = (int(width), int(height)) if sep else None
    except ValueError:
        size = None
    if size is None or min(size) < 1:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT, e.g. 640x480; received {_short(text)}"
        )
    if max(size) > 1 << 24:
        raise argparse.ArgumentTypeError(
            f"expected sides of at most {1 << 24}; received {_short(text)}"
        )
    return size


def _say(args: argparse.Namespace, message: str) -> None:
    """A progress line on stderr when it is a terminal (not with --quiet)."""
    if not getattr(args, "quiet", False) and sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


class UserError(Exception):
    """An error caused by the user's input, reported without a traceback (exit 2)."""


def _cmd_tasks(args: argparse.Namespace) -> None:
    from .plugins import get_registry

    registry = get_registry()
    if not registry.tasks:
        print("no tasks registered (is INVBLOCKS_DISABLE_PLUGIN_AUTOLOAD set?)")
    width = max((len(n) for n in registry.tasks), default=4)
    pwidth = max((len(t.plugin) for t in registry.tasks.values()), default=4) + 2
    for name, task in sorted(registry.tasks.items()):
        lo, hi = task.inputs
        count = str(lo) if lo == hi else f"{lo}-{hi}"
        plugin = f"[{task.plugin}]"
        print(f"{name:<{width}}  {plugin:<{pwidth}}  inputs {count:<4} {task.description}")
        if task.recipes or task.default_recipe != "default":
            names = task.recipe_names()
            listed = ", ".join([f"{names[0]} (default)", *names[1:]])
            print(f"{'':<{width}}  {'':<{pwidth}}  recipes {listed}")


def _cmd_blocks(args: argparse.Namespace) -> None:
    from .plugins import get_registry

    for name, (cls, owner) in get_registry().blocks.items():  # plugins' blocks included
        kind = getattr(cls, "inversion", None)
        print(f"{name:<16} [{owner}]  {getattr(kind, 'name', '')}")


def _cmd_train(args: argparse.Namespace) -> None:
    from .config import TrainConfig, apply_overrides, load_config
    from .trainer import summary, train

    data = load_config(args.config) if args.config else {}
    if args.task:
        data["task"] = args.task
    out = Path(args.out) if args.out else None
    if args.resume:  # the run's own config, with only what this command changes
        if out is None and "task" in data:
            out = Path(f"runs/{data['task']}")
        if out is None:
            raise UserError("name the run to resume with --out FOLDER")
        saved = out / "config.json"
        if saved.is_file():
            data = {**TrainConfig.upgrade(load_config(saved)), **data}
    data = apply_overrides(data, args.set or [])
    if args.task and data.get("task") != args.task:
        raise UserError(f"--task {args.task} and --set task={data.get('task')} disagree")
    if args.device:
        data["device"] = args.device
    if "task" not in data:
        raise UserError("name a task with --task NAME (see `invblocks tasks`) or in --config")
    config = TrainConfig.from_dict(data)
    out = out or Path(f"runs/{config.task}")
    try:
        run = train(config, out, resume=args.resume, progress=not args.quiet)
    except KeyboardInterrupt:
        args.interrupted = _resume_hint(out)
        raise
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 wrote the run
        print(f"run written to {run} (report: {run / 'report.html'})")
        try:
            _, line = summary(run)
        except (OSError, ValueError, KeyError):  # the run is written; its verdict is extra
            line = ""
        if line:
            print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout)


def _resume_hint(out: Path) -> str:
    """What an interrupted run kept, and how to go on."""
    latest = out / "checkpoints" / "LATEST"
    try:
        step = int(latest.read_text().strip().rsplit("-", 1)[-1])
    except (OSError, ValueError):
        return "; no checkpoint was written" if out.exists() else ""
    resume = f"invblocks train --out {out} --resume"
    return f"; the run keeps its checkpoint of step {step}: resume with {resume}"


def _cmd_eval(args: argparse.Namespace) -> None:
    from .io import json_safe
    from .model import Model, evaluate_images
    from .ric import evaluate

    model = Model.load(
        args.model, device=args.device, max_memory=args.max_memory, precision=args.precision
    )
    task, n, meta = model.task, model.n_inputs, model.meta
    source = task.load_data(args.data or None)
    limit = None if args.samples == "all" else args.samples
    how = {"space": args.space, "shave": args.shave}
    if args.crop is None:  # whole held-out images, as a user's files go
        metrics = evaluate_images(model, source.val, limit=limit, **how)
    else:
        count = len(source.val) if limit is None else limit
        data = task.dataset(source, "val", n_inputs=n, crop=args.crop, length=count)
        metrics = evaluate(task, model.net, [data[i] for i in range(len(data))], n, **how)
    report: dict[str, Any] = {"model": str(args.model), **metrics}
    trained = meta.get("train_config")
    report["train_crop"] = trained.get("crop") if isinstance(trained, dict) else None
    print(json.dumps(json_safe(report), indent=2, allow_nan=False))


class _SomeFailed(UserError):
    """Some items of a folder failed (each said on its own line); the summary."""


def _for_each(
    args: argparse.Namespace,
    verb: str,
    items: list[Path],
    name_of: Callable[[Path], str],
    work: Callable[[Path, Path], None],
    finished: Callable[[Path], bool],
) -> None:
    """Run ``work(item, output)`` on every item, ``output`` the file or folder
    ``name_of(item)`` names in ``-o``, unless ``finished(output)`` says an earlier run wrote
    it (a rerun goes on where the last one stopped), with a progress bar. Refused before any
    work: two items with one output, an output that is an item. An item that fails (its
    output cannot be named after it, something else is in its output's way) is said in one
    line and skipped while the others go on; one summary line at the end, and exit code 2
    when any failed."""
    from tqdm import tqdm

    out = Path(args.output)
    inputs = {_path_key(p): p for p in items}
    outputs: dict[Path, Path | str] = {}
    taken: dict[str, Path] = {}
    for item in items:
        name = name_of(item)
        if name in ("", ".", "..") or "/" in name or os.sep in name:
            outputs[item] = f"cannot name an output {name!r} after it: rename it"
            continue
        output = out / name
        key = _path_key(output)
        other = taken.setdefault(key, item)
        if other != item:
            raise UserError(
                f"{other.name} and {item.name} would both be written to {name}: rename or "
                "move one of them"
            )
        if key in inputs:
            raise UserError(
                f"{output} would overwrite the input {inputs[key].name}: choose another -o"
            )
        outputs[item] = output
    done, failed, kept = 0, 0, 0
    quiet = getattr(args, "quiet", False) or not sys.stderr.isatty()
    bar = tqdm(items, desc=verb, unit="item", disable=quiet)
    for item in bar:
        try:
            target = outputs[item]
            if isinstance(target, str):
                raise UserError(target)
            if finished(target):
                kept += 1
                continue
            work(item, target)
            done += 1
        except Exception as err:
            message = _user_error(err)
            if message is None:
                raise  # a bug, not the item
            failed += 1
            name = "".join(c if c.isprintable() else repr(c)[1:-1] for c in item.name)
            bar.write(f"invblocks {args.command}: {name}: {_one_line(message)}", sys.stderr)
    bar.close()
    summary = f"{verb} {done} of {len(items)} items into {args.output}"
    if kept:
        summary += f" ({kept} already there)"
    if failed:
        raise _SomeFailed(f"{summary}; {failed} failed (said above)")
    print(summary)


def _file_written(output: Path) -> bool:
    """Whether an earlier run wrote the file ``output`` (a folder or other thing there is
    in its way: ``UserError``)."""
    if output.is_file():
        return True
    if os.path.lexists(output):
        raise UserError(f"{output} exists and is not a file")
    return False


def _path_key(path: str | Path) -> str:
    """What names one file: its real path, its case folded where the system ignores case."""
    return os.path.normcase(os.path.realpath(path))


def _check_suffix(suffix: str) -> str:
    """``--suffix``: a file type (``.png``, or ``png``; a plugin's own), never a path."""
    bare = suffix if suffix.startswith(".") else f".{suffix}"
    if bare == "." or ".." in bare or any(c in bare for c in ("/", "\\", os.sep, "\0")):
        raise UserError(f"--suffix takes a file type such as .png or .jpg; received {suffix!r}")
    return bare


def _cmd_embed(args: argparse.Namespace) -> None:
    from .model import Model

    if bool(args.each) == bool(args.inputs):
        raise UserError("give the input files, or a folder of items with --each, not both")
    model = Model.load(
        args.model, device=args.device, max_memory=args.max_memory, precision=args.precision
    )
    suffix = _check_suffix(args.suffix) if args.suffix else model.net.channel.suffixes[0]
    target = Path(args.output) / f"x{suffix}" if args.each else args.output
    channel = model.channel_for(target, args.quality)
    for problem in channel.problems(model.net.body):  # e.g. a JPEG of a residue hiding
        print(f"warning: {_one_line(problem)}", file=sys.stderr)
    if args.each:

        def embed(item: Path, output: Path) -> None:
            model.embed_files(
                [item], output, start=args.start, step=args.step, quality=args.quality
            )

        items = model.items_in(args.each)
        if model.n_inputs == 1 and _path_key(args.each) == _path_key(args.output):
            raise UserError(
                f"-o {args.output} is the folder of the items: its embeddings would be read as "
                "items by the next run (name another folder)"
            )
        _for_each(args, "embedded", items, lambda p: f"{p.stem}{suffix}", embed, _file_written)
        return
    started = time.perf_counter()
    _say(args, f"embedding {len(args.inputs)} input(s) with {model.task.name} on {model.device}...")
    path = model.embed_files(
        args.inputs, args.output, start=args.start, step=args.step, quality=args.quality
    )
    _say(args, f"done in {time.perf_counter() - started:.1f} s")
    print(f"embedding written to {path}")


def _cmd_restore(args: argparse.Namespace) -> None:
    from .model import Model

    if bool(args.each) == bool(args.embedding):
        raise UserError("give an embedding file, or a folder of them with --each, not both")
    model = Model.load(
        args.model, device=args.device, max_memory=args.max_memory, precision=args.precision
    )
    if args.task is not None and args.task != model.task.name:
        raise UserError(
            f"--task {args.task} names another task than the model's ({model.task.name})"
        )
    if args.each:
        readable = set(model.net.channel.writable or model.net.channel.suffixes)
        folder = Path(args.each)
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder")
        items = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in readable)
        if not items:
            raise UserError(f"no embeddings ({', '.join(sorted(readable))}) in {folder}")

        def restore(item: Path, output: Path) -> None:
            model.restore_file(item, output, size=args.size)

        own = model.task.files
        ending = own.suffix if own is not None and own.suffix is not None else ""

        def finished(output: Path) -> bool:
            if ending:  # the task's own file, one an item
                return _file_written(output)
            if not os.path.lexists(output):
                return False
            if not output.is_dir():
                raise UserError(f"{output} exists and is not a folder")
            names = {f"restored_{i}.png" for i in range(model.n_inputs)}
            there = {p.name for p in output.iterdir()}
            if names <= there and all((output / name).is_file() for name in names):
                return True
            if there <= names:  # empty, or a restoration's files alone: restored into
                return False
            raise UserError(f"{output} holds other files; name another -o")

        _for_each(args, "restored", items, lambda p: f"{p.stem}{ending}", restore, finished)
        return
    started = time.perf_counter()
    _say(args, f"restoring {args.embedding} with {model.task.name} on {model.device}...")
    paths = model.restore_file(args.embedding, args.output, size=args.size)
    _say(args, f"done in {time.perf_counter() - started:.1f} s")
    if len(paths) == 1 and Path(args.output) == paths[0]:
        print(f"restored item written to {paths[0]}")
    else:
        print(f"{len(paths)} images written to {args.output}")


def _cmd_import_weights(args: argparse.Namespace) -> None:
    from .published import import_weights, importers

    known = importers()  # loads the plugins, whose methods count as the core's
    if args.method not in known:
        raise UserError(f"unknown method {args.method!r}; expected one of {', '.join(known)}")
    folder = import_weights(args.method, args.file, args.output, config=args.config)
    meta = json.loads((folder / "config.json").read_text())
    source = meta["source"]["config"]
    print(
        f"{source} model for task {meta['task']!r} ({meta['n_inputs']} inputs) written to {folder}"
    )


def _cmd_export(args: argparse.Namespace) -> None:
    from .export import export
    from .model import Model

    model = Model.load(args.model, device="cpu")
    try:
        record = export(model, args.output, onnx=not args.no_onnx, check=not args.no_check,
                        size=args.size)  # fmt: skip
    except ImportError as err:
        raise UserError(str(err)) from None
    kinds = "torch.export and ONNX" if not args.no_onnx else "torch.export"
    sizes = "any height and width" if record["embed"]["dynamic"] else "the example's size only"
    print(f"{kinds} programs of embed and restore written to {args.output} ({sizes}, "
          f"multiples of {record['multiple']})")  # fmt: skip
    check = record.get("check")
    if check and check.get("onnxruntime"):
        print(f"checked in onnxruntime {check['onnxruntime']}: embedding "
              f"{check['embed_identical']:.4%} identical, restored images within "
              f"{check['restore_max_difference']:.1g}")  # fmt: skip


def _cmd_report(args: argparse.Namespace) -> None:
    from .report import write_report

    print(f"report written to {write_report(args.run)}")


def _add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=("float32", "bfloat16", "auto"),
        default="float32",
        help="the couplings' subnets in bfloat16 (faster with bfloat16 units; a round trip "
        "within about 1e-3) or float32; auto: bfloat16 where the device has the units. restore "
        "follows the embedding's own",
    )


def _add_max_memory(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-memory",
        type=_memory,
        metavar="SIZE",
        help="memory one pass may use, e.g. 3G (default: half of what is free, at most 2G); larger "
        "images are embedded and restored in tiles, with the same result",
    )


def _add_device(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    p.add_argument(
        "--device",
        default=default,
        help="auto (the GPU when PyTorch sees one, else the CPU), cpu, cuda or cuda:N"
        + ("" if default else "; overrides the config's device"),
    )


def _args_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="task name (see `invblocks tasks`)")
    p.add_argument("--config", help="a JSON or TOML training config")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", help="run folder (default runs/TASK)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device(p, default=None)


def _args_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run or checkpoint folder")
    p.add_argument("--data", help="a dataset folder (default: the task's default data)")
    p.add_argument(
        "--samples",
        type=_count_or_all,
        default=4,
        help="held-out items to evaluate, or all (default 4)",
    )
    p.add_argument(
        "--space",
        choices=("rgb", "y"),
        default="rgb",
        help="rgb, or y: PSNR/SSIM of the BT.601 luma, as the rescaling papers report",
    )
    p.add_argument("--shave", type=_count(0), default=0, help="pixels cut from every border first")
    p.add_argument(
        "--crop", type=_count(1), help="evaluate centre crops of this size instead of whole images"
    )
    _add_max_memory(p)
    _add_precision(p)
    _add_device(p)


def _args_embed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run or checkpoint folder")
    p.add_argument("inputs", nargs="*", help="image files in order, or one folder/GIF/video")
    p.add_argument(
        "--each",
        metavar="FOLDER",
        help="embed every item of FOLDER (an image, or a folder of an item's images, a clip) "
        "into the folder -o names, skipping those already there",
    )
    p.add_argument(
        "--suffix", help="with --each: the file type written (default: the channel's, .png)"
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="the file to write, by the model's channel: .png or .jpg for images, .ibc for a "
        "bitstream (with --each: the folder to write into)",
    )
    p.add_argument(
        "--quality", type=_quality, help="JPEG quality 1-100 for a .jpg output (default 95)"
    )
    p.add_argument("--start", type=_count(0), default=0, help="first frame of a clip")
    p.add_argument("--step", type=_count(1), default=1, help="frame step in a clip")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    _add_max_memory(p)
    _add_precision(p)
    _add_device(p)


def _args_restore(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run or checkpoint folder")
    p.add_argument(
        "embedding", nargs="?", help="the file written by `invblocks embed` (.png, .jpg, .ibc)"
    )
    p.add_argument(
        "--each",
        metavar="FOLDER",
        help="restore every embedding in FOLDER into a folder of its name under -o, skipping "
        "those already there",
    )
    p.add_argument("-o", "--output", required=True, help="folder for restored_<i>.png")
    p.add_argument(
        "--size",
        type=_size,
        metavar="WIDTHxHEIGHT",
        help="the original images' size, for a file whose metadata another program removed",
    )
    p.add_argument("--task", help="the task the embedding is of (checked against the model's)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    _add_max_memory(p)
    _add_precision(p)
    _add_device(p)


def _args_import_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "method",
        help="whose checkpoint: iicnet, win, win-naive, or a plugin's method",
    )
    p.add_argument("file", help="the authors' .pth file (a state dict; never unpickled as code)")
    p.add_argument("-o", "--output", required=True, help="the model folder to write")
    p.add_argument(
        "--config", help="IICNet configuration (st-01, hide-04, ...) where the file is ambiguous"
    )


def _args_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run folder or checkpoint folder")
    p.add_argument("-o", "--output", required=True, help="the folder to write the programs to")
    p.add_argument("--no-onnx", action="store_true", help="torch.export programs only")
    p.add_argument(
        "--no-check", action="store_true", help="do not run the ONNX files in onnxruntime"
    )
    p.add_argument(
        "--size", type=_count(1), help="the example's side in pixels (default: about 64)"
    )


def _args_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder")


def _args_none(p: argparse.ArgumentParser) -> None:
    pass


Command = Callable[[argparse.Namespace], None]

_COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Command]] = [
    ("tasks", "list the registered tasks and their plugins", _args_none, _cmd_tasks),
    ("blocks", "list the registered block types", _args_none, _cmd_blocks),
    ("train", "train a task (on its default data unless data=PATH)", _args_train, _cmd_train),
    (
        "eval",
        "PSNR/SSIM of a model on whole held-out images, against the trivial baseline",
        _args_eval,
        _cmd_eval,
    ),
    ("embed", "embed image files (or a clip) into one file", _args_embed, _cmd_embed),
    ("restore", "restore the images from an embedding file", _args_restore, _cmd_restore),
    (
        "import-weights",
        "turn a published checkpoint (IICNet, WIN, a plugin's paper) into a model folder",
        _args_import_weights,
        _cmd_import_weights,
    ),
    (
        "export",
        "write a model's embed and restore as torch.export programs and ONNX files",
        _args_export,
        _cmd_export,
    ),
    ("report", "(re)write a run's HTML report", _args_report, _cmd_report),
]
"""Every command: name, help line, its arguments, what runs it."""

_EPILOGS = {
    "embed": "Secrets: the hiding task's default recipe (residue) keeps them in the cover's "
    "low bits, and a learned steganalysis detector finds every such embedding (AUC 1.00; WIN's "
    "hiding network too). No recipe trained for 10 CPU-minutes both restores a secret and "
    "goes unnoticed; where a secret must not be noticed, train --set recipe=learned far longer "
    "and measure it with benchmarks/steganalysis first (docs/tasks.md, hiding).",
}
"""Text after a command's help: what its options cannot say."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, as the commands' own are (argparse
    prints its usage block first)."""

    def error(self, message: str) -> NoReturn:
        prefix, hint = f"{self.prog}: error: ", f" (see {self.prog} --help)"
        self.exit(2, f"{prefix}{_one_line(message, 299 - len(prefix) - len(hint))}{hint}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``invblocks --help``)."""
    from importlib.metadata import PackageNotFoundError, version

    from ._version import VERSION as __version__

    try:
        torch_version = version("torch")
    except PackageNotFoundError:  # pragma: no cover - torch is a dependency
        torch_version = "not installed"
    parser = _Parser(
        prog="invblocks", description="Invertible networks for reversible image conversion."
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"invblocks {__version__} (torch {torch_version})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_line, add_arguments, command in _COMMANDS:
        p = sub.add_parser(name, help=help_line, epilog=_EPILOGS.get(name))
        add_arguments(p)
        p.set_defaults(func=command)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    print(f"warning: {_one_line(str(message))}", file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, systemd, container runtimes): stops a command as Ctrl-C does."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Unless ``INVBLOCKS_NO_TUNE_MALLOC`` is set, first keeps freed memory in the heap
    (:func:`invblocks.runtime.tune_malloc`), which makes whole-frame work markedly faster.
    SIGTERM stops a command as SIGINT does (the trainer keeps its last checkpoint and says
    how to resume); the exit code is then 143 (130 for SIGINT).
    """
    args = build_parser().parse_args(argv)
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        from .runtime import tune_malloc  # imports torch: interruptible like the rest

        if not os.environ.get("INVBLOCKS_NO_TUNE_MALLOC"):
            tune_malloc()
        with warnings.catch_warnings():  # a warning is one line on stderr, as errors are
            warnings.showwarning = _show_warning
            # Pillow's warning of images over 89 M pixels: the readers refuse what is over
            # twice that, and the memory budget governs the rest; the warning is noise
            warnings.filterwarnings("ignore", message="Image size .* could be decompression bomb")
            args.func(args)
    except BrokenPipeError:  # the reader went away (`invblocks tasks | head`): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as err:
        hint = getattr(args, "interrupted", None)
        print(f"invblocks {args.command}: {_interrupted(err)}{hint or ''}", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    except Exception as err:
        message = _user_error(err, args.command)
        if message is None:
            raise  # a bug: the traceback is shown
        prefix = f"invblocks {args.command}: error: "
        print(prefix + _one_line(message, 299 - len(prefix)), file=sys.stderr)
        return 2
    return 0


def _interrupted(err: KeyboardInterrupt) -> str:
    return "terminated" if isinstance(err, Terminated) else "interrupted"


def _user_error(err: Exception, command: str | None = None) -> str | None:
    """The one sentence an error caused by the user's input or machine is reported with, or
    ``None`` for a bug. Input errors (``ValueError``, ``KeyError``, a plugin that fails to
    load, files: ``OSError``), exhausted memory, numbers out of range (``OverflowError``),
    input nested too deeply for Python (``RecursionError``) and a training that diverged
    (``FloatingPointError``). ``command`` says what exhausted memory is blamed on."""
    from .plugins import PluginLoadError

    if isinstance(err, UserError | ValueError | PluginLoadError | FloatingPointError):
        return str(err)
    if isinstance(err, KeyError):
        return str(err.args[0]) if err.args else str(err)
    if isinstance(err, OSError):
        if err.filename is not None and err.strerror:
            return f"{err.filename}: {err.strerror}"
        return str(err)
    if isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and _allocation_failure(err)):
        return _OUT_OF_MEMORY.get(command or "", _OUT_OF_MEMORY[""])
    if isinstance(err, OverflowError):
        return f"a number in the input is too large ({err})"
    if isinstance(err, RecursionError):
        return "the input is nested too deeply to read"
    return None


_OUT_OF_MEMORY = {
    "": "not enough memory for this input (use smaller images, fewer frames, or a machine "
    "with more memory)",
    "train": "not enough memory for these settings (a smaller batch, crop or network, or a "
    "machine with more memory)",
    "export": "not enough memory to export at this size (a smaller --size, or a machine with "
    "more memory)",
}


def _allocation_failure(err: RuntimeError) -> bool:
    text = str(err)
    return any(s in text for s in ("can't allocate memory", "out of memory", "DefaultCPUAllocator"))


if __name__ == "__main__":
    sys.exit(main())
