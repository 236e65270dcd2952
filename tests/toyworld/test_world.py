"""The toy world: clips, captions, the held-out split, the pixel measures and the word tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmt.toyworld.measure import direction_of, track_object, trajectory_error, velocity_error
from dmt.toyworld.tokenizer import WORDS, save_word_tokenizer
from dmt.toyworld.world import (BACKGROUND, COLOURS, DIRECTIONS, HELD_OUT, MARGIN, SHAPES, TRAIL_GREY, VOCABULARY_MOTIONS,
                                WANDER, make_clip, random_vocabulary_clip, random_wander_clip, reversed_clip)


def test_clip_layout_and_caption():
    c = make_clip("left/quickly", "red", "ball", seed=3)
    assert c.frames.shape == (8, 64, 64, 3) and c.frames.dtype == torch.float32
    assert 0.0 <= float(c.frames.min()) and float(c.frames.max()) <= 1.0
    assert c.positions.shape == (8, 2)
    assert c.caption == "a red ball moving left quickly"
    dx = c.positions[-1, 0] - c.positions[0, 0]
    assert dx == pytest.approx(-0.5 * 64, abs=1e-3)  # quickly: half the frame


def test_same_seed_same_clip_other_seed_other_place():
    a, b = make_clip("circle", "blue", "square", seed=1), make_clip("circle", "blue", "square", seed=1)
    assert torch.equal(a.frames, b.frames)
    assert not torch.equal(a.positions, make_clip("circle", "blue", "square", seed=2).positions)


def test_held_out_motions_are_never_named_or_trained():
    rng = np.random.default_rng(0)
    captions = {random_vocabulary_clip(rng).caption for _ in range(200)}
    for name in HELD_OUT:
        assert name not in " ".join(captions)
        clip = make_clip(name, "green", "triangle", seed=0)
        assert clip.caption == "a green triangle"  # a held-out clip's caption names no motion
    assert all("/" in m for m in VOCABULARY_MOTIONS) and len(VOCABULARY_MOTIONS) == 8


def test_wander_clips_name_no_motion_and_stay_inside():
    rng = np.random.default_rng(3)
    for _ in range(50):
        clip = random_wander_clip(rng)
        assert clip.motion == WANDER and clip.caption == f"a {clip.colour} {clip.shape}"
        assert (clip.positions >= MARGIN * 64 - 1e-3).all() and (clip.positions <= (1 - MARGIN) * 64 + 1e-3).all()
    a, b = make_clip(WANDER, "red", "ball", seed=4), make_clip(WANDER, "red", "ball", seed=4)
    assert torch.equal(a.positions, b.positions)


def test_held_out_motions_are_not_among_the_training_wander_paths():
    """Wander clips as `toyworld train --wander-clips 1024` draws them (seed 0 + 23) cover straight
    motions but none of the held-out families: the nearest training path's velocity profile is at
    least 2 px/frame away from every held-out clip (measured: stop-and-go 2.4, the others
    4.8-10.8), while a vocabulary motion has one within about 2 px/frame."""
    rng = np.random.default_rng(23)
    train = np.stack([random_wander_clip(rng).positions.numpy() for _ in range(1024)])
    steps = np.diff(train, axis=1)

    def nearest(positions) -> float:
        d = np.diff(np.asarray(positions), axis=0)[None] - steps
        return float(np.linalg.norm(d, axis=2).mean(1).min())

    for name in HELD_OUT:
        for seed in range(3):
            assert nearest(make_clip(name, "red", "ball", seed=seed).positions) >= 2.0, (name, seed)
    assert np.median([nearest(make_clip(m, "red", "ball", seed=1).positions) for m in VOCABULARY_MOTIONS]) < 2.0


@pytest.mark.parametrize("motion", list(VOCABULARY_MOTIONS[::3]) + list(HELD_OUT))
@pytest.mark.parametrize("colour,shape", [("red", "ball"), ("blue", "square"), ("yellow", "triangle"),
                                          ("green", "ball")])
@pytest.mark.parametrize("world", [{}, {"trail": True}, {"clock": True}])
def test_measure_recovers_ground_truth(motion, colour, shape, world):
    """The measure finds the object, its colour and shape, with or without the tail or the clock."""
    c = make_clip(motion, colour, shape, seed=5, **world)
    tr = track_object(c.frames)
    assert tr.found.all()
    assert trajectory_error(tr.positions, c.positions.numpy()) < 0.6  # pixels
    assert tr.colour == colour and tr.shape == shape


def test_trail_points_against_the_motion_and_reverses_with_the_clip():
    """With trail=True each frame shows a grey tail on the side the object came from (so one frame
    tells the direction); a reversed clip is re-rendered, its tail on the other side, its caption
    naming the opposite direction; trail=False draws exactly the plain world."""
    plain = make_clip("left/quickly", "red", "ball", seed=2)
    c = make_clip("left/quickly", "red", "ball", seed=2, trail=True)
    assert torch.equal(plain.positions, c.positions)
    background = (plain.frames - torch.tensor(BACKGROUND)).abs().amax(-1) < 1e-6
    grey = ((c.frames - plain.frames).abs().amax(-1) > 0.05) & background  # (F, H, W): tail pixels
    assert grey.any(1).any(1).all()  # a tail in every frame
    for i in range(8):
        ys, xs = np.nonzero(grey[i].numpy())
        assert xs.mean() + 0.5 > float(c.positions[i, 0]) + 5  # behind a leftward object: on its right
        assert np.all(c.frames[i].numpy()[grey[i].numpy()].max(-1) <= TRAIL_GREY + 1e-6)
    r = reversed_clip(c, 64, 64)
    assert r.caption == "a red ball moving right quickly" and r.motion == "right/quickly"
    assert torch.equal(r.positions, c.positions.flip(0))
    assert not torch.equal(r.frames, c.frames.flip(0))  # tails re-drawn, not the frames flipped
    assert direction_of(track_object(r.frames).positions) == "right"
    assert torch.equal(reversed_clip(plain, 64, 64).frames, plain.frames.flip(0))
    still = make_clip("stopgo", "blue", "square", seed=1, trail=True)  # no tail where it stands still
    v = np.linalg.norm(np.gradient(still.positions.numpy(), axis=0), axis=1)
    plain_still = make_clip("stopgo", "blue", "square", seed=1)
    for i in np.nonzero(v < 0.3)[0]:
        assert torch.equal(still.frames[i], plain_still.frames[i])


def test_clock_grows_with_the_frame_also_played_backwards():
    """clock=True: a grey bar on the bottom row, (i + 1) / F of the width in frame i."""
    c = make_clip("right/slowly", "red", "ball", seed=2, clock=True)
    for clip in (c, reversed_clip(c, 64, 64)):
        bar = (clip.frames[:, -1] - torch.tensor(BACKGROUND)).abs().amax(-1) > 0.1  # (F, W)
        assert bar.sum(1).tolist() == [8 * (i + 1) for i in range(8)]


def test_direction_and_errors():
    for d in DIRECTIONS:
        c = make_clip(f"{d}/slowly", "red", "ball", seed=1)
        assert direction_of(track_object(c.frames).positions) == d
    a = np.array([[0, 0], [1, 0], [2, 0]], float)
    assert trajectory_error(a, a + [3, 4]) == pytest.approx(5.0)
    assert velocity_error(a, a + [3, 4]) == pytest.approx(0.0)  # the same motion elsewhere


def test_empty_frames_do_not_crash_the_measure():
    tr = track_object(torch.full((4, 32, 32, 3), 0.12))
    assert not tr.found.any() and tr.colour == "none" and np.isfinite(tr.positions).all()


def test_long_circle_and_refused_cycles():
    c = make_clip("circle", "red", "ball", num_frames=48, cycles=3, seed=0, canonical=True)
    steps = np.linalg.norm(np.diff(c.positions.numpy(), axis=0), axis=1)
    assert c.positions.shape == (48, 2) and steps.max() < 1.2 * steps.min()  # smooth, no jump
    with pytest.raises(ValueError, match="Only the circle"):
        make_clip("zigzag", "red", "ball", cycles=2)


def test_word_tokenizer_gives_one_token_per_word(tmp_path):
    tok = save_word_tokenizer(tmp_path / "tok")
    for w in WORDS:
        assert len(tok(w, add_special_tokens=False).input_ids) == 1, w
    ids = tok("Amazing quality, masterpiece, a red ball moving left quickly", add_special_tokens=False).input_ids
    assert len(ids) == 11  # 3 prefix words + 2 commas + 6 caption words
    assert len(tok("a purple hexagon", add_special_tokens=False).input_ids) > 3  # unknown words still encode
    assert set(COLOURS) | set(SHAPES) | set(DIRECTIONS) <= set(WORDS)
