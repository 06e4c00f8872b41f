"""``dbrepro`` on the command line (also ``python -m dbrepro``).

    dbrepro train --recipe cosface --profile cpu --seed 0        # train (or find in the run cache)
    dbrepro train --config my-run.yaml --set lr=0.05             # any TrainConfig, from a file
    dbrepro eval --run 3f2a --suites lfw,calfw --bin agedb_30.bin
    dbrepro eval --run 3f2a --folder ~/lab-photos                # your photographs: 10-fold pairs + rank-1
    dbrepro runs list | dbrepro runs clean --damaged             # states: new partial complete failed damaged stale
    dbrepro export --run 3f2a model.onnx
    dbrepro world --profile cpu                                  # render/cache the synthetic world, summarise it
    dbrepro rehearsal _build/rehearsal-data                      # a tiny InsightFace folder for PROFILE=rehearsal
    dbrepro book run --profile cpu | dbrepro book build | dbrepro book check

Under ``torchrun --nproc_per_node N -m dbrepro train ...`` training is distributed (DDP). ``dbrepro train
--recipe R --profile P --data DIR [--split S] [--arg KEY=VALUE] ...`` builds exactly the config a chapter's
``ch.config(R, ...)`` builds on the same data and profile (same run key), so a chapter run afterwards finds
the run in the cache (README, "Training a chapter's runs on several GPUs").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["lr=0.05", "head_kwargs.s=30"]`` -> ``{"lr": 0.05, "head_kwargs": {"s": 30}}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in changes.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _parse_recipe_args(items: Sequence[str]) -> dict[str, Any]:
    """``["rbm=ungated", "dbm=false", "k=6"]`` -> keyword arguments of the recipe (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"--arg expects NAME=VALUE (a keyword argument of the recipe), got {item!r}")
        if key in ("seed", "data", "split"):
            raise SystemExit(f"--arg {key}=...: use --{key}")
        out[key] = yaml.safe_load(value)
    return out


class _TrainingData:
    """The training set ``dbrepro train`` reads: ``--data``'s InsightFace folder, else the profile's world.

    The same :class:`~dbrepro.data.sources.DataSource` spec a chapter gets from :func:`dbrepro.chapter.setup`;
    the class count is read only when a recipe needs it (a synthetic world is rendered for it).
    """

    def __init__(self, args: argparse.Namespace):
        from .config import get_profile
        from .recipes import world_data

        profile = get_profile(args.profile)
        self._source = None
        if args.data:
            from .data import sources

            self._source = sources.insightface(args.data, args.dataset, image_size=profile.image_size)
            self.spec = self._source.train_spec
        elif profile.needs_data_path:
            raise SystemExit(f"--profile {profile.name} trains on real data: give --data DIR, the InsightFace folder "
                             "of CASIA-WebFace or MS1MV2 (--dataset ms1mv2) that the chapters read")
        else:
            self.spec = world_data(profile)

    @property
    def num_classes(self) -> int:
        if self._source is not None:
            return self._source.num_classes
        from .data import specs

        return int(specs.world_for(self.spec).train.num_classes)


def _recipe_config(args: argparse.Namespace):
    """The config of ``--recipe`` as a chapter builds it (:meth:`dbrepro.chapter.Chapter.config`): on the
    data's spec, ``db`` with ``num_classes`` (its K, :func:`dbrepro.recipes.dfi_k`) unless K is given, a
    split as the Range Loss chapters build theirs (:func:`dbrepro.recipes.range_split`)."""
    from . import recipes
    from .config import get_profile

    kw: dict[str, Any] = {**_parse_recipe_args(args.arg or []), "seed": args.seed}
    if args.large_backbone:
        kw["backbone"] = get_profile(args.profile).backbone_large
    data = _TrainingData(args)
    if args.paper_k is not None:
        if args.recipe != "db" or "k" in kw:
            raise SystemExit("--paper-k is DB Table 3's K for --recipe db (give it or --arg k=..., not both)")
        kw["k"] = recipes.scaled_k(args.paper_k, data.num_classes)
    spec = data.spec
    if args.split:
        # a B split's size depends on the class count (B-0); an A split only names itself
        spec = recipes.range_split(spec, args.split, data.num_classes if args.split.startswith("B-") else 0)
    return recipes.on_data(args.recipe, args.profile, spec, lambda: data.num_classes, **kw)


def _config_from_args(args: argparse.Namespace):
    from .recipes import RECIPES
    from .train import TrainConfig

    if args.config and (args.arg or args.paper_k is not None or args.split or args.data or args.large_backbone):
        raise SystemExit("--config gives the whole config: change it with --set KEY=VALUE, not with --arg, "
                         "--paper-k, --split, --data or --large-backbone")
    if args.config:
        path = Path(args.config)
        if not path.exists():
            raise SystemExit(f"--config {path}: no such file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise SystemExit(f"--config {path}: not valid YAML/JSON ({e})")
        if not isinstance(data, dict):
            raise SystemExit(f"--config {path}: expected a mapping of TrainConfig fields")
        base = data
    else:
        if args.recipe not in RECIPES:
            raise SystemExit(f"--recipe {args.recipe!r} is unknown: choose one of {', '.join(RECIPES)}")
        try:
            base = _recipe_config(args).to_dict()
        except (FileNotFoundError, ValueError, TypeError) as e:
            raise SystemExit(f"--recipe {args.recipe}: {e}")
    try:
        return TrainConfig.from_dict(_merge(base, _parse_set(args.set or [])))
    except (TypeError, ValueError) as e:
        raise SystemExit(f"invalid training config: {e}")


def cmd_rehearsal(args: argparse.Namespace) -> int:
    from .data.rehearsal import write_folder

    root = write_folder(args.folder, seed=args.seed)
    print(f"rehearsal data in {root}: run PROFILE=rehearsal DBREPRO_CASIA={root} DBREPRO_MS1MV2={root} make book")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from . import experiments
    from .config import get_profile
    from .train import distributed

    cfg = _config_from_args(args)
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=True))
        return 0
    workers = get_profile(args.profile).num_workers if args.workers is None else args.workers
    launched = distributed.launched()
    if launched:
        _refuse_damaged_under_torchrun(cfg)
    main = distributed.environment_rank() == 0
    run = experiments.train(cfg, device=args.device, progress=not args.quiet and main, verbose=main,
                            num_workers=workers)
    if launched:
        _require_complete_on_every_rank(run)
    if not main:
        return 0
    m = run.metrics() if run.complete else {}
    print(f"run {run.key} at {run.dir}")
    if m:
        print(f"  {m['num_images']} images, {m['num_classes']} classes, {m['epochs_done']} epochs, "
              f"{m['train_seconds']:.1f} s, final loss {m['final_loss']:.4f}")
    if args.eval:
        return _evaluate(run, args.eval, [], None, None, args.device, args.flip)
    return 0


def _refuse_damaged_under_torchrun(cfg) -> None:
    """A damaged or stale run is not retrained under torchrun: rank 0 would rebuild its folder while the other
    ranks read it (the run lock, which serialises that in one process, is not taken under torchrun). Every
    rank reads the same files before any writes, so all refuse alike."""
    from . import runs

    run = runs.get_run(cfg.to_dict())
    verdict = run.verify()
    if verdict.state in (runs.RunState.DAMAGED, runs.RunState.STALE):
        raise SystemExit(f"run {run.key} is {verdict}; under torchrun it is not rebuilt: remove it first "
                         f"(dbrepro runs clean --{'damaged' if verdict.state is runs.RunState.DAMAGED else 'stale'}) "
                         "or train it once without torchrun")


def _require_complete_on_every_rank(run) -> None:
    """After a torchrun training every rank verifies the finished run itself (rank 0 wrote it)."""
    from .runs import DamagedRunError
    from .train import distributed

    try:
        run.require_complete()
    except (FileNotFoundError, DamagedRunError) as e:
        raise SystemExit(f"rank {distributed.environment_rank()}: {e}; under torchrun every process must see the "
                         f"same run cache ({run.dir.parent}): on several machines, a shared folder") from None


def _suites(run, names: str | None, bins: Sequence[str], lfw_pairs: str | None, lfw_root: str | None,
            extra: dict | None = None) -> dict:
    from .data import specs
    from .data.formats import bin_suite, lfw_pair_suite

    suites: dict[str, Any] = {}
    if names:
        data = run.config()["data"]
        if data.get("kind") != "synth":
            raise SystemExit("--suites names suites of the synthetic world; this run was not trained on it "
                             "(use --bin or --lfw-pairs)")
        world = specs.world_for(data)
        for name in names.split(","):
            if name not in world.suites:
                raise SystemExit(f"suite {name!r} is unknown: choose from {', '.join(world.suites)}")
            suites[name] = world.suites[name]
    image_size = run.config()["image_size"]
    for path in bins:
        suites[Path(path).stem] = bin_suite(path, image_size=image_size)
    if lfw_pairs:
        if not lfw_root:
            raise SystemExit("--lfw-pairs needs --lfw-root (the folder of LFW images)")
        suites[Path(lfw_pairs).stem] = lfw_pair_suite(lfw_pairs, lfw_root, image_size=image_size)
    suites.update(extra or {})
    if not suites:
        raise SystemExit("nothing to evaluate: give --suites, --bin, --lfw-pairs or --folder")
    return suites


def _crop(text: str) -> int | float:
    """``--crop``: an integer (a centre square of that many source pixels) or a fraction of each side."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected source pixels (128) or a fraction of each side (0.6), got {text!r}")


def _folder_suites(run, args: argparse.Namespace) -> dict:
    """The verification and identification suites of ``--folder`` (dbrepro.eval.folder_protocol); drawn
    pairs are written out (``--write-pairs``), ``--pairs`` reads them back instead."""
    from .eval.folder_protocol import folder_protocol, pairs_text
    from .paths import atomic_write_text

    if not args.folder:
        for flag in ("pairs", "write_pairs", "crop"):
            if getattr(args, flag) is not None:
                raise SystemExit(f"--{flag.replace('_', '-')} needs --folder (a folder of identity folders)")
        return {}
    if args.pairs and args.write_pairs:
        raise SystemExit("--pairs reads the pairs from a file, --write-pairs writes drawn ones: give one of them")
    protocol = folder_protocol(args.folder, image_size=run.config()["image_size"], crop=args.crop,
                               pairs_file=args.pairs, max_pairs=args.max_pairs, seed=args.seed,
                               num_workers=args.workers)
    print(protocol.describe())
    if not args.pairs:
        target = Path(args.write_pairs or f"{protocol.folder.root.resolve().name}-pairs.txt")
        text = pairs_text(protocol.pairs, protocol.folder)
        if target.exists() and target.read_text() != text:
            raise SystemExit(f"{target} exists and holds other pairs: reuse them with --pairs {target}, "
                             "or write these elsewhere with --write-pairs FILE")
        atomic_write_text(target, text)
        print(f"pairs written to {target} (LFW pairs.txt format; --pairs {target} reuses them)")
    return protocol.suites()


def _evaluate(run, names, bins, lfw_pairs, lfw_root, device, flip, extra: dict | None = None) -> int:
    from . import experiments

    suites = _suites(run, names, bins, lfw_pairs, lfw_root, extra)
    results = experiments.evaluate(run, suites, device=device, flip=flip)
    for name, r in results.items():
        summary = {k: v for k, v in r.items() if isinstance(v, (int, float, str)) or v is None}
        print(f"{name}: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .runs import DamagedRunError, find_run

    try:
        run = find_run(args.run)
    except KeyError as e:
        raise SystemExit(str(e.args[0]))
    try:
        run.require_complete()  # verified: a damaged run is refused, naming the file at fault
    except (FileNotFoundError, DamagedRunError) as e:
        raise SystemExit(str(e))
    folder = _folder_suites(run, args)
    return _evaluate(run, args.suites, args.bin or [], args.lfw_pairs, args.lfw_root, args.device, args.flip, folder)


def _describe_config(run) -> str:
    from .runs import DamagedRunError

    try:
        cfg = run.config()
        desc = f"{cfg.get('head')}{'+' + '+'.join(cfg.get('terms', {})) if cfg.get('terms') else ''}"
        desc += f" rbm={cfg['rbm']}" if cfg.get("rbm") else ""
        data = cfg.get("data", {})
        desc += f" data={data.get('kind')}:{data.get('preset', data.get('root', ''))}"
        desc += f" split={data['split']}" if data.get("split") else ""
        desc += f" seed={cfg.get('seed')}"
    except (OSError, DamagedRunError, AttributeError, TypeError):
        desc = "(unreadable config)"
    return desc


def cmd_runs(args: argparse.Namespace) -> int:
    from . import runs

    if args.action == "list":
        rows = list(runs.iter_runs())
        if not rows:
            print(f"no runs in {runs.runs_root()}")
            return 0
        print(f"{'key':16}  {'state':10}  {'MB':>6}  description")
        for run in rows:
            verdict = runs.verify(run)
            why = verdict.reason
            if verdict.state is not runs.RunState.COMPLETE and run.in_use():
                why = "being trained by another process right now"
            print(f"{run.key:16}  {verdict.state.value:10}  {run.size_bytes() / 1e6:6.1f}  {_describe_config(run)}")
            if why:
                print(f"{'':16}  why: {why}")
        return 0
    # clean
    chosen = {"incomplete": args.incomplete, "stale": args.stale, "damaged": args.damaged, "failed": args.failed}
    if not (args.yes or any(chosen.values())):
        raise SystemExit("dbrepro runs clean removes every cached run; add --yes to confirm "
                         "(or --incomplete / --damaged / --failed / --stale to remove only those)")
    removed = runs.clean(**chosen)
    print(f"removed {len(removed)} run(s) from {runs.runs_root()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx
    from .runs import find_run

    try:
        run = find_run(args.run)
    except KeyError as e:
        raise SystemExit(str(e.args[0]))
    try:
        path = export_onnx(run, args.output, opset=args.opset)
    except ImportError as e:  # onnx is an optional (dev) dependency
        raise SystemExit(str(e))
    print(f"wrote {path}")
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    from .data import specs
    from .data.splits import PAPER_TAIL_BELOW, class_sizes
    from .recipes import world_data

    world = specs.world_for(world_data(args.profile, seed=args.seed))
    sizes = class_sizes(world.train.labels)
    print(f"synthetic world, profile {args.profile}, seed {args.seed}: {len(world.train)} training images of "
          f"{world.train.num_classes} identities at {world.config.image_size} px; "
          f"{(sizes < PAPER_TAIL_BELOW).mean():.0%} of identities have < {PAPER_TAIL_BELOW} images, "
          f"{(sizes >= 100).sum()} have >= 100")
    print(world.domain_table().to_string(index=False))
    for name, suite in world.suites.items():
        print(f"  {name:9} {type(suite).__name__:20} stands for {suite.stands_for}")
    return 0


def cmd_book(args: argparse.Namespace, rest: list[str]) -> int:
    from . import book

    return int(book.main(rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    from .config import DEFAULT_PROFILE, PROFILE_NAMES

    parser = argparse.ArgumentParser(prog="dbrepro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a recipe or a config file (cached in the run cache)",
                       description="Train one run. Same config -> same run key -> loaded from the cache, "
                                   "or resumed from its last checkpoint if it was interrupted.")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--recipe", default="cosface",
                     help="softmax, softmax_pk, contrastive, triplet, center, range, cosface, arcface, sphereface, db "
                          "(default cosface; dbrepro.recipes)")
    src.add_argument("--config", help="YAML/JSON file of TrainConfig fields (see dbrepro.train.TrainConfig)")
    t.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES, help="size profile (default cpu)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--split", help="a Range Loss split of the training data: A-0..A-4, B-0..B-3")
    t.add_argument("--data", metavar="DIR", help="an InsightFace folder (train.rec, train.idx, property) to train on "
                   "instead of the profile's synthetic world; required by the paper and rehearsal profiles")
    t.add_argument("--dataset", default="casia", choices=("casia", "ms1mv2"), help="what --data holds (default casia)")
    t.add_argument("--large-backbone", action="store_true",
                   help="the profile's large backbone (IR-ResNet-50 at paper scale: DB Tables 4-7, Fig. 7)")
    t.add_argument("--arg", action="append", metavar="NAME=VALUE",
                   help="a keyword argument of the recipe, as a chapter passes it to ch.config (repeatable), e.g. "
                        "--recipe db --arg rbm=ungated --arg dbm=false (DB Table 2's rows); --arg k=6 (the DFI's K)")
    t.add_argument("--paper-k", type=int, metavar="K",
                   help="--recipe db: DB Table 3's K for CASIA-WebFace's 10,575 classes, scaled to the data's class "
                        "count (dbrepro.recipes.scaled_k), as db-05 trains it")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set lr=0.05 --set head_kwargs.s=30 (repeatable)")
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    t.add_argument("--workers", type=int, help="DataLoader workers for on-disk datasets (default: the profile's)")
    t.add_argument("--eval", metavar="SUITES", help="afterwards, evaluate on these world suites (comma-separated)")
    t.add_argument("--flip", action="store_true", help="evaluate with flip-augmented embeddings")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "eval", help="evaluate a trained run on suites, .bin packs, LFW pairs or your own image folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a complete run (results are cached in its folder, keyed by the model and the data).\n\n"
                    "--folder DIR: your own photographs, one sub-folder per person (JPEG, PNG, PGM; greyscale or\n"
                    "colour; any size, resized to the model's input after an optional --crop). Two protocols:\n"
                    "  verification  10 folds of matched + mismatched pairs drawn with --seed (LFW View 2: up to\n"
                    "                --max-pairs, 6,000, as many as the folder allows); people with one image only\n"
                    "                appear in mismatched pairs. The pairs are written in LFW's pairs.txt format\n"
                    "                (--write-pairs, default ./<DIR name>-pairs.txt; image i = the i-th file of the\n"
                    "                person's folder in name order); --pairs FILE reuses such a file, or LFW's own.\n"
                    "  identification  rank-1: the first image of every person with two or more images is the\n"
                    "                gallery, the others probes; people with one image are distractors.\n"
                    "It needs at least 2 people with two or more images.\n\n"
                    "  dbrepro eval --run 3f2a --folder ~/lab-photos --crop 0.8\n"
                    "  dbrepro eval --run 9c1e --folder ~/lab-photos --pairs lab-photos-pairs.txt")
    e.add_argument("--run", required=True, help="run key or unambiguous prefix (see dbrepro runs list)")
    e.add_argument("--suites", help="comma-separated synthetic-world suites: lfw, cplfw, calfw, agedb, rfw, afw, blufr, megaface")
    e.add_argument("--bin", action="append", help="an InsightFace .bin verification pack (repeatable)")
    e.add_argument("--lfw-pairs", help="an LFW pairs file (pairs.txt or pairsDevTest.txt)")
    e.add_argument("--lfw-root", help="the LFW image folder for --lfw-pairs")
    e.add_argument("--folder", metavar="DIR", help="a folder of identity folders (your photographs): 10-fold "
                   "verification on pairs drawn from it and rank-1 identification (see above)")
    e.add_argument("--pairs", metavar="FILE", help="--folder: read the pairs from this LFW-format file instead of "
                   "drawing them (a file --write-pairs wrote, or LFW's pairs.txt)")
    e.add_argument("--write-pairs", metavar="FILE", help="--folder: where to write the drawn pairs "
                   "(default ./<DIR name>-pairs.txt; an existing file with other pairs is an error)")
    e.add_argument("--max-pairs", type=int, default=6000,
                   help="--folder: pairs to draw at most, 10 folds of half matched, half mismatched (default 6000)")
    e.add_argument("--seed", type=int, default=0, help="--folder: seed of the pair draw (default 0)")
    e.add_argument("--crop", type=_crop, help="--folder: centre crop before resizing, in source pixels (128) or "
                   "as a fraction of each side (0.8)")
    e.add_argument("--workers", type=int, default=0, help="--folder: threads decoding the images (default 0)")
    e.add_argument("--device", default="auto")
    e.add_argument("--flip", action="store_true", help="flip-augmented embeddings (InsightFace style)")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("runs", help="list or clean the run cache ($DBREPRO_CACHE/runs)",
                       description="list: every run with its verified state (new, partial, complete, failed, "
                                   "damaged, stale) and, unless complete, why. clean: remove runs.")
    r.add_argument("action", choices=("list", "clean"))
    r.add_argument("--incomplete", action="store_true", help="clean: only new and partial (interrupted) runs")
    r.add_argument("--damaged", action="store_true",
                   help="clean: only damaged runs (a file missing, truncated, edited or another run's)")
    r.add_argument("--failed", action="store_true", help="clean: only runs whose training raised")
    r.add_argument("--stale", action="store_true", help="clean: only runs finished under an older cache version")
    r.add_argument("--yes", action="store_true", help="clean: confirm removing every run")
    r.set_defaults(func=cmd_runs)

    x = sub.add_parser("export", help="export a trained embedding model to ONNX")
    x.add_argument("--run", required=True, help="run key or prefix")
    x.add_argument("output", help="the .onnx file to write")
    x.add_argument("--opset", type=int, default=17)
    x.set_defaults(func=cmd_export)

    w = sub.add_parser("world", help="render (or load) the synthetic world of a profile and summarise it")
    w.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    w.add_argument("--seed", type=int, default=0)
    w.set_defaults(func=cmd_world)

    h = sub.add_parser("rehearsal", help="write the tiny InsightFace folder that PROFILE=rehearsal reads",
                       description="Render the rehearsal world (40 identities at 112 x 112) and write it as an "
                                   "InsightFace folder: train.rec/.idx/property and the .bin packs every chapter "
                                   "reads at paper scale. A complete folder is left as it is.")
    h.add_argument("folder", help="where to write it (created)")
    h.add_argument("--seed", type=int, default=0)
    h.set_defaults(func=cmd_rehearsal)

    b = sub.add_parser("book", help="execute the notebooks / build the site / check it offline (see dbrepro book --help)",
                       add_help=False)
    b.set_defaults(func=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "book":
        return cmd_book(argparse.Namespace(), argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # bad input anywhere below: one clear line, no traceback
        print(f"dbrepro {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
