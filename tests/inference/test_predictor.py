"""Tests of StreamingPredictor: equal to the manual contract loop, state carried, sizes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flashdepth.inference.predictor import StreamingPredictor, linear_to_srgb, rgb_to_unit
from flashdepth.transforms import Preprocess, postprocess
from tests.cli_overrides import tiny_preset

HEIGHT, WIDTH = 40, 60  # network input at resolution 28: 28 x 42


@pytest.fixture(scope="module")
def temporal_model() -> torch.nn.Module:
    """A GRU FlashDepth (tiny test size) whose zero-initialised temporal output is randomised.

    The randomised output makes the carried state change the depth.
    """
    torch.manual_seed(0)
    model = tiny_preset("flashdepth-s-gru").eval()
    with torch.no_grad():
        model.temporal_out[1].weight.normal_(0.0, 3.0)
        model.temporal_out[1].bias.normal_(0.0, 3.0)
    return model


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    generator = np.random.default_rng(1)
    base = generator.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    shifts = [np.roll(base, 3 * t, axis=1) for t in range(3)]
    return shifts


def manual_stream(model: torch.nn.Module, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Preprocess -> model.step -> postprocess, state carried: what the predictor must do."""
    preprocess = Preprocess(28)
    state = model.init_state(1, "cpu", image_size=(28, 42))
    depths = []
    with torch.inference_mode():
        for rgb in frames:
            depth, state = model.step(preprocess(rgb), state)
            depths.append(postprocess(depth, (HEIGHT, WIDTH))[0].numpy())
    return depths


def test_predictor_equals_the_manual_loop_and_carries_state(temporal_model, frames):
    predictor = StreamingPredictor(temporal_model, resolution=28)
    streamed = [predictor.predict(rgb) for rgb in frames]
    expected = manual_stream(temporal_model, frames)
    for got, want in zip(streamed, expected, strict=True):
        assert got.dtype == np.float32 and got.shape == (HEIGHT, WIDTH)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # The third frame of a fresh video (state reset) differs from the third of the stream.
    predictor.reset()
    fresh = predictor.predict(frames[2])
    assert np.abs(fresh - streamed[2]).mean() > 1e-3  # 100x the tolerance above
    # reset() really starts over: the first two frames again give the stream's numbers.
    predictor.reset()
    np.testing.assert_allclose(predictor.predict(frames[0]), streamed[0], atol=1e-5, rtol=0)


def test_uint16_and_display_float_frames_match_uint8(temporal_model, frames):
    predictor = StreamingPredictor(temporal_model, resolution=28, float_input="display")
    reference = predictor.predict(frames[0])
    for converted in (
        frames[0].astype(np.uint16) * 257,  # x * 257 / 65535 == x / 255
        frames[0].astype(np.float32) / 255.0,
    ):
        predictor.reset()
        np.testing.assert_allclose(predictor.predict(converted), reference, atol=1e-5, rtol=0)


def test_linear_float_frames_are_srgb_encoded_then_clipped():
    np.testing.assert_allclose(
        linear_to_srgb(np.array([0.0, 0.0031308, 0.18, 1.0, 4.0])),
        [0.0, 0.04045, 0.46135, 1.0, 1.0],
        atol=1e-4,
    )
    hdr = np.array([[[-1.0, np.nan, 2.0]]], dtype=np.float32)
    np.testing.assert_allclose(rgb_to_unit(hdr, "linear"), [[[0.0, 0.0, 1.0]]], atol=1e-6)
    np.testing.assert_allclose(rgb_to_unit(hdr * 0.25, "display"), [[[0.0, 0.0, 0.5]]], atol=1e-6)


@pytest.mark.parametrize(
    ("resolution", "output", "shape"),
    [
        (28, "input", (HEIGHT, WIDTH)),
        (28, "network", (28, 42)),
        ((42, 70), "network", (42, 70)),
        ((42, 70), "input", (HEIGHT, WIDTH)),
        (None, "network", (42, 70)),  # native 40x60 rounded up to multiples of 14
    ],
)
def test_output_sizes(temporal_model, frames, resolution, output, shape):
    predictor = StreamingPredictor(temporal_model, resolution=resolution, output=output)
    depth = predictor.predict(frames[0])
    assert depth.shape == shape and depth.dtype == np.float32
    network = (28, 42) if resolution == 28 else (42, 70)
    assert predictor.describe()["network_size"] == list(network)


def test_every_kind_of_model_streams_through_the_contract(frames):
    model = tiny_preset("depth-anything-v2-vits")
    predictor = StreamingPredictor(model, resolution=(28, 42))
    first, second = predictor.predict(frames[0]), predictor.predict(frames[0])
    np.testing.assert_array_equal(first, second)  # per-frame model: no state, same output
    assert predictor.describe()["model"] == "DepthAnythingV2"


def test_bf16_autocast_stays_close_to_fp32(temporal_model, frames):
    fp32 = StreamingPredictor(temporal_model, resolution=(28, 42)).predict(frames[0])
    bf16 = StreamingPredictor(temporal_model, resolution=(28, 42), dtype="bf16")
    depth = bf16.predict(frames[0])
    assert depth.dtype == np.float32
    assert np.abs(depth - fp32).mean() < 0.05 * np.abs(fp32).mean() + 0.05
    assert bf16.describe()["dtype"] == "bf16"


def test_describe_states_what_made_the_depth(temporal_model, frames):
    predictor = StreamingPredictor(temporal_model, resolution=56, long_side_max=70)
    assert predictor.describe()["network_size"] is None  # unknown before the first frame
    predictor.predict(frames[0])
    assert predictor.describe() == {
        "model": "FlashDepth",
        "resolution": 56,
        "long_side_max": 70,
        "network_size": [42, 70],  # 56 x 84 capped to a 70 px long side
        "output": "input",
        "dtype": "fp32",
        "device": "cpu",
        "compile": False,
        "float_input": "linear",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "fp16"}, "fp16' needs a CUDA device"),
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"output": "both"}, "output must be one of"),
        ({"resolution": (50, 70)}, r"multiples of 14 px, got \(50, 70\); the nearest is \(56,"),
        ({"resolution": (56, 84), "long_side_max": 100}, "short-side resolution only"),
        ({"resolution": 10}, "at least 14 px"),
        ({"float_input": "log"}, "float_input must be one of"),
    ],
)
def test_bad_settings_are_refused(temporal_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        StreamingPredictor(temporal_model, **kwargs)


def test_a_frame_of_another_size_mid_video_needs_reset(temporal_model, frames):
    predictor = StreamingPredictor(temporal_model, resolution=(28, 42))
    predictor.predict(frames[0])
    smaller = frames[0][:20, :30]
    with pytest.raises(ValueError, match=r"frame 1 is 30x20 .* 60x40; call reset\(\)"):
        predictor.predict(smaller)
    predictor.reset()
    assert predictor.predict(smaller).shape == (20, 30)
    with pytest.raises(ValueError, match="RGB arrays"):
        predictor.predict(smaller[..., 0])
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        predictor.predict(smaller.astype(np.int32))
