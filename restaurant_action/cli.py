"""``restaurant-action``: training (fit, validate, test through LightningCLI), data commands
(synth, stats, anchors, import, evaluate) and the path to answers (predict, export).

The CLI is the user-facing layer, so it writes its results to standard output; the library
underneath only logs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from restaurant_action.errors import DatasetError

logger = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 320x180, got {text!r}") from None
    return width, height


def _cmd_synth(args: argparse.Namespace) -> None:
    from restaurant_action.data.stats import dataset_stats
    from restaurant_action.data.synthetic import make_synthetic_dataset

    annotations = make_synthetic_dataset(
        args.root, args.videos, args.frames, args.size, args.fps, args.seed, args.workers, args.object_scale,
        actions=args.actions, long_tail=not args.balanced, val_videos=args.val_videos,
    )
    stats = dataset_stats(annotations)
    sys.stdout.write(
        f"wrote {stats.num_videos} videos ({stats.num_frames} frames, {stats.num_boxes} boxes, "
        f"{stats.labelled_fraction:.1%} labelled) to {args.root}\n"
    )


def _cmd_stats(args: argparse.Namespace) -> None:
    from restaurant_action.data.annotations import ActionAnnotations
    from restaurant_action.data.stats import write_dataset_report

    annotations = ActionAnnotations.load(args.root, strict=not args.lenient)
    if not annotations.report.ok:
        sys.stdout.write(annotations.report.summary() + "\n")
    path = write_dataset_report(annotations, args.out or Path(args.root) / "report")
    sys.stdout.write(path.read_text(encoding="utf-8") + f"\nreport written to {path}\n")


def _cmd_anchors(args: argparse.Namespace) -> None:
    from restaurant_action.data.datamodules import FrameDataModule

    dm = FrameDataModule(args.root, image_size=args.image_size, seed=args.seed)
    fit = dm.anchor_fit(args.k)
    anchors = ", ".join(f"{w:.1f},{h:.1f}" for w, h in fit.anchors.tolist())
    sys.stdout.write(
        f"{args.k} anchors at {args.image_size}px (w,h): {anchors}\n"
        f"mean best IoU {fit.mean_iou:.3f}, best-possible recall {fit.best_possible_recall:.3f}\n"
    )


def _cmd_import(args: argparse.Namespace) -> None:
    from restaurant_action.data.importers import run_import

    options = {key: value for key, value in vars(args).items() if key.startswith("opt_") and value is not None}
    annotations = run_import(args.format, args.src, args.dst, **{k[4:]: v for k, v in options.items()})
    sys.stdout.write(f"imported {len(annotations)} boxes in {len(annotations.videos)} videos, {annotations.num_classes} classes, to {args.dst}\n")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from restaurant_action.report import write_evaluation_report

    path = write_evaluation_report(
        args.predictions, args.root, args.out, interpolation=args.interpolation, iou_threshold=args.iou_threshold,
        score_threshold=args.score_threshold,
    )
    sys.stdout.write(f"report written to {path}\n")


def _source(text: str) -> str | int:
    """A predict source: a camera index for a bare number, else a path or URL."""
    return int(text) if text.isdigit() else text


def _cmd_predict(args: argparse.Namespace) -> None:
    from restaurant_action.predict import VideoPredictor

    options = {"every": args.every, "batch_size": args.batch_size, "display_threshold": args.display_threshold,
               "video_backend": args.video_backend}
    if args.score_threshold is not None:
        options["score_threshold"] = args.score_threshold
    if args.ckpt.suffix in (".onnx", ".pt"):
        predictor = VideoPredictor.from_export(args.ckpt, args.device, **options)
    else:
        export_path = {"eager": None, "onnx": args.out / "model.onnx", "torchscript": args.out / "model.pt"}[args.backend]
        predictor = VideoPredictor.from_checkpoint(args.ckpt, args.device, backend=args.backend, export_path=export_path,
                                                   **options)
    result = predictor.predict(_source(args.source), args.out, video=not args.no_video, video_name=args.video_name,
                               live=True if args.live else None)
    sys.stdout.write(
        f"{result.frames} frames ({result.predicted} predicted, {result.dropped} dropped) in {result.seconds:.1f} s, "
        f"{len(result.tubes)} action tubes\n"
        f"detections: {result.detections_json}\ntubes:      {result.tubes_csv}\n"
        + (f"video:      {result.video}\n" if result.video is not None else "")
    )


def _cmd_export(args: argparse.Namespace) -> None:
    from restaurant_action.export import export

    path = export(args.ckpt, args.out, args.format, image_size=args.image_size, frame_stride=args.frame_stride)
    sys.stdout.write(f"wrote {path}\n")


LIGHTNING_COMMANDS = ("fit", "validate", "test")
LIGHTNING_EXAMPLES = {
    "fit": "example:\n  restaurant-action fit --config configs/yolov3.yaml --trainer.max_epochs 30",
    "validate": "example:\n  restaurant-action validate --config configs/yolov3.yaml --ckpt_path runs/yolov3.ckpt",
    "test": "example:\n  restaurant-action test --config configs/yowo_ucf24.yaml --ckpt_path runs/yowo.ckpt",
}


def run_lightning_cli(argv: Sequence[str] | None) -> None:
    """``fit``/``validate``/``test`` through LightningCLI: any model and datamodule of the library
    (``--model YOLOv3Module --data FrameDataModule`` or a ``--config`` file). The datamodule's
    class count, class names and training-clip ranking are passed to the model.
    """
    import pytorch_lightning as pl
    from pytorch_lightning.cli import LightningCLI

    import restaurant_action  # noqa: F401  (registers the classes for --model/--data short names)

    class ActionCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
            parser.link_arguments("data", "model.init_args.num_classes", compute_fn=lambda dm: dm.num_classes, apply_on="instantiate")
            parser.link_arguments("data", "model.init_args.class_names", compute_fn=lambda dm: dm.classes, apply_on="instantiate")
            parser.link_arguments("data", "model.init_args.class_ranking", compute_fn=lambda dm: dm.top_classes(24), apply_on="instantiate")

    ActionCLI(
        pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
        args=None if argv is None else list(argv), save_config_kwargs={"overwrite": True},
        parser_kwargs={name: {"epilog": text, "formatter_class": argparse.RawDescriptionHelpFormatter}
                       for name, text in LIGHTNING_EXAMPLES.items()},
    )


def _example(text: str) -> dict[str, object]:
    """``add_parser`` options that show ``text`` as the example at the end of ``--help``."""
    return {"epilog": f"example:\n  {text}", "formatter_class": argparse.RawDescriptionHelpFormatter}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``restaurant-action``."""
    parser = argparse.ArgumentParser(prog="restaurant-action", description="Spatiotemporal action localization in video.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate the synthetic restaurant dataset", **_example("restaurant-action synth data/synth --videos 8 --frames 900"))
    synth.add_argument("root", type=Path)
    synth.add_argument("--videos", type=int, default=8)
    synth.add_argument("--frames", type=int, default=900, help="frames per video")
    synth.add_argument("--size", type=_size, default=(320, 180), help="WxH, default 320x180")
    synth.add_argument("--fps", type=int, default=30)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=2, help="rendering processes")
    synth.add_argument("--object-scale", type=float, default=1.0, help="size of people and tools (2 suits 160x90 CPU runs)")
    synth.add_argument("--actions", nargs="+", default=None, metavar="ACTION", help="draw only these actions (quoted names)")
    synth.add_argument("--balanced", action="store_true", help="every action equally often (no long tail)")
    synth.add_argument("--val-videos", type=int, default=0, help="hold out the last N videos in splits.json")
    synth.set_defaults(handler=_cmd_synth)

    stats = commands.add_parser("stats", help="validate a dataset and write its report (class histogram, examples)",
                                **_example("restaurant-action stats data/synth --out runs/stats"))
    stats.add_argument("root", type=Path)
    stats.add_argument("--out", type=Path, default=None, help="report folder (default ROOT/report)")
    stats.add_argument("--lenient", action="store_true", help="report bad rows and go on instead of stopping")
    stats.set_defaults(handler=_cmd_stats)

    anchors = commands.add_parser("anchors", help="k-means (1 - IoU) anchors on the training boxes",
                                  **_example("restaurant-action anchors data/synth -k 9 --image-size 320"))
    anchors.add_argument("root", type=Path)
    anchors.add_argument("-k", type=int, default=9)
    anchors.add_argument("--image-size", type=int, default=320)
    anchors.add_argument("--seed", type=int, default=0)
    anchors.set_defaults(handler=_cmd_anchors)

    imports = commands.add_parser("import", help="convert a dataset (yowo, ava, cvat) to the canonical layout",
                                  **_example("restaurant-action import cvat annotations.xml data/shop --video shop.mp4"))
    imports.add_argument("format", choices=("yowo", "ava", "cvat"))
    imports.add_argument("src", type=Path, help="yowo: dataset folder; ava: CSV file; cvat: XML file")
    imports.add_argument("dst", type=Path)
    imports.add_argument("--videos", dest="opt_videos_dir", type=Path, help="ava: folder of the videos")
    imports.add_argument("--video", dest="opt_video_path", type=Path, help="cvat: the annotated video")
    imports.add_argument("--label-map", dest="opt_classes", type=Path, help="ava: label map .pbtxt")
    imports.add_argument("--fps", dest="opt_fps", type=float, help="ava: frame rate override")
    imports.add_argument("--time-offset", dest="opt_time_offset", type=float, help="ava: seconds at frame 0 (900 for clips cut at 15:00)")
    imports.add_argument("--track-iou", dest="opt_track_iou", type=float, help="yowo: IoU that links boxes into tracks")
    imports.add_argument("--copy", dest="opt_link", action="store_const", const=False, help="copy videos/frames instead of symlinking")
    imports.set_defaults(handler=_cmd_import)

    evaluate = commands.add_parser("evaluate", help="score a predictions JSON against a dataset and write a report",
                                   **_example("restaurant-action evaluate runs/pred/detections.json data/synth --out runs/eval"))
    evaluate.add_argument("predictions", type=Path, help="predictions JSON (see docs/metrics.md)")
    evaluate.add_argument("root", type=Path, help="dataset folder")
    evaluate.add_argument("--out", type=Path, default=Path("runs/evaluation"))
    evaluate.add_argument("--interpolation", choices=("voc", "coco101"), default="voc")
    evaluate.add_argument("--iou-threshold", type=float, default=0.5)
    evaluate.add_argument("--score-threshold", type=float, default=0.5)
    evaluate.set_defaults(handler=_cmd_evaluate)

    predict = commands.add_parser(
        "predict", help="detect actions in a video, frame folder, camera or stream: detections JSON, tubes CSV, annotated mp4",
        **_example("restaurant-action predict shift.mp4 --ckpt runs/demo/yowo/yowo.ckpt --out runs/shift\n"
                   "  restaurant-action evaluate runs/shift/detections.json data/synth --out runs/shift/eval"))
    predict.add_argument("source", help="video file, frame folder, camera index (0) or rtsp:// / http:// URL")
    predict.add_argument("--ckpt", type=Path, required=True, help="a checkpoint of any of the three models, or an exported .onnx/.pt")
    predict.add_argument("--out", type=Path, required=True, help="output folder")
    predict.add_argument("--every", type=int, default=1, help="predict every N-th frame, boxes held in between")
    predict.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    predict.add_argument("--backend", choices=("eager", "onnx", "torchscript"), default="eager",
                         help="run the checkpoint in PyTorch, or export it and run the export")
    predict.add_argument("--batch-size", type=int, default=8, help="frames, clips or lanes per model run")
    predict.add_argument("--video-backend", choices=("auto", "pyav", "decord", "torchcodec"), default="auto",
                         help="decoder of video files (auto: the fastest frame-exact one installed)")
    predict.add_argument("--score-threshold", type=float, default=None, help="detections kept in the JSON (default: the model's)")
    predict.add_argument("--display-threshold", type=float, default=0.3, help="detections drawn and linked into tubes")
    predict.add_argument("--video-name", default=None, help="name of the video in the JSON (to match a dataset's)")
    predict.add_argument("--no-video", action="store_true", help="skip the annotated mp4")
    predict.add_argument("--live", action="store_true", help="drop frames when the model is slower than the source")
    predict.set_defaults(handler=_cmd_predict)

    exports = commands.add_parser("export", help="export a checkpoint to ONNX (run by ONNX Runtime) or TorchScript",
                                  **_example("restaurant-action export runs/demo/yolov3/yolov3.ckpt --format onnx --out yolov3.onnx"))
    exports.add_argument("ckpt", type=Path, help="checkpoint of YOLOv3Module, ConvLSTMYOLOModule or YOWOModule")
    exports.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    exports.add_argument("--out", type=Path, required=True, help="file to write")
    exports.add_argument("--image-size", type=int, default=None, help="for a checkpoint that does not record it")
    exports.add_argument("--frame-stride", type=int, default=None, help="for a checkpoint that does not record it")
    exports.set_defaults(handler=_cmd_export)

    for name in LIGHTNING_COMMANDS:
        commands.add_parser(name, help=f"{name} a model (LightningCLI: --config cfg.yaml, --model, --data, --trainer.*)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``restaurant-action``; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in LIGHTNING_COMMANDS:
        run_lightning_cli(argv)
        return 0
    args = build_parser().parse_args(words)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except (DatasetError, ValueError, FileNotFoundError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
