"""The ``toyworld`` sub-command: train the toy-world model, or print its quality gates.

    python -m dmt toyworld train --out DIR [--kind zeroscope|wan] [--resume] [--steps N] [--threads N]
    python -m dmt toyworld eval [--model DIR] [--quick] [--json FILE]
    python -m dmt toyworld words [--model DIR] [--timestep T]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from ..errors import InputError
from .common import HelpFormatter


def add_toyworld_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("toyworld", formatter_class=HelpFormatter,
                       help="train or evaluate the toy-world model (quality measured on a CPU)",
                       description="The toy world: coloured shapes moving along known trajectories, and a tiny "
                       "model with ZeroScope's exact classes trained on them (vocabulary motions only), so the "
                       "methods' quality can be measured without ZeroScope's weights or a GPU. The trained model "
                       "ships with the package (dmt/toyworld/model). `train --kind wan` trains the same world's "
                       "toy Wan 2.1 (Wan's classes, flow matching).")
    tsub = p.add_subparsers(dest="toy_command", required=True)
    t = tsub.add_parser("train", formatter_class=HelpFormatter, help="train the toy model from scratch (resumable)",
                        description="Trains the VAE, then the UNet and text encoder, and writes a diffusers folder "
                        "that load_zeroscope loads (with --kind wan: the transformer and UMT5, a Wan folder that "
                        "load_wan loads), with toyworld.json (defaults and training record). Ctrl-C "
                        "saves a resumable state; run the same command with --resume to continue. About an "
                        "hour for the toy ZeroScope's recipe and three for the toy Wan's on a 2-core CPU; runs on a "
                        "CUDA GPU when torch sees one (--device).")
    t.add_argument("--out", required=True, help="output folder (new or empty; with --resume, the run to continue)")
    t.add_argument("--resume", action="store_true", help="continue the training in --out")
    t.add_argument("--kind", choices=("zeroscope", "wan"), default="zeroscope",
                   help="which base model's classes: zeroscope (UNet3D, DDPM; the bundled model's recipe) or wan "
                   "(Wan 2.1's transformer, causal VAE and UMT5, rectified flow; 9-frame clips by default; the "
                   "options below marked ZeroScope do not apply)")
    recipe = _recipe_defaults()
    t.add_argument("--steps", type=int, default=None,
                   help=f"UNet + text-encoder steps (default: {recipe.unet_steps}, as the bundled model; with "
                   f"--kind wan transformer + text steps, default {_wan_recipe().steps}; may be raised on resume)")
    t.add_argument("--seed", type=int, default=0, help="seed of the data, the weights and the noise")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N (default: cuda when torch sees one, else cpu). The batches, noise and "
                   "captions are drawn on the CPU either way, so a run draws the same data on any device; a run "
                   "may be resumed on another device")
    t.add_argument("--latent-scale", type=float, default=recipe.latent_scale,
                   help="ZeroScope: standard deviation the latents are scaled to (below 1 shifts ZeroScope's schedule "
                   "towards noise, so the noisiest step no longer leaks the motion)")
    t.add_argument("--token-init-std", type=float, default=recipe.token_init_std,
                   help="ZeroScope: std of the text encoder's token embeddings at init (CLIP: 0.02)")
    t.add_argument("--high-noise-share", type=float, default=recipe.high_noise_share,
                   help="ZeroScope: share of each batch trained at the noisiest fifth of the timesteps")
    t.add_argument("--prediction-type", choices=("epsilon", "v_prediction"), default=recipe.prediction_type,
                   help="ZeroScope: what the UNet learns to output: ε (ZeroScope's) or v (same betas; the library converts "
                   "v to ε, so every method runs unchanged)")
    t.add_argument("--wander-clips", type=int, default=recipe.wander_clips,
                   help="ZeroScope: clips with a random-walk motion, captioned by the subject only, added to the vocabulary "
                   "clips (a broader motion prior; the bundled recipe has none: with 1024, transfers and LoRA did worse)")
    t.add_argument("--trail", action=argparse.BooleanOptionalAction, default=recipe.trail,
                   help="ZeroScope: draw a grey comet tail behind the object, so one frame shows which way it moves (the "
                   "bundled recipe has none: with it, direction words bound in 56 %% of samples but colours in 83 %%)")
    t.add_argument("--clock", action=argparse.BooleanOptionalAction, default=recipe.clock,
                   help="ZeroScope: draw a grey bar along the bottom that grows with the frame index, so every frame "
                   "shows when in the clip it is (the bundled recipe has none; the model card has what it does)")
    t.add_argument("--frames", type=int, default=None,
                   help=f"frames per training clip, which become the model's default clip length (default: "
                   f"{recipe.num_frames} for the toy ZeroScope, {_wan_recipe().num_frames} for the toy Wan, which needs "
                   f"4k + 1). The world's speeds are travel per clip, so longer clips move slower per frame")
    t.add_argument("--first-frame-weight", type=float, default=None,
                   help=f"Wan: weight of the first frame's reconstruction error against each later frame's in the "
                   f"VAE's training (Wan's VAE encodes the first frame alone; default "
                   f"{_wan_recipe().vae_first_frame_weight:g}, the recipe's)")
    t.add_argument("--vae-steps", type=int, default=None,
                   help=f"Wan: the VAE's training steps (default {_wan_recipe().vae_steps}, the recipe's)")
    t.add_argument("--vae-lr", type=float, default=None,
                   help=f"Wan: the VAE's learning rate, also its decoder refinement's (default "
                   f"{_wan_recipe().vae_lr:g}, the recipe's)")
    t.add_argument("--vae-wander", type=float, default=None,
                   help=f"Wan: share of the VAE's training clips with a random-walk motion, so that it learns to "
                   f"encode curved paths within a latent frame (default {_wan_recipe().vae_wander:g}, the recipe's)")
    t.set_defaults(func=run_train)
    e = tsub.add_parser("eval", formatter_class=HelpFormatter, help="print the toy-world quality gates G1-G5",
                        description="Runs the five gates on a toy-world model and prints the table (the thresholds "
                        "are those of tests/quality). The full table takes about an hour on a 2-core CPU; --quick "
                        "runs the CI subset.")
    e.add_argument("--model", default=None, help="toy-world model folder, or 'wan' for the bundled toy Wan (default: "
                   "the bundled toy ZeroScope); on a toy Wan, G2 runs attention motion flow and SMM")
    e.add_argument("--quick", action="store_true", help="only what CI runs (fast preset, the circle alone in LoRA, one fuse)")
    e.add_argument("--gates", default="G1,G2,G3,G4,G5", help="comma-separated gates to run")
    e.add_argument("--json", default=None, help="also write the figures as JSON to this file")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: one for the toy model)")
    e.set_defaults(func=run_eval)
    w = tsub.add_parser("words", formatter_class=HelpFormatter, help="which caption words the model uses",
                        description="The x0 error of the model's prediction at a noisy timestep on fresh vocabulary "
                        "clips, with the true caption and with one word swapped (colour, speed, direction): a "
                        "word the model uses raises the error when swapped, one it ignores leaves it unchanged. "
                        "Seconds on a CPU.")
    w.add_argument("--model", default=None, help="toy-world model folder, or 'wan' for the bundled toy Wan "
                   "(default: the bundled toy ZeroScope)")
    w.add_argument("--timestep", type=int, default=999, help="training timestep to measure at (0-999; on a toy Wan "
                   "its flow step k, sigma = shift((k + 1) / 1000), 999 being pure noise)")
    w.add_argument("--clips", type=int, default=32, help="number of vocabulary clips")
    w.set_defaults(func=run_words)


def _recipe_defaults():
    from ..toyworld.train import ToyConfig

    return ToyConfig()


def _wan_recipe():
    from ..toyworld.train_wan import WanToyConfig

    return WanToyConfig()


#: the ZeroScope-only recipe options (argparse dest → flag)
_ZEROSCOPE_ONLY = {"latent_scale": "--latent-scale", "token_init_std": "--token-init-std",
                   "high_noise_share": "--high-noise-share", "prediction_type": "--prediction-type",
                   "wander_clips": "--wander-clips", "trail": "--trail", "clock": "--clock"}


def _steps(args: argparse.Namespace) -> int | None:
    """--steps, checked (None: the recipe's)."""
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be at least 1; got {args.steps}.")
    return args.steps


def _train_wan(args: argparse.Namespace) -> int:
    from ..toyworld.train_wan import WanToyConfig, train_toy_wan

    recipe = _recipe_defaults()
    given = [flag for dest, flag in _ZEROSCOPE_ONLY.items() if getattr(args, dest) != getattr(recipe, dest)]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise InputError(f"{', '.join(given)} {verb} to the toy ZeroScope only; leave {'it' if len(given) == 1 else 'them'} "
                         f"out with --kind wan.")
    cfg = WanToyConfig(seed=args.seed)
    if args.first_frame_weight is not None:
        if not 0 < args.first_frame_weight <= 100:
            raise InputError(f"--first-frame-weight must be in (0, 100]; got {args.first_frame_weight:g}.")
        cfg = dataclasses.replace(cfg, vae_first_frame_weight=args.first_frame_weight)
    if args.vae_steps is not None:
        if not 1 <= args.vae_steps <= 1_000_000:
            raise InputError(f"--vae-steps must be a whole number from 1 to 1000000; got {args.vae_steps}.")
        cfg = dataclasses.replace(cfg, vae_steps=args.vae_steps)
    if args.vae_lr is not None:
        if not 0 < args.vae_lr <= 1:
            raise InputError(f"--vae-lr must be in (0, 1]; got {args.vae_lr:g}.")
        cfg = dataclasses.replace(cfg, vae_lr=args.vae_lr)
    if args.vae_wander is not None:
        if not 0 <= args.vae_wander <= 1:
            raise InputError(f"--vae-wander must be in [0, 1]; got {args.vae_wander:g}.")
        cfg = dataclasses.replace(cfg, vae_wander=args.vae_wander)
    if args.frames is not None:
        if args.frames % 4 != 1 or not 5 <= args.frames <= 81:
            near = sorted({max(5, min(81, 4 * round((args.frames - 1) / 4) + 1 + d)) for d in (-4, 0, 4)})
            raise InputError(f"--frames must be 4k + 1 from 5 to 81 for the toy Wan (Wan's VAE); got {args.frames}. "
                             f"Nearest: {', '.join(map(str, near))}.")
        cfg = dataclasses.replace(cfg, num_frames=args.frames)
    if _steps(args) is not None:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    out = train_toy_wan(args.out, cfg, resume=args.resume, threads=args.threads, device=args.device)
    print(f"wrote the toy-world Wan to {out}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from ..toyworld.train import ToyConfig, train_toy_model

    if args.kind == "wan":
        return _train_wan(args)
    wan_only = [flag for flag, value in (("--first-frame-weight", args.first_frame_weight),
                                         ("--vae-steps", args.vae_steps), ("--vae-lr", args.vae_lr),
                                         ("--vae-wander", args.vae_wander)) if value is not None]
    if wan_only:
        raise InputError(f"{', '.join(wan_only)} {'applies' if len(wan_only) == 1 else 'apply'} to the toy Wan only "
                         f"(--kind wan); leave {'it' if len(wan_only) == 1 else 'them'} out for the toy ZeroScope.")

    if not 0 < args.latent_scale <= 4 or not 0 < args.token_init_std <= 10 or not 0 <= args.high_noise_share <= 1:
        raise InputError("--latent-scale must be in (0, 4], --token-init-std in (0, 10] and --high-noise-share in "
                         "[0, 1].")
    if not 0 <= args.wander_clips <= 100_000:
        raise InputError(f"--wander-clips must be a whole number from 0 to 100000; got {args.wander_clips}.")
    if args.frames is not None and not 2 <= args.frames <= 64:
        raise InputError(f"--frames must be a whole number from 2 to 64 for the toy ZeroScope; got {args.frames}.")
    cfg = ToyConfig(seed=args.seed, latent_scale=args.latent_scale, token_init_std=args.token_init_std,
                    high_noise_share=args.high_noise_share, prediction_type=args.prediction_type,
                    wander_clips=args.wander_clips, trail=args.trail, clock=args.clock)
    if args.frames is not None:
        cfg = dataclasses.replace(cfg, num_frames=args.frames)
    if _steps(args) is not None:
        cfg = dataclasses.replace(cfg, unet_steps=args.steps)
    out = train_toy_model(args.out, cfg, resume=args.resume, threads=args.threads, device=args.device)
    print(f"wrote the toy-world model to {out}")
    return 0


def _load_toy(name: str | None):
    from ..models.wan import load_wan
    from ..models.zeroscope import load_zeroscope
    from ..toyworld.card import BUNDLED_MODEL, BUNDLED_WAN_MODEL, WAN_MODEL_KIND, read_card

    folder = BUNDLED_WAN_MODEL if name == "wan" else Path(name) if name else BUNDLED_MODEL
    card = read_card(folder)
    if card is None:
        raise InputError(f"'{folder}' is not a toy-world model (no toyworld.json of kind toy-world). Give a folder "
                         f"written by `toyworld train`, or leave --model out for the bundled toy ZeroScope ('wan': the bundled toy Wan).")
    if card["kind"] == WAN_MODEL_KIND:
        return load_wan(folder, "float32", "cpu")
    return load_zeroscope(folder, "float32", "cpu")


def run_words(args: argparse.Namespace) -> int:
    import torch

    from ..toyworld.diagnose import caption_word_gaps

    if not 0 <= args.timestep <= 999 or args.clips < 1:
        raise InputError(f"--timestep must be in 0-999 and --clips at least 1; got {args.timestep} and {args.clips}.")
    model = _load_toy(args.model)
    torch.set_num_threads(1)
    g = caption_word_gaps(model, timestep=args.timestep, clips=args.clips)
    print(f"x0-MSE at t = {args.timestep} over {args.clips} vocabulary clips (latent variance "
          f"{g['latent_variance']:.4f}): true caption {g['true']:.4f}")
    for word in ("colour", "speed", "direction"):
        print(f"  {word:9s} swapped: {g[word]:+.4f}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from ..models.threads import set_threads_for
    from ..toyworld import evaluate as ev

    model = _load_toy(args.model)
    set_threads_for(model, args.threads)
    gates = {g.strip().upper() for g in args.gates.split(",")}
    results = []
    timings = {}

    def run(name, fn, *a, **k):
        t0 = time.time()
        r = fn(model, *a, **k) if name != "G5" else fn(*a, **k)
        timings[r.name] = time.time() - t0
        results.append(r)
        print(f"  {r.name}: {json.dumps(r.figures, default=float)}  ({timings[r.name]:.0f} s)", flush=True)

    with torch.inference_mode(False):
        if "G1" in gates:
            run("G1", ev.gate_base)
        if "G2" in gates:
            presets = ev.WAN_PRESETS if ev.is_wan(model) else ("fast", "authors")
            for preset in (presets[:1] if args.quick else presets):
                run("G2", ev.gate_transfer, preset=preset)
            run("G2", ev.gate_transfer, preset=presets[0], guidance=False)
        if "G3" in gates:
            run("G3", ev.gate_customize, modes=("lora",) if args.quick else ("lora", "full"),
                second_motion=not args.quick)
            if not args.quick:
                run("G3", ev.gate_customize, modes=("lora",), second_motion=False, random_motion=True)
        if "G4" in gates:
            run("G4", ev.gate_long_video, fuses=("pyramid",) if args.quick else ("pyramid", "flat"))
            if not args.quick:
                run("G4", ev.gate_long_video, fuses=("pyramid",), guidance=False)
        if "G5" in gates:
            run("G5", ev.gate_metric)
    print()
    print(ev.format_table(results, timings))
    if args.json:
        Path(args.json).write_text(json.dumps({r.name: {"figures": r.figures, "seconds": timings[r.name]}
                                               for r in results}, indent=1, default=float))
    return 0
