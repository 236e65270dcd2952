"""Training the toy-world Wan 2.1 from scratch, resumably: the toy ZeroScope's world and recipe
(vocabulary motions only, caption dropout, motion words dropped, time reversal), Wan's classes.

Stages, each kept on disk so `--resume` goes on where a run stopped (Ctrl-C saves):
1. VAE (AutoencoderKLWan: causal 3D convolutions, 8x in space, the first frame then each 4 frames
   into one latent frame) on whole vocabulary clips of `num_frames` = 4k + 1 frames (and a
   `vae_wander` share of wander clips, none in the bundled recipe), as an
   autoencoder of the posterior mean (the library only ever encodes to the mean) with the decoder's
   output taken before its clamp: MSE + a small KL term; then `latents_mean` / `latents_std` are set per channel from the posterior
   means, so normalised latents (what the transformer sees, dmt.models.wan_ops) have unit spread.
   Written to OUT/vae/.
2. Normalised latents of `num_clips` vocabulary clips and of each clip played backwards (the VAE
   is causal, so a reversed clip is encoded again, not flipped in latent time), with captions:
   OUT/.train/latents.safetensors.
3. WanTransformer3DModel + UMT5 text encoder jointly, on Wan's rectified-flow objective exactly as
   motion customization trains Wan (dmt.models.interface.WanOps.noisy: σ = shift((k + 1) / T) for
   a uniform step k, x_t = (1 − σ)·x0 + σ·ε, target ε − x0), prompts embedded as WanPipeline
   embeds them (UMT5 with the attention mask, zero after the last token, `text_length` tokens).
   AdamW with warm-up and a final linear decay; state in OUT/.train/state.safetensors.
4. The VAE decoder alone, refined on the posterior mean (encoder frozen: the latent space the
   transformer learned is unchanged), as the toy ZeroScope's last stage.
The result is a diffusers folder of the hub repo's layout (transformer/, vae/, text_encoder/,
tokenizer/, scheduler/, model_index.json) that `load_wan` loads, plus toyworld.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import UMT5Config, UMT5EncoderModel

from ..customize.atomic import atomic_path
from ..errors import InputError
from ..models.interface import WanOps
from ..models.memory import module_device
from ..models.random_wan import WAN_MODEL_INDEX, WAN_SCHEDULER_CONFIG
from .card import WAN_DEFAULTS, WAN_MODEL_KIND, write_card
from .tokenizer import save_word_t5_tokenizer
from .train import (_caption, _progress, open_run, optimise, refine_decoder, save_on_cpu, scheduled_lr,
                    training_device)
from .world import random_vocabulary_clip, random_wander_clip, reversed_clip


@dataclass(frozen=True)
class WanToyConfig:
    """Everything that defines a toy Wan training run (its hash guards --resume; `steps` and
    `checkpoint_every` may change on resume)."""

    seed: int = 0
    size: int = 64
    #: 4k + 1 frames (Wan's VAE): 9 frames are 3 latent frames
    num_frames: int = 9
    vae_base: int = 16
    vae_mult: tuple[int, ...] = (1, 2, 2, 2)
    z_dim: int = 16
    #: AutoencoderKLWan learns these clips slowly (measured: about 3x the steps of the toy
    #: ZeroScope's AutoencoderKL for the same PSNR), so many small steps. It first sits near
    #: 20 dB with the objects lost in the background, and 1200 steps at 2e-3 (the recipe until
    #: 2026-12-06) left which colours it keeps apart to the draw; 2500 steps at 1e-3 with
    #: first-frame weight 4 keep all four apart and mend the first frame (card)
    vae_steps: int = 2500
    #: clips per VAE step
    vae_batch: int = 2
    vae_lr: float = 1e-3
    #: share of the VAE's training clips (and of the decoder refinement's) with a wander motion
    #: (a random walk, dmt.toyworld.world; no held-out motion), meant to let it encode any path.
    #: The bundled recipe has none: with 0.5 and 1600 steps, 2026-12-05, the VAE reached 24 dB
    #: (25 before, 24 after its decoder refinement, against 24 / 29 without) and its
    #: reconstructions' centroids were further off on every motion (held-out 4-14 px, vocabulary
    #: 1.7-3.6 px, against 1-8 px and 0.3-0.5 px): it learnt the wider data more slowly.
    vae_wander: float = 0.0
    #: weight of the first frame's reconstruction error against each later frame's (1: all
    #: frames alike, the recipe before 2026-12-06). Wan's VAE encodes the first frame alone into
    #: its own latent frame, so under a plain mean over 9 frames it gets 1/9 of the loss: trained
    #: that way the toy VAE washed its colour out (first-frame MSE 0.0172 against 0.0048 for the
    #: others; the object's colour 0.22 off). Applies to the VAE's training and to the decoder
    #: refinement alike. With 4 and the schedule above: 0.0065, colour 0.065 off (others 0.0041);
    #: with 8 and 1200 steps at 2e-3 that VAE merged red and yellow (card).
    vae_first_frame_weight: float = 4.0
    kl_weight: float = 1e-6
    num_clips: int = 2048
    heads: int = 4
    head_dim: int = 32
    #: smaller transformers, each trained on the same latents (2026-12-05), bound the direction
    #: words far less (G1 direction): 4 layers 68.8 %, 5 layers with FFN 128 70.8 %, 6 layers
    #: with FFN 64 72.9 %, against 97.9 % for these 6 layers with FFN 256 (1.4 M parameters; the
    #: first toy Wan)
    layers: int = 6
    ffn: int = 256
    text_width: int = 64
    text_layers: int = 2
    #: the bundled model: 16 000 steps, then resumed with 32 000 (the learning rate restarts at
    #: step 16 000; card). Its triangles' colours bind late: G1 colour 77 % after 8000 steps,
    #: 89.6 % after 16 000, 93.8 % after 32 000 (direction 96-100 % throughout)
    steps: int = 32000
    batch: int = 8
    lr: float = 5e-4
    warmup: int = 200
    caption_dropout: float = 0.1
    motion_word_dropout: float = 0.15
    checkpoint_every: int = 200
    #: last stage: the VAE decoder refined alone on the posterior mean (encoder frozen, so the
    #: transformer's latent space is unchanged), as the toy ZeroScope's
    decoder_steps: int = 1500
    #: the scheduler's flow shift (Wan2.1 at 480p: 3.0), used in training and sampling alike
    flow_shift: float = 3.0
    #: prompt length in tokens, as WanPipeline pads it (the library's Wan prompt encoding: 512)
    text_length: int = 512

    def key(self) -> str:
        d = dataclasses.asdict(self)
        for later in ("steps", "checkpoint_every", "decoder_steps"):
            d.pop(later)
        if d["vae_wander"] == 0:  # keys of runs from before the option stay valid
            d.pop("vae_wander")
        if d["vae_first_frame_weight"] == 1:
            d.pop("vae_first_frame_weight")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def build_wan_vae(cfg: WanToyConfig) -> AutoencoderKLWan:
    return AutoencoderKLWan(base_dim=cfg.vae_base, z_dim=cfg.z_dim, dim_mult=list(cfg.vae_mult), num_res_blocks=1,
                            attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0)


def build_wan_transformer(cfg: WanToyConfig) -> WanTransformer3DModel:
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=cfg.heads, attention_head_dim=cfg.head_dim,
                                 in_channels=cfg.z_dim, out_channels=cfg.z_dim, text_dim=cfg.text_width, freq_dim=256,
                                 ffn_dim=cfg.ffn, num_layers=cfg.layers, cross_attn_norm=True,
                                 qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=64)


def build_wan_text_encoder(cfg: WanToyConfig, vocab_size: int) -> UMT5EncoderModel:
    config = UMT5Config(vocab_size=vocab_size, d_model=cfg.text_width, d_kv=cfg.text_width // 4, d_ff=2 * cfg.text_width,
                        num_layers=cfg.text_layers, num_heads=4, relative_attention_num_buckets=8,
                        relative_attention_max_distance=32, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                        layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    config.architectures = ["UMT5EncoderModel"]
    return UMT5EncoderModel(config)


def _clips(cfg: WanToyConfig, rng: np.random.Generator, n: int, wander: float = 0.0) -> torch.Tensor:
    """(n, 3, F, H, W) in [-1, 1]: fresh clips, each a wander clip with probability `wander`, else
    a vocabulary clip."""
    frames = [(random_wander_clip if wander and rng.random() < wander else random_vocabulary_clip)(
        rng, cfg.num_frames, cfg.size, cfg.size).frames for _ in range(n)]
    return torch.stack(frames).permute(0, 4, 1, 2, 3) * 2 - 1


def decode_unclamped(vae: AutoencoderKLWan, z: torch.Tensor) -> torch.Tensor:
    """The decoder's output before AutoencoderKLWan.decode clamps it to [-1, 1] (B, 3, F, H, W):
    the decoder's outputs per latent frame, read with a forward hook and joined in time. Training
    through the clamp would stop every pixel that overshoots (at init, most of the dark background)."""
    chunks: list[torch.Tensor] = []
    hook = vae.decoder.register_forward_hook(lambda module, args, out: chunks.append(out))
    try:
        vae.decode(z)
    finally:
        hook.remove()
    return torch.cat(chunks, dim=2)


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor, first_frame_weight: float = 1.0) -> torch.Tensor:
    """Mean squared error of (B, 3, F, H, W) clips with the first frame's error weighted
    `first_frame_weight` times each later frame's (a weighted mean over frames, so the loss keeps
    the scale of an MSE); 1 is exactly `F.mse_loss`."""
    if first_frame_weight == 1:
        return F.mse_loss(recon, x)
    per_frame = (recon - x).pow(2).mean(dim=(0, 1, 3, 4))
    weights = torch.ones_like(per_frame)
    weights[0] = first_frame_weight
    return (per_frame * weights).sum() / weights.sum()


def _train_vae(cfg: WanToyConfig, out: Path, log: list, device: torch.device) -> AutoencoderKLWan:
    torch.manual_seed(cfg.seed)
    vae = build_wan_vae(cfg).to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    rng = np.random.default_rng(cfg.seed + 11)
    bar = _progress(cfg.vae_steps, 0, "toy Wan VAE")
    for step in range(cfg.vae_steps):
        x = _clips(cfg, rng, cfg.vae_batch, cfg.vae_wander).to(device)
        for g in opt.param_groups:
            g["lr"] = scheduled_lr(step, cfg.vae_lr, 20, cfg.vae_steps)
        post = vae.encode(x).latent_dist
        recon = decode_unclamped(vae, post.mode())
        mse = F.mse_loss(recon.detach(), x)
        loss = reconstruction_loss(recon, x, cfg.vae_first_frame_weight) + cfg.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-10))
        bar.set_postfix(psnr=f"{psnr:.1f}dB")
        bar.update()
        if step % 10 == 0 or step == cfg.vae_steps - 1:
            log.append({"stage": "vae", "step": step + 1, "mse": mse.item(), "psnr": psnr})
    bar.close()
    vae.eval()
    with torch.no_grad():  # per-channel normalisation of the latents (Wan's latents_mean / latents_std)
        z = vae.encode(_clips(cfg, rng, 32).to(device)).latent_dist.mean
    dims = (0, 2, 3, 4)
    vae.register_to_config(latents_mean=[float(v) for v in z.mean(dims)], latents_std=[float(v) for v in z.std(dims)])
    save_on_cpu(vae, out / "vae")
    return vae


def _encode_clips(cfg: WanToyConfig, vae: AutoencoderKLWan, path: Path) -> None:
    """Normalised latents (N, z_dim, F', h, w) of `num_clips` vocabulary clips ("latents") and of
    each played backwards ("reversed"), metadata [colour, shape, direction, speed]. Encoded on the
    VAE's device, stored on the CPU."""
    rng = np.random.default_rng(cfg.seed + 22)
    device = module_device(vae)
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(device)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(device)
    lat, back, meta = [], [], []
    bar = _progress(cfg.num_clips, 0, "encoding clips")

    def encode(frames: torch.Tensor) -> torch.Tensor:
        z = vae.encode((frames.permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1).to(device)).latent_dist.mean
        return ((z - mean) / std)[0].cpu()

    with torch.no_grad():
        for _ in range(cfg.num_clips):
            clip = random_vocabulary_clip(rng, cfg.num_frames, cfg.size, cfg.size)
            lat.append(encode(clip.frames))
            back.append(encode(reversed_clip(clip, cfg.size, cfg.size).frames))
            meta.append([clip.colour, clip.shape, *clip.motion.split("/")])
            bar.update()
    bar.close()
    with atomic_path(path) as tmp:
        save_file({"latents": torch.stack(lat), "reversed": torch.stack(back)}, str(tmp),
                  metadata={"meta": json.dumps(meta)})


def embed_captions(text: UMT5EncoderModel, tok, captions: list[str], length: int) -> torch.Tensor:
    """(B, length, D) as dmt.models.wan_ops.encode_prompt gives them (mask, zero after the last
    token), computed on the batch's longest caption only (the mask makes the rest zeros), on the
    text encoder's device."""
    enc = tok(captions, padding="longest", truncation=True, max_length=length, add_special_tokens=True,
              return_attention_mask=True, return_tensors="pt").to(module_device(text))
    hidden = text(enc.input_ids, enc.attention_mask).last_hidden_state
    hidden = hidden * enc.attention_mask.unsqueeze(-1).to(hidden.dtype)
    return F.pad(hidden, (0, 0, 0, length - hidden.shape[1]))


def train_toy_wan(out: str | Path, cfg: WanToyConfig = WanToyConfig(), resume: bool = False,
                  threads: int | None = None, device: str | torch.device | None = None) -> Path:
    """Train (or resume) the toy Wan into `out` on `device` (as `train_toy_model`); returns the
    folder. Raises InputError as `train_toy_model` does (a non-empty folder without resume,
    another configuration, a CUDA device this machine lacks)."""
    out = Path(out)
    if cfg.num_frames % 4 != 1:
        raise InputError(f"The toy Wan needs 4k + 1 frames (Wan's VAE); got {cfg.num_frames}.")
    dev = training_device(device)
    run = open_run(out, cfg.key(), dataclasses.asdict(cfg), resume, threads)
    state_dir, log, timing = run.state_dir, run.log, run.timing
    t0 = time.time()
    if (out / "vae" / "config.json").is_file():
        vae = AutoencoderKLWan.from_pretrained(str(out / "vae")).to(dev).eval()
    else:
        vae = _train_vae(cfg, out, log, dev)
        timing["vae_s"] = time.time() - t0
        run.save_log()
    tok = save_word_t5_tokenizer(out / "tokenizer", cfg.text_length)
    lat_file = state_dir / "latents.safetensors"
    if not lat_file.is_file():
        t1 = time.time()
        _encode_clips(cfg, vae, lat_file)
        timing["encode_s"] = time.time() - t1
        run.save_log()
    loaded = load_file(str(lat_file))
    data, data_reversed = loaded["latents"], loaded["reversed"]
    with safe_open(str(lat_file), framework="pt") as handle:
        meta = json.loads(handle.metadata()["meta"])

    torch.manual_seed(cfg.seed + 2)
    transformer = build_wan_transformer(cfg).to(dev).train()  # built on the CPU: the same weights on any device
    text = build_wan_text_encoder(cfg, len(tok)).to(dev).train()
    scheduler = UniPCMultistepScheduler(**{**WAN_SCHEDULER_CONFIG, "flow_shift": cfg.flow_shift})
    objective, holder = WanOps(), SimpleNamespace(scheduler=scheduler)
    params = ({f"transformer.{k}": p for k, p in transformer.named_parameters()}
              | {f"text.{k}": p for k, p in text.named_parameters()})
    opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    n_t = int(scheduler.config.num_train_timesteps)

    def loss_at() -> torch.Tensor:
        idx = torch.randint(len(data), (cfg.batch,), generator=gen)
        rev = torch.rand(cfg.batch, generator=gen) < 0.5
        x0 = torch.where(rev.view(-1, 1, 1, 1, 1), data_reversed[idx], data[idx])
        captions = [_caption(*meta[i], bool(r), gen, cfg, prefix_share=0.0) for i, r in zip(idx.tolist(), rev.tolist())]
        k = torch.randint(0, n_t, (cfg.batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        x_t, t_model, target = objective.noisy(holder, x0.to(dev), noise.to(dev), k.to(dev))
        pred = transformer(hidden_states=x_t, timestep=t_model,
                           encoder_hidden_states=embed_captions(text, tok, captions, cfg.text_length),
                           return_dict=False)[0]
        return F.mse_loss(pred, target)

    optimise(run, params, opt, gen, total=cfg.steps, checkpoint_every=cfg.checkpoint_every, stage="transformer",
             desc="toy Wan transformer + text", key=cfg.key(),
             lr_at=lambda s: scheduled_lr(s, cfg.lr, cfg.warmup, cfg.steps), loss_at=loss_at)
    if cfg.decoder_steps and not (state_dir / "decoder.done").is_file():
        t1 = time.time()
        refine_decoder(vae, out, log, steps=cfg.decoder_steps, lr=cfg.vae_lr, seed=cfg.seed + 44,
                       batch=lambda rng: _clips(cfg, rng, cfg.vae_batch, cfg.vae_wander), decode=lambda z: decode_unclamped(vae, z),
                       loss=lambda recon, x: reconstruction_loss(recon, x, cfg.vae_first_frame_weight))
        timing["decoder_s"] = time.time() - t1
        (state_dir / "decoder.done").write_text(str(cfg.decoder_steps))
        run.save_log()
    transformer.eval().to("cpu").save_pretrained(str(out / "transformer"))
    text.eval().to("cpu").save_pretrained(str(out / "text_encoder"))
    scheduler.save_pretrained(str(out / "scheduler"))
    (out / "model_index.json").write_text(json.dumps(WAN_MODEL_INDEX, indent=2))
    write_card(out, WAN_MODEL_KIND, WAN_DEFAULTS, cfg=dataclasses.asdict(cfg), log=log, timing=timing,
               threads=torch.get_num_threads(), loss_stage="transformer", device=str(dev))
    return out


__all__ = ["WanToyConfig", "train_toy_wan", "reconstruction_loss", "build_wan_vae", "build_wan_transformer", "build_wan_text_encoder",
           "embed_captions"]
