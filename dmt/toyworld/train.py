"""Training the toy-world ZeroScope from scratch, resumably.

Three stages, each kept on disk so an interrupted run (Ctrl-C, a crash, a closed laptop) goes on
where it stopped with `--resume`:
1. VAE (AutoencoderKL, 8x downsampling) on single frames of vocabulary clips: MSE + a small KL
   term; then `scaling_factor` is set to latent_scale/std of the latents (see ToyConfig.latent_scale).
   Written to OUT/vae/.
2. Latents of a fixed set of vocabulary clips (posterior mean × scaling_factor), with captions,
   in OUT/.train/latents.safetensors; and of `wander_clips` wander clips (dmt.toyworld.world:
   random walks captioned by the subject only) in OUT/.train/wander.safetensors.
3. UNet3DConditionModel + CLIP text encoder jointly, ε-prediction (or v-prediction, see
   ToyConfig.prediction_type) on ZeroScope's scheduler betas, uniform timesteps, caption dropout
   for classifier-free guidance (empty caption), motion words dropped from some captions ("a red
   ball"), the authors' prompt prefix on half of them, and time reversal as augmentation (a
   reversed "left" clip is a "right" clip with exact latents). AdamW with a linear warm-up and a
   linear decay over the last fifth. State in OUT/.train/state.safetensors every
   `checkpoint_every` steps and on Ctrl-C.
4. The VAE decoder alone (`refine_decoder`), refined on the posterior mean with the encoder frozen (so the latent
   space the UNet learned is unchanged): sharper shapes, truer colours.
The result is a diffusers folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/,
model_index.json) that `load_zeroscope` loads, plus toyworld.json (the model's own defaults and
the training record).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel

from ..customize.atomic import atomic_path
from ..customize.train_state import load_train_state, save_train_state
from ..errors import InputError
from ..models.memory import module_device
from ..models.random_model import SCHEDULER_CONFIG, _randomize_temporal_convs
from ..models.text import AUTHORS_PROMPT_PREFIX
from .card import MODEL_KIND, write_model_files
from .tokenizer import save_word_tokenizer
from .world import OPPOSITE, random_vocabulary_clip, random_wander_clip, reversed_clip, subject


@dataclass(frozen=True)
class ToyConfig:
    """Everything that defines a training run (its hash guards --resume). `unet_steps` may grow on
    resume (train longer), and the last stage's `decoder_steps` may change; every other field must
    match."""

    seed: int = 0
    size: int = 64
    num_frames: int = 8
    vae_channels: tuple[int, ...] = (16, 32, 32, 32)
    vae_steps: int = 300
    vae_batch: int = 16
    vae_lr: float = 1.5e-3
    kl_weight: float = 1e-6
    num_clips: int = 2048
    unet_channels: tuple[int, ...] = (16, 32, 64, 64)
    text_width: int = 64
    text_layers: int = 2
    unet_steps: int = 4000
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 100
    caption_dropout: float = 0.1
    motion_word_dropout: float = 0.15
    checkpoint_every: int = 50
    decoder_steps: int = 600
    #: std of the text encoder's token embeddings at init. CLIP's own 0.02 makes every word start
    #: almost alike after the position embeddings; the direction words then never separate (the
    #: UNet cannot use a difference it does not see, so no gradient ever widens it).
    token_init_std: float = 1.0
    #: share of each batch with a timestep from the noisiest fifth (t >= 800), where the layout
    #: and the motion are decided and the caption is the only hint; the rest uniform.
    high_noise_share: float = 0.0
    #: latents are scaled to this standard deviation (ZeroScope's scheduler is kept as it is). At
    #: 1.0 a tiny 8x8 latent leaks its whole trajectory through the noisiest timestep (its terminal
    #: SNR is not zero), the model learns to read the motion from the noise and ignores the caption's
    #: direction; a smaller scale shifts the schedule towards noise, as for high-resolution models.
    latent_scale: float = 0.5
    #: what the UNet outputs: "epsilon" (ZeroScope's) or "v_prediction" (v = √ᾱ·ε − √(1−ᾱ)·x0, same
    #: betas; written to the scheduler config, and the library converts v to ε at its UNet call). A
    #: tiny ε-model cannot copy x_t precisely enough at the noisiest steps, so its x0 estimate there
    #: is mostly that copying error (ε-MSE 0.008 at t = 999 is an x0 error 25 times the latents'
    #: variance); a v-model predicts the content itself there. Measured on the bundled model: colour
    #: in 96 % of text-to-video samples (ε: 90 %) and in every transfer (ε: 58 %); the direction
    #: words stay unbound either way (the model card says why).
    prediction_type: str = "v_prediction"
    #: clips with a wander motion (a random walk, captioned "a red ball") added to the `num_clips`
    #: vocabulary clips: a broader motion prior than straight lines. 0 in the bundled recipe:
    #: measured with 1024 (same recipe otherwise, 2026-12-05), transfers followed their held-out
    #: sources less (G2 ratio 0.87 against 0.76) and LoRA no longer learnt the circle (1.39 against 0.43).
    wander_clips: int = 0
    #: draw the world's grey comet tail behind the object (dmt.toyworld.world.TRAIL_GREY): one frame
    #: then shows which way the object moves, so a direction word can be bound through the per-frame
    #: cross-attention as a colour word is. Time-reversed training clips are re-rendered (their
    #: tail points the other way), not flipped. False in the bundled recipe: measured with it (same
    #: recipe, 6000 steps, 2026-12-05) direction in 56 % of G1's samples (bundled: 17 %) but colour in
    #: 83 % (96 %), and transfers kept their colour in 75 % (100 %); the model card has the table.
    trail: bool = False
    #: draw the world's clock (dmt.toyworld.world.CLOCK_ROWS): a grey bar that grows with the frame
    #: index, so every frame shows when in the clip it is and a direction word can say where the
    #: object is at that time. Time-reversed training clips are re-rendered (the clock still runs
    #: forwards). False in the bundled recipe: measured, the model learnt the bar, not the direction
    #: words (G1 direction 25 %; model card).
    clock: bool = False

    @property
    def redraw_reversed(self) -> bool:
        """Whether time-reversed clips must be drawn again rather than played backwards."""
        return self.trail or self.clock

    def key(self) -> str:
        d = dataclasses.asdict(self)
        for later in ("unet_steps", "checkpoint_every", "decoder_steps"):  # may change on resume
            d.pop(later)
        if d["prediction_type"] == "epsilon":  # keys of runs from before the option stay valid
            d.pop("prediction_type")
        if d["wander_clips"] == 0:
            d.pop("wander_clips")
        for flag in ("trail", "clock"):
            if not d[flag]:
                d.pop(flag)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def build_unet(cfg: ToyConfig) -> UNet3DConditionModel:
    """ZeroScope's UNet classes and block types at toy widths (random init, temporal convs not
    zero so the temporal path trains from the start)."""
    unet = UNet3DConditionModel(
        down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
        layers_per_block=2, in_channels=4, out_channels=4, block_out_channels=cfg.unet_channels,
        cross_attention_dim=cfg.text_width, attention_head_dim=4, norm_num_groups=8,
        sample_size=cfg.size // 8)
    _randomize_temporal_convs(unet, torch.Generator().manual_seed(cfg.seed + 1))
    return unet


def build_vae(cfg: ToyConfig) -> AutoencoderKL:
    return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         block_out_channels=cfg.vae_channels, layers_per_block=1, norm_num_groups=8,
                         in_channels=3, out_channels=3, latent_channels=4, sample_size=cfg.size,
                         scaling_factor=1.0)


def build_text_encoder(cfg: ToyConfig, vocab_size: int) -> CLIPTextModel:
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=cfg.text_width, intermediate_size=2 * cfg.text_width,
        num_attention_heads=4, num_hidden_layers=cfg.text_layers, projection_dim=cfg.text_width,
        max_position_embeddings=77, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1))
    if cfg.token_init_std != 0.02:
        torch.nn.init.normal_(text.get_input_embeddings().weight, std=cfg.token_init_std)
    return text


@dataclass
class Run:
    """An opened training folder: its state folder (OUT/.train), the log and timing records (kept
    across resumes) and `save_log()` writing both."""

    state_dir: Path
    log: list
    timing: dict

    def save_log(self) -> None:
        (self.state_dir / "log.json").write_text(json.dumps(self.log))
        (self.state_dir / "timing.json").write_text(json.dumps(self.timing))


def open_run(out: Path, key: str, config: dict, resume: bool, threads: int | None) -> Run:
    """Check that `out` may be trained into (empty or new; with `resume`, holding a run of the same
    configuration `key`), record the configuration, and read back the log and timings of earlier
    runs. Raises InputError (nothing written) otherwise."""
    state_dir = out / ".train"
    cfg_file = state_dir / "config.json"
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise InputError(f"'{out}' is not empty. Give an empty or new folder, or add --resume to continue "
                             f"the training that is in it.")
        if not cfg_file.is_file():
            raise InputError(f"'{out}' holds no toy-world training state ({cfg_file} is missing); nothing to "
                             f"resume. Give an empty or new folder to start a new training.")
        saved = json.loads(cfg_file.read_text())
        if saved.get("key") != key:
            raise InputError(f"The training in '{out}' used another configuration ({saved.get('config')}); "
                             f"resume it with the same settings, or train into a new folder.")
    if threads:
        torch.set_num_threads(threads)
    state_dir.mkdir(parents=True, exist_ok=True)
    cfg_file.write_text(json.dumps({"key": key, "config": config}, indent=1))
    log_file, timing_file = state_dir / "log.json", state_dir / "timing.json"
    return Run(state_dir, json.loads(log_file.read_text()) if log_file.is_file() else [],
               json.loads(timing_file.read_text()) if timing_file.is_file() else {})


def training_device(device: str | torch.device | None = None) -> torch.device:
    """The device a toy model trains on: `device`, or (None) cuda when torch sees one, else cpu.
    InputError when a CUDA device is asked for and torch sees none. Every random draw of the
    training (data, timesteps, noise, captions) stays on the CPU generators, so a run draws the
    same batches on any device; only the arithmetic differs."""
    try:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as exc:
        raise InputError(f"Unknown device '{device}': give cpu, cuda or cuda:N.") from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"Device '{device}' was asked for, but torch sees no CUDA device on this machine. "
                             f"Train with --device cpu (hours at the bundled sizes), or on a machine with a GPU.")
        if dev.index is not None and dev.index >= count:
            raise InputError(f"Device '{device}' was asked for, but torch sees {count} CUDA device(s) "
                             f"(cuda:0 to cuda:{count - 1}).")
    elif dev.type != "cpu":
        raise InputError(f"Device '{device}': the toy models train on cpu or cuda.")
    return dev


def save_on_cpu(module: torch.nn.Module, folder: Path) -> None:
    """module.save_pretrained(folder) from the CPU (the module goes back to its device after)."""
    device = module_device(module)
    module.to("cpu").save_pretrained(str(folder))
    module.to(device)


def scheduled_lr(step: int, lr: float, warmup: int, total: int) -> float:
    """The learning rate at `step` (0-based): linear warm-up over `warmup` steps, constant, then a
    linear decay over the last fifth of `total` (to 5 % of `lr`)."""
    decay_from = int(total * 0.8)
    f = min(1.0, (step + 1) / warmup)
    if step >= decay_from:
        f *= max(0.05, 1 - (step - decay_from) / max(1, total - decay_from))
    return lr * f


def optimise(run: Run, params: dict[str, torch.Tensor], opt: torch.optim.Optimizer, gen: torch.Generator, *,
             total: int, checkpoint_every: int, stage: str, desc: str, key: str,
             lr_at: Callable[[int], float], loss_at: Callable[[], torch.Tensor]) -> None:
    """The resumable optimisation loop of both toy models: from the state in OUT/.train (if any)
    up to `total` steps of `loss_at()` (it draws its batch from `gen`), the learning rate `lr_at(step)`,
    gradients clipped to norm 1; the state (parameters, optimiser, `gen`) saved every
    `checkpoint_every` steps, at the end and on Ctrl-C (then InputError saying how to resume).
    The log gets {"stage", "step", "loss"} per step; the timing `<stage>_s` and
    `<stage>_steps_this_run`."""
    state_file = run.state_dir / "state.safetensors"
    step = 0
    if state_file.is_file():
        st = load_train_state(state_file)
        with torch.no_grad():
            for k, v in st["params"].items():
                params[k].copy_(v)
        opt.load_state_dict(st["optimizer_state"])
        gen.set_state(st["rng"])
        step = st["step"]

    def checkpoint() -> None:
        save_train_state(state_file, step, params, opt, gen, None, {"config": key})
        run.save_log()

    timer = f"{stage}_s"
    bar = _progress(total, step, desc)
    t_start, s_start = time.time(), step
    try:
        while step < total:
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = loss_at()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            opt.step()
            step += 1
            run.log.append({"stage": stage, "step": step, "loss": loss.item()})
            recent = [e["loss"] for e in run.log[-50:] if e.get("stage") == stage]
            bar.set_postfix(loss=f"{np.mean(recent):.4f}", lr=f"{lr_at(step - 1):.1e}")
            bar.update()
            if step % checkpoint_every == 0:
                run.timing[timer] = run.timing.get(timer, 0.0) + time.time() - t_start
                t_start = time.time()
                checkpoint()
    except KeyboardInterrupt:
        run.timing[timer] = run.timing.get(timer, 0.0) + time.time() - t_start
        checkpoint()
        bar.close()
        raise InputError(f"Training stopped at step {step} of {total}; the state is saved. Continue with "
                         f"the same command and --resume.") from None
    bar.close()
    run.timing[timer] = run.timing.get(timer, 0.0) + time.time() - t_start
    run.timing[f"{stage}_steps_this_run"] = step - s_start
    checkpoint()


def _progress(total: int, initial: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


def _frame_batch(cfg: ToyConfig, rng: np.random.Generator) -> torch.Tensor:
    """(vae_batch, 3, size, size) in [-1, 1]: two random frames from each of fresh vocabulary clips."""
    frames: list[torch.Tensor] = []
    while len(frames) < cfg.vae_batch:
        clip = random_vocabulary_clip(rng, cfg.num_frames, cfg.size, cfg.size, cfg.trail, cfg.clock)
        frames.extend(clip.frames[rng.choice(cfg.num_frames, 2, replace=False)])
    return torch.stack(frames[: cfg.vae_batch]).permute(0, 3, 1, 2) * 2 - 1


# ---- stage 1: VAE -------------------------------------------------------------------------------

def _train_vae(cfg: ToyConfig, out: Path, log: list, device: torch.device) -> AutoencoderKL:
    torch.manual_seed(cfg.seed)
    vae = build_vae(cfg).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    rng = np.random.default_rng(cfg.seed + 11)
    bar = _progress(cfg.vae_steps, 0, "toy VAE")
    for step in range(cfg.vae_steps):
        x = _frame_batch(cfg, rng).to(device)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        mse = F.mse_loss(rec, x)
        loss = mse + cfg.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-10))
        bar.set_postfix(mse=f"{mse.item():.4f}", psnr=f"{psnr:.1f}dB")
        bar.update()
        if step % 10 == 0 or step == cfg.vae_steps - 1:
            log.append({"stage": "vae", "step": step + 1, "mse": mse.item(), "psnr": psnr})
    bar.close()
    vae.eval()
    with torch.no_grad():  # unit-variance latents
        clips = [random_vocabulary_clip(rng, cfg.num_frames, cfg.size, cfg.size, cfg.trail, cfg.clock).frames
                 for _ in range(16)]
        z = vae.encode((torch.cat(clips).permute(0, 3, 1, 2) * 2 - 1).to(device)).latent_dist.mean
    vae.register_to_config(scaling_factor=float(cfg.latent_scale / z.std()))
    save_on_cpu(vae, out / "vae")
    return vae


def refine_decoder(vae: torch.nn.Module, out: Path, log: list, *, steps: int, lr: float, seed: int,
                   batch: Callable[[np.random.Generator], torch.Tensor],
                   decode: Callable[[torch.Tensor], torch.Tensor],
                   loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
    """The last stage of both toy models: train the VAE decoder (and post_quant_conv) alone on the
    posterior mean of `batch(rng)` (pixels in [-1, 1]), `decode(z)` giving the reconstruction; the
    encoder, and so the latent space the denoiser learned, stays exactly as it was: sharper edges,
    truer colours. Learning rate decays linearly from `lr`; the VAE is saved to OUT/vae. Runs on
    the VAE's device (the batches are moved there). `loss(recon, x)` is what is minimised (default:
    the MSE, which is what is logged either way)."""
    rng = np.random.default_rng(seed)
    device = module_device(vae)
    vae.train()
    for p in vae.parameters():
        p.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr)
    bar = _progress(steps, 0, "toy VAE decoder")
    for step in range(steps):
        x = batch(rng).to(device)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        for g in opt.param_groups:
            g["lr"] = lr * (1 - step / steps)
        recon = decode(z)
        mse = F.mse_loss(recon, x) if loss is None else F.mse_loss(recon.detach(), x)
        objective = mse if loss is None else loss(recon, x)
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-10))
        bar.set_postfix(psnr=f"{psnr:.1f}dB")
        bar.update()
        if step % 10 == 0 or step == steps - 1:
            log.append({"stage": "decoder", "step": step + 1, "mse": mse.item(), "psnr": psnr})
    bar.close()
    for p in vae.parameters():
        p.requires_grad_(True)
    save_on_cpu(vae.eval(), out / "vae")


# ---- stage 2: latents of the training clips ----------------------------------------------------

def _encode_clips(cfg: ToyConfig, vae: AutoencoderKL, path: Path, wander: bool = False) -> None:
    """Encode `num_clips` vocabulary clips (or `wander_clips` wander clips) into `path`: latents
    (N, 4, F, h, w), with a trail or clock also those of each clip played backwards and re-rendered
    ("reversed", same shape), and metadata [colour, shape, direction, speed] ("" for wander clips).
    Encoded on the VAE's device, stored on the CPU."""
    rng = np.random.default_rng(cfg.seed + (23 if wander else 22))
    device = module_device(vae)
    count, make = (cfg.wander_clips, random_wander_clip) if wander else (cfg.num_clips, random_vocabulary_clip)
    lat, back, meta = [], [], []
    bar = _progress(count, 0, "encoding wander clips" if wander else "encoding clips")

    def encode(frames: torch.Tensor) -> torch.Tensor:
        z = vae.encode((frames.permute(0, 3, 1, 2) * 2 - 1).to(device)).latent_dist.mean * vae.config.scaling_factor
        return z.permute(1, 0, 2, 3).cpu().contiguous()  # (4, F, h, w)

    with torch.no_grad():
        for _ in range(count):
            clip = make(rng, cfg.num_frames, cfg.size, cfg.size, cfg.trail, cfg.clock)
            lat.append(encode(clip.frames))
            if cfg.redraw_reversed:
                back.append(encode(reversed_clip(clip, cfg.size, cfg.size).frames))
            meta.append([clip.colour, clip.shape, *(("", "") if wander else clip.motion.split("/"))])
            bar.update()
    bar.close()
    tensors = {"latents": torch.stack(lat)} | ({"reversed": torch.stack(back)} if back else {})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})


def _caption(colour: str, shape: str, direction: str, speed: str, reverse: bool, rng: torch.Generator,
             cfg: ToyConfig, prefix_share: float = 0.5) -> str:
    """A training caption; direction "" (a wander clip) names the subject only. `prefix_share` of
    them start with the authors' (ZeroScope) prompt prefix."""
    if reverse and direction:
        direction = OPPOSITE[direction]
    u = torch.rand(3, generator=rng).tolist()
    if u[0] < cfg.caption_dropout:
        return ""
    text = subject(colour, shape) if u[1] < cfg.motion_word_dropout or not direction else \
        f"{subject(colour, shape)} moving {direction} {speed}"
    return (AUTHORS_PROMPT_PREFIX.lower() + text) if u[2] < prefix_share else text


# ---- stage 3: UNet + text encoder --------------------------------------------------------------

def train_toy_model(out: str | Path, cfg: ToyConfig = ToyConfig(), resume: bool = False,
                    threads: int | None = None, device: str | torch.device | None = None) -> Path:
    """Train (or resume) the toy model into `out` on `device` (None: cuda when available, else
    cpu; a run may be resumed on another device); returns the folder.

    Raises InputError when `out` is not empty and `resume` is off, when the state in `out`
    belongs to another configuration (nothing is overwritten in either case), or when a CUDA
    device is asked for on a machine without one."""
    out = Path(out)
    dev = training_device(device)
    run = open_run(out, cfg.key(), dataclasses.asdict(cfg), resume, threads)
    state_dir, log, timing, save_log = run.state_dir, run.log, run.timing, run.save_log

    t0 = time.time()
    if (out / "vae" / "config.json").is_file():
        vae = AutoencoderKL.from_pretrained(str(out / "vae")).to(dev).eval()
    else:
        vae = _train_vae(cfg, out, log, dev)
        timing["vae_s"] = time.time() - t0
        save_log()
    tok = save_word_tokenizer(out / "tokenizer")
    lat_file = state_dir / "latents.safetensors"
    if not lat_file.is_file():
        t1 = time.time()
        _encode_clips(cfg, vae, lat_file)
        timing["encode_s"] = time.time() - t1
        save_log()
    from safetensors import safe_open

    files = [lat_file]
    if cfg.wander_clips:
        files.append(state_dir / "wander.safetensors")
        if not files[-1].is_file():
            t1 = time.time()
            _encode_clips(cfg, vae, files[-1], wander=True)
            timing["encode_wander_s"] = time.time() - t1
            save_log()
    loaded = [load_file(str(f)) for f in files]
    data = torch.cat([d["latents"] for d in loaded])
    data_reversed = torch.cat([d["reversed"] for d in loaded]) if cfg.redraw_reversed else None
    meta = []
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            meta += json.loads(handle.metadata()["meta"])

    torch.manual_seed(cfg.seed + 2)
    unet = build_unet(cfg).to(dev).train()  # built on the CPU: the same initial weights on any device
    text = build_text_encoder(cfg, len(tok)).to(dev).train()
    scheduler = DDIMScheduler(**{**SCHEDULER_CONFIG, "prediction_type": cfg.prediction_type})
    alphas = scheduler.alphas_cumprod.float()
    params = {f"unet.{k}": p for k, p in unet.named_parameters()} | {f"text.{k}": p for k, p in text.named_parameters()}
    opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(cfg.seed + 3)

    def loss_at() -> torch.Tensor:
        idx = torch.randint(len(data), (cfg.batch,), generator=gen)
        rev = torch.rand(cfg.batch, generator=gen) < 0.5
        x0 = data[idx].clone()
        if data_reversed is None:
            x0[rev] = x0[rev].flip(2)
        else:  # the tail must point the other way: the re-rendered reversal
            x0[rev] = data_reversed[idx[rev]]
        captions = [_caption(*meta[i], bool(r), gen, cfg) for i, r in zip(idx.tolist(), rev.tolist())]
        ids = tok(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        n_t = scheduler.config.num_train_timesteps
        t = torch.randint(0, n_t, (cfg.batch,), generator=gen)
        if cfg.high_noise_share > 0:
            high = torch.rand(cfg.batch, generator=gen) < cfg.high_noise_share
            t = torch.where(high, torch.randint(int(n_t * 0.8), n_t, (cfg.batch,), generator=gen), t)
        noise = torch.randn(x0.shape, generator=gen)
        x0, noise, a = x0.to(dev), noise.to(dev), alphas[t].view(-1, 1, 1, 1, 1).to(dev)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = unet(xt, t.to(dev), text(ids.to(dev))[0]).sample
        target = a.sqrt() * noise - (1 - a).sqrt() * x0 if cfg.prediction_type == "v_prediction" else noise
        return F.mse_loss(pred, target)

    optimise(run, params, opt, gen, total=cfg.unet_steps, checkpoint_every=cfg.checkpoint_every, stage="unet",
             desc="toy UNet + text", key=cfg.key(), lr_at=lambda s: scheduled_lr(s, cfg.lr, cfg.warmup, cfg.unet_steps),
             loss_at=loss_at)
    if cfg.decoder_steps and not (state_dir / "decoder.done").is_file():
        t1 = time.time()
        refine_decoder(vae, out, log, steps=cfg.decoder_steps, lr=cfg.vae_lr, seed=cfg.seed + 44,
                       batch=lambda rng: _frame_batch(cfg, rng), decode=lambda z: vae.decode(z).sample)
        timing["decoder_s"] = time.time() - t1
        (state_dir / "decoder.done").write_text(str(cfg.decoder_steps))
        save_log()
    unet.eval().to("cpu")
    text.eval().to("cpu")
    write_model_files(out, unet, text, scheduler, cfg=dataclasses.asdict(cfg), log=log, timing=timing,
                      threads=torch.get_num_threads(), device=str(dev))
    return out


__all__ = ["ToyConfig", "train_toy_model", "training_device", "save_on_cpu", "open_run", "scheduled_lr", "optimise", "refine_decoder", "Run", "build_unet", "build_vae", "build_text_encoder", "MODEL_KIND"]
