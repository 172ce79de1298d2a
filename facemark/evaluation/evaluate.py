"""``facemark eval``: the full pipeline (or ground-truth alignment) against labelled test faces."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .. import align, labelmap

from . import metrics
from ..inputs import shown_name
from ..training.datasets import Sample, outside_image
from ..landmarker import FaceLandmarker
from ..layouts import five_points
from ..training.prepare import match


@dataclass
class EvalResult:
    model: str
    mode: str
    errors: np.ndarray  # (F,) NME fractions, inf where the detector missed the face
    subsets: list[str]
    tags: list[tuple[str, ...]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # each face's image, as --data named it
    flip: bool = False  # measured with --flip (mirrored crops averaged): its tables and plot say so

    @property
    def title(self) -> str:
        what = "full pipeline" if self.mode == "detector" else "ground-truth alignment"
        return f"{self.model}: {what}" + (", --flip" if self.flip else "")

    def faces(self) -> list[dict]:
        """Each face's NME in % (None: the detector missed it), to find the outliers behind a mean.
        A file name that is not UTF-8 is written with ``\\xNN`` for its odd bytes: a lone surrogate
        in the JSON made strict readers refuse the whole report."""
        return [{"image": shown_name(im), "subset": s, "nme": float(e * 100) if np.isfinite(e) else None}
                for im, s, e in zip(self.images, self.subsets, self.errors)]

    def table(self) -> dict[str, dict]:
        """Summary per subset, per WFLW attribute tag, and over all faces."""
        rows = {}
        subs = np.array(self.subsets)
        for s in sorted(set(self.subsets)):
            rows[s] = metrics.summary(self.errors[subs == s])
        for tag in sorted({t for ts in self.tags for t in ts}):
            sel = np.array([tag in ts for ts in self.tags])
            rows[f"wflw:{tag}"] = metrics.summary(self.errors[sel])
        rows["all"] = metrics.summary(self.errors)
        return rows


def evaluate(fl: FaceLandmarker, samples: list[Sample], mode: str = "detector", progress=None, log=None) -> EvalResult:
    """``mode``: ``detector`` (the whole pipeline; the labelled face must be found) or ``gt``
    (crop from the labels' eye centres, nose tip and mouth corners: the landmark model alone).
    An image that cannot be read is left out of the numbers and said through ``log``."""
    from ..imageio import ImageError, read_image

    errors = np.full(len(samples), np.inf)
    readable = np.ones(len(samples), bool)
    size = fl.model.size
    for i, s in enumerate(samples):
        try:
            image = read_image(s.image)
        except ImageError as e:
            readable[i] = False
            if log:
                log(f"skipped: {e}")
            continue
        outside = outside_image(s, image)
        if outside:
            readable[i] = False
            if log:
                log(outside)
            continue
        if mode == "gt":
            try:
                m = align.from_points(five_points(s.landmarks), align.TEMPLATES["landmarks98"], size)
            except align.DegeneratePoints:
                readable[i] = False
                if log:
                    log(f"skipped: {s.image}: its eyes, nose and mouth labels meet at one spot")
                continue
            pred98 = fl.predict_crops([image], [m])[0]
        else:
            det = match(fl.detector.detect(image), s.landmarks)
            if det is None:
                if progress:
                    progress(i + 1, len(samples))
                continue
            pred98 = fl.landmarks_for([image], [[det]])[0][0].landmarks
        if s.landmarks.shape[0] == 98:
            errors[i] = metrics.nme(pred98[None], s.landmarks[None])[0]
        else:
            errors[i] = metrics.nme(labelmap.to68(pred98, fl.map68)[None], s.landmarks[None])[0]
        if progress:
            progress(i + 1, len(samples))
    kept = [s for s, ok in zip(samples, readable) if ok]
    return EvalResult(fl.model_name, mode, errors[readable], [s.subset for s in kept], [s.tags for s in kept],
                      [str(s.image) for s in kept], bool(getattr(fl, "flip", False)))


PLOT_W, PLOT_H, PLOT_PAD = 720, 480, 60  # the CED plot's size and its frame's left and bottom margin


def plot_ced(results: list[EvalResult], path: str, limit: float = 0.10) -> np.ndarray:
    """CED curves of several models in one PNG (drawn with OpenCV: no plotting dependency)."""
    w, h, pad = PLOT_W, PLOT_H, PLOT_PAD
    img = np.full((h, w, 3), 255, np.uint8)
    x0, y0, x1, y1 = pad, h - pad, w - 20, 20

    def to_px(x, y):
        return int(x0 + (x1 - x0) * x / limit), int(y0 - (y0 - y1) * y)

    for k in range(11):
        gx = limit * k / 10
        cv2.line(img, to_px(gx, 0), to_px(gx, 1), (230, 230, 230), 1)
        cv2.putText(img, f"{gx * 100:.0f}", (to_px(gx, 0)[0] - 8, y0 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        gy = k / 10
        cv2.line(img, to_px(0, gy), to_px(limit, gy), (230, 230, 230), 1)
        cv2.putText(img, f"{gy:.1f}", (x0 - 32, to_px(0, gy)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)
    cv2.putText(img, "NME (%)", ((x0 + x1) // 2 - 30, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "fraction of faces", (5, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    colours = [(200, 80, 0), (0, 140, 255), (40, 160, 40), (0, 0, 200), (160, 0, 160), (100, 100, 100)]
    labels = []
    for n, r in enumerate(results):
        xs, ys = metrics.ced(r.errors, limit, 200)
        pts = np.array([to_px(x, y) for x, y in zip(xs, ys)], np.int32)
        c = colours[n % len(colours)]
        cv2.polylines(img, [pts], False, c, 2, cv2.LINE_AA)
        s = metrics.summary(r.errors)
        flip = ", --flip" if r.flip else ""
        nme = f"{s['nme']:.2f}%" if np.isfinite(s["nme"]) else "- (no face found)"
        labels.append((f"{r.model} ({r.mode}{flip}): NME {nme}, AUC10 {s['auc10']:.3f}", c))
    # The legend goes where it covers the least of the curves, on white: over them it was unreadable.
    lw = 16 + max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] for t, _ in labels) if labels else 0
    lh = 10 + 20 * len(labels)
    spots = [(x1 - lw - 10, y0 - lh - 10), (x1 - lw - 10, (y0 + y1 - lh) // 2), (x0 + 10, y1 + 10),
             (x0 + (x1 - x0 - lw) // 2, y0 - lh - 10), (x1 - lw - 10, y1 + 10)]
    colourful = np.ptp(img.astype(np.int16), axis=2) > 40  # (curve pixels: the grid and frame are grey)
    spots = [(max(x, 0), max(y, 0)) for x, y in spots]  # (a legend wider or taller than the frame starts at its corner)
    lx, ly = min(spots, key=lambda p: colourful[p[1]:p[1] + lh, p[0]:p[0] + lw].sum())
    if labels:
        cv2.rectangle(img, (lx, ly), (lx + lw, ly + lh), (255, 255, 255), -1)
        cv2.rectangle(img, (lx, ly), (lx + lw, ly + lh), (200, 200, 200), 1)
    for n, (text, c) in enumerate(labels):
        cv2.putText(img, text, (lx + 8, ly + 20 + 20 * n), cv2.FONT_HERSHEY_SIMPLEX, 0.45, c, 1, cv2.LINE_AA)
    from ..imageio import write_image

    write_image(path, img)
    return img


def is_ced_plot(path) -> bool:
    """Whether an image is one ``plot_ced`` drew (its size, white margins and black frame), so
    ``--plot`` replaces an earlier plot but never someone's photo."""
    from ..imageio import read_image

    try:
        img = read_image(path)
    except Exception:  # noqa: BLE001 - not an image at all: not ours either
        return False
    if img.shape[:2] != (PLOT_H, PLOT_W):
        return False
    grey = img.mean(axis=2) if img.ndim == 3 else img
    x0, y0, x1, y1 = PLOT_PAD, PLOT_H - PLOT_PAD, PLOT_W - 20, 20
    frame = np.concatenate([grey[y1, x0 + 2:x1 - 2], grey[y0, x0 + 2:x1 - 2], grey[y1 + 2:y0 - 2, x0],
                            grey[y1 + 2:y0 - 2, x1]])
    margins = np.concatenate([grey[-3:].ravel(), grey[:, -3:].ravel()])
    # (the frame is black where no curve lies on it, and a curve's colour where one does: a model
    # at 0 % along its bottom, one that reaches 1.0 along its top; never white)
    return bool(np.mean(frame < 200) > 0.95 and margins.min() > 200)


def evenly(samples: list, limit: int | None) -> list:
    """``--limit N``: N faces at an even stride over the whole list, so a quick check sees each
    subset about in proportion (the first N of the 554 test faces were all HELEN's, and the summary
    said "all"). Not rounded per subset: figures measured with ``--limit`` keep their faces."""
    if not limit or limit >= len(samples):
        return list(samples)
    return [samples[i * len(samples) // limit] for i in range(limit)]


def check_limit(limit) -> None:
    """``--limit``: None (every face) or a whole number of at least 1 (the CLI's and the API's check;
    a slice would take 0 as everything and -5 as all but five)."""
    import numbers

    from ..errors import UsageError

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
        raise UsageError(f"--limit must be a whole number, at least 1, not {limit!r}")


def check_eval_outputs(json_path, plot, data: list[str], names: tuple[str, str] = ("--json", "--plot")) -> None:
    """Before any work: the report and the plot can be written, are none of the inputs and no
    other file of the user's (``UsageError`` naming ``names``' option)."""
    import os

    from ..errors import UsageError
    from ..outputs import check_output_file, eval_report

    check_output_file(json_path, names[0], inputs=data, own=("a facemark eval report", eval_report))
    if json_path and plot and os.path.realpath(json_path) == os.path.realpath(plot):
        raise UsageError(f"{names[0]} and {names[1]} name the same file")
    check_output_file(plot, names[1], (".png", ".jpg", ".jpeg", ".bmp", ".webp"), inputs=data,
                      own=("a CED plot of facemark's", is_ced_plot))


def run_eval(data: list[str], models: list[str], boxes: str = "detector", device: str = "cpu",
             detector: str = "retinaface", split: str = "test", limit: int | None = None, flip: bool = False,
             json_path=None, plot=None, progress=None, log=None) -> tuple[list[EvalResult], dict]:
    """``facemark eval``: every model on the labelled faces of ``data``; the report (model ->
    mode and per-subset numbers) is also written to ``json_path``, the CED curves to ``plot``.

    ``progress(model_name, done, total)`` is called as faces are measured."""
    import json
    import os

    from ..errors import UsageError
    from ..training.datasets import load_all

    if data is None or models is None:  # (a bare "'NoneType' object is not iterable" named neither)
        raise TypeError("run_eval needs data (KIND=PATH, or a list of them) and models (names or paths), not None")
    data = [os.fspath(data)] if isinstance(data, (str, os.PathLike)) else [os.fspath(d) for d in data]  # (one KIND=PATH,
    models = [models] if isinstance(models, (str, os.PathLike)) else list(models)  # as run_bench takes it; a Path too)
    if not models:  # (the data's images were read, then blamed: "none of its images could be read")
        raise UsageError("models names no model")
    check_eval_outputs(json_path, plot, [os.fspath(d) for d in data], ("json_path", "plot"))
    if boxes not in ("detector", "gt"):
        raise UsageError("--boxes must be detector or gt")
    if split not in ("test", "train", "all"):
        raise UsageError("--split must be test, train or all")
    check_limit(limit)
    landmarkers = []
    for name in models:  # every model loads first: a typo in the last is said at once, not after reading the data
        try:
            landmarkers.append(FaceLandmarker(model=name, device=device, detector=detector, threshold=0.3, flip=flip))
        except (ValueError, FileNotFoundError) as e:
            raise UsageError(str(e)) from None
    skipped: list[str] = []  # (in the report too: a report of damaged data must not pass for a clean run)

    def noted(line: str, say=log) -> None:
        if line.startswith("skipped: "):
            skipped.append(line.removeprefix("skipped: "))
        if say:
            say(line)

    from ..quiet import to_stderr

    every = load_all(data, lambda line: noted(line, log or to_stderr))  # (load_all's own default: stderr)
    samples = [s for s in every if split == "all" or s.split == split]
    samples = evenly(samples, limit)
    if not samples:  # (csv68 faces, and 300-W folders outside testset/, are all training faces)
        raise UsageError(f"no {split} faces in --data" + (f": its {len(every)} face(s) are all in the {every[0].split} "
                                                          f"split (--split {every[0].split} or --split all)" if every else ""))
    results = []
    for name, fl in zip(models, landmarkers):
        tick = (lambda i, n, name=name: progress(name, i, n)) if progress else None
        results.append(evaluate(fl, samples, boxes, tick, noted if not results else None))  # (each model skips the same)
    if not any(r.table()["all"]["faces"] for r in results):
        raise UsageError(f"no face in --data could be measured: none of its {len(samples)} image(s) could be read, "
                         f"or their labels lie outside them (see the skipped lines)")
    from ..backends import weights_digest

    weights = {id(r): weights_digest(fl.model.path) for r, fl in zip(results, landmarkers)}  # (the file measured)
    report = {}
    for r in results:  # a name given twice (direct, and weights/direct.pt): direct, direct#2, in the tables and plot too
        k, key = 1, r.model
        while key in report:
            k += 1
            key = f"{r.model}#{k}"
        r.model = key
        report[key] = {"mode": r.mode, "weights": weights[id(r)],
                       "options": {"data": [shown_name(d) for d in data], "split": split, "limit": limit,
                                   "flip": flip, "device": device,
                                   "detector": shown_name(detector) if boxes == "detector" else None},  # (gt: none ran)
                       "subsets": r.table(), "faces": r.faces(), "skipped": list(skipped)}
    from ..errors import OutputError
    from ..imageio import atomic_write_bytes
    from ..results import json_numbers

    for path, write in ((json_path, lambda: atomic_write_bytes(json_path, (json.dumps(json_numbers(report), indent=1)
                                                                           + "\n").encode())),
                        (plot, lambda: plot_ced(results, str(plot)))):
        try:
            if path:
                write()
        except OSError as e:  # named as the user gave it
            stop = OutputError(f"cannot write {path}: {e.strerror or e}")
            stop.results = results  # (measured all the same: the command still shows them)
            raise stop from None
    return results, report
