"""``flashdepth evaluate``: score any method's depth predictions against evaluation shards.

Ground truth is read from clip shards (:mod:`datamodules.format`, one sample per video) by
:mod:`~flashdepth.evaluate.ground_truth`; predictions are per-frame files in per-video folders
(:mod:`~flashdepth.evaluate.predictions`); :mod:`~flashdepth.evaluate.scoring` scores one video
in two streaming passes with the metrics of :mod:`flashdepth.metrics` (FlashDepth and Video
Depth Anything protocols); :mod:`~flashdepth.evaluate.runner` runs videos in parallel and
caches each one's result; :mod:`~flashdepth.evaluate.report` writes ``results.json``,
``table.md`` and ``table.csv``; :mod:`~flashdepth.evaluate.plots` draws the per-frame and
scale-drift plots; :mod:`~flashdepth.evaluate.command` is the command line.
"""


class EvaluationError(Exception):
    """A problem with the ground truth or a prediction folder, stated for the user.

    The message says which method, video, frame or file, and what to do about it.
    """
