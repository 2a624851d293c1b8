"""Tests of ClipPredictor: clips of several videos in batches carry each video's state.

They give exactly what one StreamingPredictor streaming the video whole gives, wherever the
clips fall.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flashdepth.inference.clip_predictor import ClipPredictor, ambient_dtype
from flashdepth.inference.predictor import StreamingPredictor
from tests.cli_overrides import tiny_preset

FRAMES, SIDE = 6, 28


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    model = tiny_preset("flashdepth-s-gru")
    nn.init.normal_(model.temporal_out[1].weight, std=0.5)  # the carried state matters
    return model.eval()


@pytest.fixture(scope="module")
def videos() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {name: torch.rand(FRAMES, 3, SIDE, SIDE, generator=generator) for name in "ab"}


def whole(model: nn.Module, video: torch.Tensor) -> torch.Tensor:
    """``(T, h, w)`` depth of a video streamed frame by frame by one StreamingPredictor."""
    predictor = StreamingPredictor(model, resolution=None, output="input", float_input="display")
    frames = video.permute(0, 2, 3, 1).numpy()  # (T, 3, h, w) -> (T, h, w, 3)
    return torch.stack([torch.from_numpy(predictor.predict(frame)) for frame in frames])


def test_clips_in_any_batch_continue_their_video(model, videos) -> None:
    clips = ClipPredictor(model)
    a, b = videos["a"], videos["b"]
    # a[0:2] and b[0:2] side by side; a[2:4] and a[4:6] in one batch; b[2:6] after
    first = clips(torch.stack([a[0:2], b[0:2]]), ["a", "b"], [0, 0])
    second = clips(torch.stack([a[2:4], a[4:6]]), ["a", "a"], [2, 4])
    third = clips(b[None, 2:6], ["b"], [2])
    streamed_a = torch.cat([first[0], second[0], second[1]])
    streamed_b = torch.cat([first[1], third[0]])
    torch.testing.assert_close(streamed_a, whole(model, a), rtol=0, atol=0)
    torch.testing.assert_close(streamed_b, whole(model, b), rtol=0, atol=0)
    assert first.shape == (2, 2, SIDE, SIDE) and first.device.type == "cpu"


def test_a_gap_or_a_new_video_starts_fresh_and_padding_is_skipped(model, videos) -> None:
    clips = ClipPredictor(model)
    a = videos["a"]
    clips(a[None, 0:2], ["a"], [0])
    gap = clips(torch.stack([a[3:5], a[3:5]]), ["a", None], [3, 3])  # frame 2 missing
    torch.testing.assert_close(gap[0], whole(model, a[3:5]), rtol=0, atol=0)
    assert torch.count_nonzero(gap[1]) == 0  # padding: not run
    clips.reset()
    again = clips(a[None, 2:4], ["a"], [2])  # after reset nothing continues
    torch.testing.assert_close(again[0], whole(model, a[2:4]), rtol=0, atol=0)


def test_the_least_recently_used_stream_is_closed_beyond_the_limit(model, videos) -> None:
    clips = ClipPredictor(model, max_streams=1)
    a, b = videos["a"], videos["b"]
    clips(a[None, 0:2], ["a"], [0])
    clips(b[None, 0:2], ["b"], [0])  # closes the stream of a
    later = clips(a[None, 2:4], ["a"], [2])
    torch.testing.assert_close(later[0], whole(model, a[2:4]), rtol=0, atol=0)
    assert not torch.allclose(later[0], whole(model, a[0:4])[2:4], atol=1e-4)


def test_mismatched_keys_are_refused_and_autocast_is_followed(model, videos) -> None:
    with pytest.raises(ValueError, match="one of each per clip"):
        ClipPredictor(model)(videos["a"][None, 0:2], ["a", "b"], [0])
    with pytest.raises(ValueError, match="max_streams"):
        ClipPredictor(model, max_streams=0)
    cpu = torch.device("cpu")
    assert ambient_dtype(cpu) == "fp32"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ambient_dtype(cpu) == "bf16"
