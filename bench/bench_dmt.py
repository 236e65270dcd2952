#!/usr/bin/env python
"""Speed and memory of the dmt motion transfer on a random-weight ZeroScope (no download).

Builds ZeroScope v2 576w's UNet, VAE and text encoder from their real configurations with random
weights (`dmt.models.random_model.build_random_components`; timing needs no trained weights) and
measures, on the device given:

  unet_fwd_b1 / unet_fwd_b2     one full UNet forward at batch 1 (inversion) and 2 (CFG)
  inversion_step                one DDIM inversion step (from a real invert_latents run);
                                totals for 50 and 999 steps measured or extrapolated (the table says which)
  targets                       target extraction (20 truncated forwards) and per guided timestep
  guided_step                   one guided step: N Adam iterations (truncated fwd + bwd); per iteration
  denoise_step / _restart       one CFG denoise step, and one with restart (re-noise + denoise again)
  encode / decode               VAE encode / decode of the clip (1 frame per call)
  whole_edit                    dmt.transfer end to end (authors' defaults unless told otherwise)
  floor                         the UNet-work floor of that edit: its counted UNet passes
                                (dmt.transfer.presets.unet_work) × the per-pass costs measured above,
                                in the same process; overhead % = edit time / floor − 1
  presets                       estimated time of the "authors" and "fast" presets (an estimate:
                                counts × measured per-op costs)

Timing: warm-up call(s) first (excluded), medians over --repeats; CUDA events + synchronize on a
GPU. Memory: torch.cuda.max_memory_allocated per measurement on a GPU; on the CPU the process's
peak RSS (getrusage, monotonic over the run) and current RSS (/proc/self/statm) after each.

Quick CPU run (about a minute on 2 idle cores; tiny widths, same block structure, 4 frames 64x64,
whole edit with the authors' sampler settings but 50 inversion steps):
    python bench/bench_dmt.py --device cpu --size tiny --json bench/cpu_tiny.json
GPU run at ZeroScope's real size (see bench/README.md for the whole list):
    python bench/bench_dmt.py --device cuda --dtype float16 --size full --frames 24 \
        --width 576 --height 320 --repeats 5 --json bench/gpu_fp16.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import dmt  # noqa: E402
from dmt.transfer.inversion import Inversion, invert_latents  # noqa: E402
from dmt.models.latents import decode_latents, encode_frames  # noqa: E402
from dmt.models.memory import gradient_checkpointing  # noqa: E402
from dmt.transfer.presets import forward_equivalents, preset_work, unet_work  # noqa: E402
from dmt.models.random_model import build_random_components, save_byte_tokenizer  # noqa: E402
from dmt.transfer.sampler import GuidanceSettings, denoise_step, optimize_latent  # noqa: E402
from dmt.transfer.ddim import renoise  # noqa: E402
from dmt.transfer.schedule import make_schedule, previous_timestep  # noqa: E402
from dmt.models.text import encode_prompt  # noqa: E402
from dmt.transfer.features import FEATURE_PATHS  # noqa: E402
from dmt.models.unet import frozen, predict_noise  # noqa: E402

GB = 1024**3


# ---------------------------------------------------------------------------- measuring


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def peak_rss_bytes() -> int:
    """Peak RSS of this process so far (getrusage: kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class Timer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def measure(self, fn, repeats: int, warmup: int = 1) -> dict:
        """Median wall time of fn() over `repeats` calls after `warmup` calls, and peak memory."""
        for _ in range(warmup):
            fn()
        self.sync()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
        times, cpu_times = [], []
        for _ in range(repeats):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000.0)
            else:
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                times.append(time.perf_counter() - t0)
                cpu_times.append(time.process_time() - c0)
        out = dict(median_s=statistics.median(times), min_s=min(times), times_s=times, repeats=repeats, warmup=warmup)
        if cpu_times:  # process CPU time: with 1 thread, robust to other jobs on a shared machine
            out["median_cpu_s"] = statistics.median(cpu_times)
        if self.cuda:
            out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated(self.device)
            out["cuda_bytes_before"] = base
        out["rss_bytes"] = rss_bytes()
        out["peak_rss_bytes"] = peak_rss_bytes()
        return out


# ---------------------------------------------------------------------------- bare UNet work


class _Stop(Exception):
    pass


@contextlib.contextmanager
def bare_truncated(unet: torch.nn.Module, paths: tuple[str, ...]):
    """A minimal truncated forward with no dmt code: plain forward hooks registered once, the
    last one raising to stop the forward. Yields run(x, t, text) → {path: activation}."""
    store: dict = {}

    def make(name: str, last: bool):
        def hook(_m, _i, out):
            store[name] = out[0] if isinstance(out, tuple) else out
            if last:
                raise _Stop

        return hook

    handles = [unet.get_submodule(p).register_forward_hook(make(p, i == len(paths) - 1)) for i, p in enumerate(paths)]

    def run(x, t, text):
        try:
            unet(x, t, encoder_hidden_states=text, return_dict=False)
        except _Stop:
            pass
        return store

    try:
        yield run
    finally:
        for h in handles:
            h.remove()


def autocast_ctx(device: torch.device, dtype: torch.dtype):
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


# ---------------------------------------------------------------------------- model


def build_model(size: str, dtype: torch.dtype, device: torch.device, tmp: Path) -> dmt.ZeroScope:
    tok = save_byte_tokenizer(tmp / "tokenizer")
    parts = build_random_components(size, seed=0, vocab_size=len(tok))
    with torch.inference_mode(False):
        for name in ("unet", "vae", "text_encoder"):
            parts[name].to(device)
            if dtype != torch.float32:
                parts[name].to(dtype)
    return dmt.ZeroScope(unet=parts["unet"], vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=tok,
                         scheduler=parts["scheduler"], name=f"random-{size}", fingerprint="")


def apply_speed_options(model: dmt.ZeroScope, args) -> list[str]:
    """--channels-last / --compile / --attention; returns what was applied."""
    applied = []
    unet = model.unet
    if args.channels_last:
        with torch.inference_mode(False):
            for m in unet.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.to(memory_format=torch.channels_last)
        applied.append("channels_last (Conv2d weights)")
    if args.attention == "classic":
        from diffusers.models.attention_processor import AttnProcessor

        unet.set_attn_processor(AttnProcessor())
        applied.append("attention: classic (non-SDPA) processor")
    if args.compile:
        # Compile the blocks, not the whole UNet: the feature hooks of up_blocks[1] raise to stop
        # the truncated forward, so that block stays eager.
        blocks = [unet.transformer_in, *unet.down_blocks, unet.mid_block, unet.up_blocks[0], *unet.up_blocks[2:]]
        for b in blocks:
            b.compile(mode=args.compile_mode, dynamic=False)
        applied.append(f"torch.compile(mode={args.compile_mode}) on every UNet block but up_blocks[1]")
    return applied


def sdpa_context(args):
    if args.sdpa_backend == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "math": SDPBackend.MATH, "cudnn": SDPBackend.CUDNN_ATTENTION}[args.sdpa_backend]
    return sdpa_kernel(backend)


# ---------------------------------------------------------------------------- benchmark


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = dmt.models.zeroscope.resolve_dtype(args.dtype or ("float16" if device.type == "cuda" else "float32"))
    timer = Timer(device)
    R = args.repeats
    res: dict = {}
    notes: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="dmt-bench-"))

    t0 = time.perf_counter()
    model = build_model(args.size, dtype, device, tmp)
    res["build_s"] = time.perf_counter() - t0
    applied = apply_speed_options(model, args)
    n_params = {k: sum(p.numel() for p in getattr(model, k).parameters()) for k in ("unet", "vae", "text_encoder")}
    F, H, W = args.frames, args.height, args.width
    h, w = H // 8, W // 8
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, F, h, w, generator=gen).to(device)
    text = encode_prompt(model, "Amazing quality, masterpiece, a dog jumping")
    text_cfg = torch.cat([encode_prompt(model, "a cat jumping"), encode_prompt(model, dmt.DEFAULT_NEGATIVE_PROMPT)])
    schedule = make_schedule(model.scheduler, 50, (0.6, 1.0))
    t_guided = schedule.guided[0]
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if not args.quiet else (lambda *a: None)
    ev = dmt.models.grad_modes.evaluation

    with sdpa_context(args):
        # --- UNet forwards
        say("unet forward batch 1 …")
        with ev():
            res["unet_fwd_b1"] = timer.measure(lambda: predict_noise(model, x, 500, text), R)
            say("unet forward batch 2 …")
            x2 = torch.cat([x, x])
            res["unet_fwd_b2"] = timer.measure(lambda: predict_noise(model, x2, 500, text_cfg), R)
            # The floor's units: bare diffusers calls, no dmt code at all.
            say("bare UNet calls (floor) …")

            def bare_fwd(z, tx):
                with autocast_ctx(device, dtype):
                    return model.unet(z, 500, encoder_hidden_states=tx, return_dict=False)[0]

            res["bare_fwd_b1"] = timer.measure(lambda: bare_fwd(x, text), R)
            res["bare_fwd_b2"] = timer.measure(lambda: bare_fwd(x2, text_cfg), R)
            with bare_truncated(model.unet, FEATURE_PATHS) as trunc:
                def bare_trunc():
                    with autocast_ctx(device, dtype):
                        trunc(x, t_guided, text)

                res["bare_truncated"] = timer.measure(bare_trunc, R)
        with torch.inference_mode(False), frozen(model.unet), torch.enable_grad(), \
                gradient_checkpointing(model.unet, args.low_memory), bare_truncated(model.unet, FEATURE_PATHS) as trunc:
            xg = x.detach().clone().requires_grad_(True)

            def bare_guided():
                with autocast_ctx(device, dtype):
                    feats = trunc(xg, t_guided, text)
                loss = sum(v.float().mean() for v in feats.values())
                loss.backward()
                feats.clear()
                xg.grad = None

            res["bare_guided_iteration"] = timer.measure(bare_guided, R)

        # --- inversion (a real invert_latents run; per step = total / steps)
        n_inv = args.inversion_probe_steps or (50 if device.type == "cuda" else 5)
        say(f"inversion ({n_inv} steps) …")
        m = timer.measure(lambda: invert_latents(model, x, "a dog", n_inv, 50), max(1, R // 2 if n_inv >= 50 else R))
        per = m["median_s"] / n_inv
        res["inversion_probe"] = dict(m, steps=n_inv)
        res["inversion_step"] = dict(median_s=per, from_steps=n_inv, **{k: m[k] for k in m if "bytes" in k})
        res["inversion_50"] = dict(median_s=m["median_s"] if n_inv == 50 else per * 50,
                                   extrapolated=n_inv != 50)
        res["inversion_999"] = dict(median_s=per * 999, extrapolated=True)
        if args.measure_999:
            say("inversion (999 steps) …")
            m999 = timer.measure(lambda: invert_latents(model, x, "a dog", 999, 50), 1, warmup=0)
            res["inversion_999"] = dict(m999, extrapolated=False)

        # --- targets: a synthetic inversion carrying a latent at every guided timestep
        inv = Inversion(x0=x.float(), latents={t: x.float().clone() for t in schedule.timesteps} | {999: x.float()},
                        noisiest_t=999, source_prompt="a dog", num_inversion_steps=999, num_sampling_steps=50,
                        scheduler_config=dict(model.scheduler.config), model_fingerprint="")
        say("target extraction …")
        m = timer.measure(lambda: dmt.extract_targets(model, inv), R)
        res["targets"] = dict(m, per_timestep_s=m["median_s"] / len(schedule.guided), timesteps=len(schedule.guided))
        targets = dmt.extract_targets(model, inv)

        # --- guided step: N Adam iterations of truncated forward + backward
        iters = args.guided_iterations
        lr = GuidanceSettings().learning_rates(len(schedule.guided))[0]

        def guided():
            with torch.inference_mode(False), frozen(model.unet), torch.enable_grad(), \
                    gradient_checkpointing(model.unet, args.low_memory):
                optimize_latent(model, x, t_guided, text, targets.smms[t_guided], iters, lr)

        say(f"guided step ({iters} iterations) …")
        m = timer.measure(guided, max(1, R if iters <= 2 else R // 2 or 1))
        res["guided_step"] = dict(m, iterations=iters, per_iteration_s=m["median_s"] / iters,
                                  gradient_checkpointing=args.low_memory)

        # --- denoise step, with and without restart
        t_prev = previous_timestep(model.scheduler, t_guided, 50)
        rgen = torch.Generator(device=device).manual_seed(0)
        say("denoise step …")
        res["denoise_step"] = timer.measure(lambda: denoise_step(model, x, t_guided, t_prev, text_cfg, 10.0), R)

        def restart_step():
            y = denoise_step(model, x, t_guided, t_prev, text_cfg, 10.0)
            y = renoise(model.scheduler, y, t_prev, 50, rgen)
            return denoise_step(model, y, t_guided, t_prev, text_cfg, 10.0)

        say("denoise step with restart …")
        res["denoise_step_restart"] = timer.measure(restart_step, R)

        # --- VAE
        frames = torch.rand(F, H, W, 3, generator=gen)
        say("VAE encode / decode …")
        res["encode"] = timer.measure(lambda: encode_frames(model, frames, 1), R)
        res["decode"] = timer.measure(lambda: decode_latents(model, x, 1), R)
        res["text_encode"] = timer.measure(lambda: encode_prompt(model, "a cat jumping"), R)

        # --- whole edit
        edit = None
        if not args.no_edit:
            n_inv_edit = args.edit_inversion_steps
            settings = dmt.preset_kwargs(args.preset)["settings"]
            say(f"whole edit (preset {args.preset}, inversion {n_inv_edit} steps) …")
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            t0, c0 = time.perf_counter(), time.process_time()
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            out = dmt.transfer(model, frames, "a dog jumping", "a cat jumping", num_inversion_steps=n_inv_edit,
                               settings=settings, low_memory=args.low_memory)
            if device.type == "cuda":
                end.record()
                end.synchronize()
                edit_s = start.elapsed_time(end) / 1000.0
            else:
                edit_s = time.perf_counter() - t0
            edit_cpu_s = time.process_time() - c0
            assert out.frames.shape == (F, H, W, 3)
            edit = dict(seconds=edit_s, inversion_steps=n_inv_edit, low_memory=args.low_memory, preset=args.preset,
                        restart_sampling=settings.restart_sampling,
                        runs=1, peak_rss_bytes=peak_rss_bytes(), rss_bytes=rss_bytes())
            if device.type == "cpu":
                edit["cpu_seconds"] = edit_cpu_s
            if device.type == "cuda":
                edit["peak_cuda_bytes"] = torch.cuda.max_memory_allocated(device)
            res["whole_edit"] = edit
            # The plain forwards again, right after the edit (the floor uses both timings).
            with ev():
                res["bare_fwd_b1_after"] = timer.measure(lambda: bare_fwd(x, text), R)
                res["bare_fwd_b2_after"] = timer.measure(lambda: bare_fwd(x2, text_cfg), R)

    # ---------------------------------------------------------------- UNet-work floor
    fwd = res["unet_fwd_b1"]["median_s"]
    costs = dict(
        inversion=res["inversion_step"]["median_s"] / fwd,
        targets=res["targets"]["per_timestep_s"] / fwd,
        guided_iterations=res["guided_step"]["per_iteration_s"] / fwd,
        denoise=res["denoise_step"]["median_s"] / fwd,
        restart=(res["denoise_step_restart"]["median_s"] - res["denoise_step"]["median_s"]) / fwd,
    )
    res["cost_in_forwards"] = costs
    res["unet_fwd_b2_in_forwards"] = res["unet_fwd_b2"]["median_s"] / fwd
    if edit is not None:
        work = unet_work(edit["inversion_steps"], restart_sampling=edit["restart_sampling"])
        # Floor: every counted UNet pass at its bare cost (plain diffusers calls with no dmt code:
        # full forward at batch 1 / 2, truncated forward, truncated forward + backward of a trivial
        # loss), timed in this process. The forwards are timed before and after the edit and the
        # lower median is used (a shared machine only ever adds time).
        def floor_of(key: str) -> float:
            b1 = min(res["bare_fwd_b1"][key], res["bare_fwd_b1_after"][key])
            b2 = min(res["bare_fwd_b2"][key], res["bare_fwd_b2_after"][key])
            unit = dict(inversion=b1, targets=res["bare_truncated"][key],
                        guided_iterations=res["bare_guided_iteration"][key], denoise=b2, restart=b2)
            return sum(n * unit[k] for k, n in work.items())

        vae_s = res["encode"]["median_s"] + res["decode"]["median_s"]
        floor_s = floor_of("median_s")
        res["floor"] = dict(work=work, floor_s=floor_s, edit_s=edit["seconds"],
                            overhead_pct=100 * (edit["seconds"] / floor_s - 1),
                            vae_s=vae_s, overhead_excl_vae_pct=100 * ((edit["seconds"] - vae_s) / floor_s - 1))
        if "cpu_seconds" in edit:
            floor_cpu = floor_of("median_cpu_s")
            vae_cpu = res["encode"]["median_cpu_s"] + res["decode"]["median_cpu_s"]
            res["floor"].update(floor_cpu_s=floor_cpu, edit_cpu_s=edit["cpu_seconds"],
                                overhead_cpu_pct=100 * (edit["cpu_seconds"] / floor_cpu - 1),
                                vae_cpu_s=vae_cpu,
                                overhead_cpu_excl_vae_pct=100 * ((edit["cpu_seconds"] - vae_cpu) / floor_cpu - 1))

    # ---------------------------------------------------------------- presets (estimate)
    est = {}
    for name in ("authors", "fast"):
        work = preset_work(name)
        fe = forward_equivalents(work, costs)
        est[name] = dict(work=work, forward_equivalents=fe, estimated_s=fe * fwd + res["encode"]["median_s"]
                         + res["decode"]["median_s"])
    est["fast_speedup_estimate"] = est["authors"]["estimated_s"] / est["fast"]["estimated_s"]
    res["presets_estimate"] = est

    meta = dict(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        device_type=device.type, dtype=str(dtype).replace("torch.", ""), size=args.size, frames=F, width=W,
        height=H, repeats=R, threads=torch.get_num_threads(), torch=torch.__version__,
        diffusers=__import__("diffusers").__version__, python=platform.python_version(), params=n_params,
        low_memory=args.low_memory, speed_options=applied, sdpa_backend=args.sdpa_backend,
        attention=args.attention, notes=notes, preset=args.preset,
        date=__import__("datetime").datetime.now(__import__("datetime").timezone.utc).isoformat(timespec="seconds"),
        load_average=os.getloadavg(), command=" ".join(sys.argv),
    )
    return dict(meta=meta, results=res)


# ---------------------------------------------------------------------------- report


def fmt_s(s: float) -> str:
    if s >= 100:
        return f"{s:8.0f} s"
    if s >= 1:
        return f"{s:8.2f} s"
    return f"{s * 1000:8.1f} ms"


def fmt_b(b: int | None) -> str:
    return "" if not b else f"{b / GB:.2f} GiB"


def table(report: dict) -> str:
    meta, r = report["meta"], report["results"]
    cuda = meta["device_type"] == "cuda"
    mem_key = "peak_cuda_bytes" if cuda else "peak_rss_bytes"
    mem_name = "peak GPU alloc" if cuda else "peak RSS (process, so far)"
    rows = [("operation", "median", mem_name, "note")]

    def row(name, key, sub=None, note=""):
        d = r.get(key)
        if d is None:
            return
        s = d[sub] if sub else d["median_s"]
        rows.append((name, fmt_s(s), fmt_b(d.get(mem_key)), note))

    row("UNet forward, batch 1", "unet_fwd_b1")
    row("UNet forward, batch 2 (CFG)", "unet_fwd_b2", note=f"{r['unet_fwd_b2_in_forwards']:.2f}× batch 1")
    row("inversion, per step", "inversion_step", note=f"from a {r['inversion_step']['from_steps']}-step run")
    row("inversion, 50 steps", "inversion_50", note="extrapolated" if r["inversion_50"]["extrapolated"] else "measured")
    row("inversion, 999 steps", "inversion_999",
        note="extrapolated from per step" if r["inversion_999"]["extrapolated"] else "measured once")
    row("target extraction (20 t)", "targets", note=f"{fmt_s(r['targets']['per_timestep_s']).strip()} per t")
    g = r["guided_step"]
    row(f"guided step ({g['iterations']} Adam its)", "guided_step",
        note=f"{fmt_s(g['per_iteration_s']).strip()}/it = {r['cost_in_forwards']['guided_iterations']:.2f} fwd"
             + (", checkpointed" if g["gradient_checkpointing"] else ""))
    row("denoise step (CFG)", "denoise_step")
    row("denoise step + restart", "denoise_step_restart")
    row("VAE encode (all frames)", "encode")
    row("VAE decode (all frames)", "decode")
    row("text encode (1 prompt)", "text_encode")
    row("bare forward, batch 1", "bare_fwd_b1", note="floor unit: plain unet() call")
    row("bare forward, batch 2", "bare_fwd_b2", note="floor unit")
    row("bare truncated forward", "bare_truncated", note="floor unit (hooks, no grad)")
    row("bare truncated fwd + bwd", "bare_guided_iteration", note="floor unit (trivial loss, no Adam)")
    if "whole_edit" in r:
        e = r["whole_edit"]
        rows.append((f"whole edit (inv {e['inversion_steps']}, 1 run)", fmt_s(e["seconds"]), fmt_b(e.get(mem_key)),
                     f"preset {e.get('preset', 'authors')}" + (", low memory" if e["low_memory"] else "")))
    widths = [max(len(str(x[i])) for x in rows) for i in range(4)]
    lines = [f"device: {meta['device']} ({meta['device_type']}), dtype {meta['dtype']}, size {meta['size']}, "
             f"{meta['frames']} frames {meta['width']}x{meta['height']}, repeats {meta['repeats']}, "
             f"threads {meta['threads']}, torch {meta['torch']}, diffusers {meta['diffusers']}"]
    if meta["speed_options"]:
        lines.append("speed options: " + "; ".join(meta["speed_options"]))
    for i, x in enumerate(rows):
        lines.append("  ".join(str(v).ljust(widths[j]) for j, v in enumerate(x)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * wd for wd in widths))
    if "floor" in r:
        f = r["floor"]
        w = f["work"]
        lines.append("")
        lines.append(f"UNet work of the edit: {w['inversion']} inversion fwd + {w['targets']} truncated target fwd + "
                     f"{w['guided_iterations']} guided its (truncated fwd + bwd) + {w['denoise']} denoise + "
                     f"{w['restart']} restart passes (batch 2)")
        lines.append(f"UNet-work floor {fmt_s(f['floor_s']).strip()}; edit {fmt_s(f['edit_s']).strip()}; "
                     f"overhead {f['overhead_pct']:+.1f} % ({f['overhead_excl_vae_pct']:+.1f} % without VAE "
                     f"encode/decode {fmt_s(f['vae_s']).strip()})  [wall time]")
        if "floor_cpu_s" in f:
            lines.append(f"UNet-work floor {fmt_s(f['floor_cpu_s']).strip()}; edit {fmt_s(f['edit_cpu_s']).strip()}; "
                         f"overhead {f['overhead_cpu_pct']:+.1f} % ({f['overhead_cpu_excl_vae_pct']:+.1f} % without "
                         f"VAE)  [process CPU time]")
    c = r["cost_in_forwards"]
    lines.append("per-op cost in batch-1 forwards: " + ", ".join(f"{k} {v:.2f}" for k, v in c.items()))
    p = r["presets_estimate"]
    lines.append(f"presets (ESTIMATE: counts × measured per-op costs): authors {fmt_s(p['authors']['estimated_s']).strip()}, "
                 f"fast {fmt_s(p['fast']['estimated_s']).strip()} → fast ≈ {p['fast_speedup_estimate']:.1f}× faster")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="float16 | bfloat16 | float32 (default: float16 on cuda, float32 on cpu)")
    ap.add_argument("--size", choices=("full", "tiny"), default=None,
                    help="model widths: full (ZeroScope's config) or tiny (default on cpu)")
    ap.add_argument("--frames", type=int, default=None, help="default 24 (full) / 4 (tiny)")
    ap.add_argument("--width", type=int, default=None, help="default 576 (full) / 64 (tiny)")
    ap.add_argument("--height", type=int, default=None, help="default 320 (full) / 64 (tiny)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per operation (default 5 cuda, 3 cpu)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default 1 on cpu: a busy 2-core machine oversubscribes otherwise)")
    ap.add_argument("--inversion-probe-steps", type=int, default=None,
                    help="inversion steps actually run to time a step (default 50 cuda, 5 cpu)")
    ap.add_argument("--measure-999", action="store_true", help="also run a real 999-step inversion once")
    ap.add_argument("--guided-iterations", type=int, default=10, help="Adam iterations of the timed guided step")
    ap.add_argument("--edit-inversion-steps", type=int, default=None,
                    help="inversion steps of the whole edit (default 999 = authors' on cuda, 50 on cpu; "
                         "must be valid for 50 sampling steps: 50, 100, 200, 250, 500, 999)")
    ap.add_argument("--preset", choices=("authors", "fast"), default="authors",
                    help="settings of the whole edit (dmt.transfer.presets); its inversion steps on cuda")
    ap.add_argument("--no-edit", action="store_true", help="skip the whole edit (and the floor comparison)")
    ap.add_argument("--low-memory", action="store_true",
                    help="checkpointed guided step; whole edit with transfer(low_memory=True)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet blocks (not up_blocks[1])")
    ap.add_argument("--compile-mode", default="default", help="default | reduce-overhead (CUDA graphs) | max-autotune")
    ap.add_argument("--channels-last", action="store_true", help="channels_last Conv2d weights")
    ap.add_argument("--sdpa-backend", choices=("auto", "flash", "efficient", "math", "cudnn"), default="auto")
    ap.add_argument("--attention", choices=("sdpa", "classic"), default="sdpa",
                    help="diffusers' SDPA processor (default) or the classic one, for comparison")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    full = (args.size or ("full" if args.device.startswith("cuda") else "tiny")) == "full"
    args.size = "full" if full else "tiny"
    args.frames = args.frames or (24 if full else 4)
    args.width = args.width or (576 if full else 64)
    args.height = args.height or (320 if full else 64)
    if args.edit_inversion_steps is None:
        args.edit_inversion_steps = (dmt.get_preset(args.preset).num_inversion_steps
                                     if args.device.startswith("cuda") else 50)
    if args.threads is None and args.device == "cpu":
        args.threads = 1
    args.repeats = args.repeats or 5
    if args.device == "cpu" and full and not args.no_edit:
        print("note: a whole edit at full size on the CPU takes hours; add --no-edit", file=sys.stderr)
    report = run(args)
    print(table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
