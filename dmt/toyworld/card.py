"""The toy model's folder beyond diffusers' own files: toyworld.json (what kind of model it is,
its own defaults for the CLI and nodes, the training record) and the bundled model's location."""

from __future__ import annotations

import json
from pathlib import Path

import torch

MODEL_KIND = "dmt-toyworld-zeroscope"
#: a toy-world Wan 2.1 (dmt.toyworld.train_wan), loaded with load_wan
WAN_MODEL_KIND = "dmt-toyworld-wan"
KINDS = (MODEL_KIND, WAN_MODEL_KIND)
#: the trained toy model shipped with the package (a diffusers folder)
BUNDLED_MODEL = Path(__file__).resolve().parent / "model"
CARD_FILE = "toyworld.json"
#: the trained toy Wan shipped with the package (a Wan 2.1 diffusers folder, weights stored in float16)
BUNDLED_WAN_MODEL = Path(__file__).resolve().parent / "wan_model"
#: how ComfyUI's model list names the bundled toy model (the entry resolves to BUNDLED_MODEL)
TOY_ENTRY = "dmt-toyworld (bundled offline demo model, 64x64)"
#: how the Load Wan node's list names the bundled toy Wan
WAN_TOY_ENTRY = "dmt-toyworld-wan (bundled offline toy Wan, 64x64, 9 frames)"

#: the toy model's own run defaults: its size and frames, an empty negative prompt (the
#: unconditional caption it was trained with), a low-frequency factor that keeps the object's
#: place in its 8x8 latent (factor 4 would keep 2x2), and a classifier-free guidance scale of 5
#: (at the authors' 10 this small model over-saturates colours: red turns orange or yellow).
DEFAULTS = {"width": 64, "height": 64, "num_frames": 8, "fps": 8, "negative_prompt": "",
            "downsample_factor": 2, "guidance_scale": 5.0}
#: the toy Wan's: 9 frames (Wan's VAE takes 4k + 1: 3 latent frames), classifier-free guidance 5
#: (Wan's own default), empty negative prompt (its unconditional caption in training).
WAN_DEFAULTS = {"width": 64, "height": 64, "num_frames": 9, "fps": 8, "negative_prompt": "",
                "guidance_scale": 5.0}


def read_card(folder: str | Path) -> dict | None:
    """The toyworld.json of a model folder, or None when the folder is not a toy-world model."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return card if card.get("kind") in KINDS else None


def model_defaults(folder: str | Path) -> dict:
    """The run defaults a model folder asks for ({} for a model without a toy-world card)."""
    card = read_card(folder)
    return dict(card.get("defaults", {})) if card else {}


def world_options(folder: str | Path) -> dict:
    """How the world must be drawn for a model folder: {"trail": bool, "clock": bool} (the training
    config's; False for a model without a toy-world card or from before the option). Its held-out
    sources and example clips must look like its training clips."""
    cfg = (read_card(folder) or {}).get("config", {})
    return {k: bool(cfg.get(k, False)) for k in ("trail", "clock")}


def write_model_files(out: Path, unet, text, scheduler, *, cfg: dict, log: list, timing: dict, threads: int,
                      device: str = "cpu") -> None:
    """Save the trained UNet and text encoder, the scheduler, model_index.json and toyworld.json."""
    unet.save_pretrained(str(out / "unet"))
    text.save_pretrained(str(out / "text_encoder"))
    scheduler.save_pretrained(str(out / "scheduler"))
    (out / "model_index.json").write_text(json.dumps({
        "_class_name": "TextToVideoSDPipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet3DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"]}, indent=2))
    write_card(out, MODEL_KIND, DEFAULTS, cfg=cfg, log=log, timing=timing, threads=threads, loss_stage="unet",
               device=device)


def write_card(out: Path, kind: str, defaults: dict, *, cfg: dict, log: list, timing: dict, threads: int,
               loss_stage: str, device: str = "cpu") -> None:
    """Write toyworld.json: the model's kind and run defaults (the clip size and length of its
    training configuration `cfg`, where it has them, over `defaults`), that configuration, and the
    training record (the `loss_stage` loss per 100 steps, the VAE's PSNR, times, threads, the
    device of the run's last stage)."""
    drawn = {"width": cfg.get("size"), "height": cfg.get("size"), "num_frames": cfg.get("num_frames")}
    defaults = {**defaults, **{k: v for k, v in drawn.items() if v is not None}}  # the clips it was trained on
    losses = [e["loss"] for e in log if e.get("stage") == loss_stage]
    curve = [round(float(sum(losses[i:i + 100]) / len(losses[i:i + 100])), 5) for i in range(0, len(losses), 100)]
    vae_last = [e for e in log if e.get("stage") == "vae"][-1:] or [{}]
    decoder_last = [e for e in log if e.get("stage") == "decoder"][-1:] or [{}]
    card = {"kind": kind, "defaults": defaults, "config": cfg,
            "training": {f"{loss_stage}_steps": len(losses), "final_loss_mean_100": curve[-1] if curve else None,
                         "loss_curve_per_100_steps": curve, "vae_psnr_db": vae_last[0].get("psnr"),
                         "decoder_refined_psnr_db": decoder_last[0].get("psnr"),
                         "seconds": timing, "torch_threads": threads, "device": device,
                         "torch": torch.__version__}}
    (out / CARD_FILE).write_text(json.dumps(card, indent=1))
