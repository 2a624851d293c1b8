"""``flashdepth benchmark``: streaming cost and Mamba2 scan speed, printed as tables.

Two measurements, each side by side in one run:

``stream``
    Streams ``--frames`` frames (default 1000) through a preset with
    ``init_state``/``step`` and reports the median per-frame latency early in the
    stream and late in it, and the host memory (resident set size) after the
    warm-up and at the end. A streaming model in constant memory shows a late/early
    latency ratio near 1 and no memory growth.
``scan``
    One frame of FlashDepth-S tokens (841 = a 29×29 pooled grid) through the
    pure-PyTorch chunked Mamba2 scan (SSD) and through a per-token recurrence,
    with the speed ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from flashdepth.temporal.ssd import naive_recurrent_scan, ssd_chunked_scan


def resident_memory_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc``; else peak RSS)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(durations: Sequence[float]) -> float:
    return statistics.median(durations) * 1e3


def benchmark_stream(
    model_name: str = "flashdepth-s",
    frames: int = 1000,
    height: int = 70,
    width: int = 126,
    window: int = 50,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, float]:
    """Per-frame latency early vs late in a long stream, and host memory growth.

    Args:
        model_name: A preset with ``init_state``/``step`` (a FlashDepth preset).
        frames: Stream length.
        height: Frame height in pixels (multiple of 14).
        width: Frame width in pixels (multiple of 14).
        window: Frames per timing window; the early window starts after 5 warm-up frames.
        device: ``cpu`` or ``cuda``.
        progress: Show a progress bar.

    Returns:
        ``early_ms``, ``late_ms``, ``latency_ratio``, ``rss_start_mb``, ``rss_end_mb``,
        ``rss_growth_mb``.
    """
    from tqdm import tqdm

    from flashdepth.models.registry import create_model

    if frames < 2 * window + 5:
        raise ValueError(f"--frames must be at least {2 * window + 5} for windows of {window}")
    target = torch.device(device)
    model = create_model(model_name).to(target).eval()
    if not hasattr(model, "step"):
        raise ValueError(f"{model_name} is a per-frame model; pick a flashdepth-* preset")
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(8, 1, 3, height, width, generator=generator)  # frames cycle through 8
    durations: list[float] = []
    with torch.inference_mode():
        state = model.init_state(1, device=target)
        for index in tqdm(range(frames), desc="streaming", disable=not progress):
            frame = source[index % 8].to(target)  # host-to-device copy counted per frame
            _synchronize(target)
            start = time.perf_counter()
            _, state = model.step(frame, state)
            _synchronize(target)
            durations.append(time.perf_counter() - start)
            if index == 4:
                rss_start = resident_memory_mb()
    rss_end = resident_memory_mb()
    early = _median_ms(durations[5 : 5 + window])
    late = _median_ms(durations[-window:])
    return {
        "early_ms": early,
        "late_ms": late,
        "latency_ratio": late / early,
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_growth_mb": rss_end - rss_start,
    }


def _time_call(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return _median_ms(durations)


def benchmark_scan(
    tokens: int = 841, heads: int = 8, headdim: int = 32, d_state: int = 256, repeats: int = 5
) -> dict[str, float]:
    """Chunked SSD scan vs per-token recurrence on one frame (FlashDepth-S sizes).

    Returns:
        ``chunked_ms``, ``recurrent_ms``, ``speedup`` and ``max_abs_diff`` (the two agree).
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, tokens, heads, headdim, generator=generator)
    dt = torch.nn.functional.softplus(torch.randn(1, tokens, heads, generator=generator) - 3)
    a = -torch.rand(heads, generator=generator) * 15 - 1
    b = torch.randn(1, tokens, 1, d_state, generator=generator)
    c = torch.randn(1, tokens, 1, d_state, generator=generator)
    state = torch.randn(1, heads, headdim, d_state, generator=generator)
    with torch.inference_mode():
        chunked, _ = ssd_chunked_scan(x, dt, a, b, c, 256, state)
        recurrent, _ = naive_recurrent_scan(x, dt, a, b, c, state)
        chunked_ms = _time_call(lambda: ssd_chunked_scan(x, dt, a, b, c, 256, state), repeats)
        recurrent_ms = _time_call(lambda: naive_recurrent_scan(x, dt, a, b, c, state), repeats)
    return {
        "chunked_ms": chunked_ms,
        "recurrent_ms": recurrent_ms,
        "speedup": recurrent_ms / chunked_ms,
        "max_abs_diff": (chunked - recurrent).abs().max().item(),
    }


def format_table(rows: Sequence[tuple[str, str]]) -> str:
    """Two-column text table."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``flashdepth benchmark``."""
    parser = argparse.ArgumentParser(
        prog="flashdepth benchmark",
        description="Streaming latency/memory over a long stream and Mamba2 scan speed.",
    )
    parser.add_argument("what", nargs="?", choices=("all", "stream", "scan"), default="all")
    parser.add_argument(
        "--model", default="flashdepth-s", help="preset to stream (default: %(default)s)"
    )
    parser.add_argument(
        "--frames", type=int, default=1000, help="stream length (default: %(default)s)"
    )
    parser.add_argument(
        "--height", type=int, default=70, help="frame height, pixels (multiple of 14)"
    )
    parser.add_argument(
        "--width", type=int, default=126, help="frame width, pixels (multiple of 14)"
    )
    parser.add_argument("--window", type=int, default=50, help="frames per timing window")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows: list[tuple[str, str]] = []
    if args.what in ("all", "stream"):
        try:
            stream = benchmark_stream(
                args.model,
                args.frames,
                args.height,
                args.width,
                args.window,
                args.device,
                progress=not args.no_progress,
            )
        except ValueError as error:
            parser.error(str(error))
        rows += [
            (f"stream: {args.model} {args.height}x{args.width}, {args.device}", ""),
            (f"  median latency, frames 5-{5 + args.window}", f"{stream['early_ms']:.2f} ms"),
            (f"  median latency, last {args.window} frames", f"{stream['late_ms']:.2f} ms"),
            ("  late / early", f"{stream['latency_ratio']:.3f}"),
            ("  host RSS after warm-up", f"{stream['rss_start_mb']:.1f} MiB"),
            ("  host RSS at the end", f"{stream['rss_end_mb']:.1f} MiB"),
            ("  growth", f"{stream['rss_growth_mb']:+.1f} MiB"),
        ]
    if args.what in ("all", "scan"):
        scan = benchmark_scan()
        rows += [
            ("scan: one frame, 841 tokens, 8 heads x 32, d_state 256", ""),
            ("  chunked SSD (chunk 256)", f"{scan['chunked_ms']:.2f} ms"),
            ("  per-token recurrence", f"{scan['recurrent_ms']:.2f} ms"),
            ("  speed-up", f"{scan['speedup']:.1f}x"),
            ("  max |difference|", f"{scan['max_abs_diff']:.1e}"),
        ]
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
