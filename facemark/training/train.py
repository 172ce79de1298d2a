"""Training loop: pack resident on the device, augmentation there, EMA weights, cosine schedule,
a checkpoint every epoch (``--resume`` continues from it), a per-epoch log, best-by-validation
export to ONNX and a torch state.
"""
from __future__ import annotations

import copy
import csv
import functools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import align, labelmap
from ..backends import ModelError
from ..errors import FacemarkError
from ..imageio import atomic_write, atomic_write_bytes, missing_folders, remove_empty, remove_stale_temps
from ..results import json_numbers
from .augment import augment_config, identity_geometry, photometric, sample_geometry, to_pack_frame, transform_points, warp
from .export import _atomic_torch_save, export_pair, save_state
from ..layouts import FLIP98, IOD68
from .losses import loss_for
from ..models import create, scale_pixels
from ..runtime import is_device, max_threads
from .pack import Pack

DEFAULTS = {
    "hourglass": dict(size=128, stacks=2, width=96, depth=3),
    "direct": dict(size=112, width_mult=1.0),
    "hybrid": dict(size=128, widths=[48, 96, 192]),
}
DEFAULT_LR = {"hourglass": 2e-3, "direct": 2e-3, "hybrid": 2e-3}


class TrainingFailed(FacemarkError):
    """Training cannot go on (the loss is no longer a number): one line, exit 1."""


@dataclass
class TrainOptions:
    family: str
    out: Path
    epochs: int = 60
    batch: int = 32
    lr: float | None = None
    weight_decay: float = 1e-4
    device: str = "cpu"
    model: dict = field(default_factory=dict)  # overrides of DEFAULTS[family]
    resume: bool = False
    seed: int = 0
    threads: int | None = None
    max_minutes: float | None = None  # stop cleanly (checkpoint saved) after this long
    time_budget: float | None = None  # minutes: the schedule ends (lr ~0) when they are spent; epochs is then a cap
    ema: float = 0.998
    warmup_epochs: float = 1.0
    compile: bool = False
    aux_fraction: float = 0.35  # share of the down-weighted (noisier) faces drawn each epoch
    fuse_loss: bool = True  # torch.compile the heatmap loss (one-off ~30 s; 2-5x faster steps)
    teacher_model: str | None = None  # distil from this landmark model (a shipped name or a .onnx/.pt path)
    teacher_views: int = 8  # augmented views per face labelled by the teacher (cached; one drawn per epoch);
    # 1: the as-cropped view only, whose labels follow each batch's fresh augmentation
    teacher_cache: Path | None = None  # where the teacher's labels are kept (default OUT/teacher.npz)
    distill: float = 1.0  # weight of the teacher's loss beside the human labels' (which always count)
    init: str | None = None  # start from these weights (a shipped name or .pt): fine-tune (--arch may add parameters)
    augment: dict = field(default_factory=dict)  # overrides of AugmentConfig (--aug KEY=VALUE)
    stated: tuple[str, ...] = ("epochs", "batch")  # which of these this command set: a resume keeps the run's others


def load_torch_model(model: str) -> tuple[torch.nn.Module, dict]:
    """A shipped model name (``hourglass``) or a facemark ``.pt`` file, as a float32 torch module."""
    from ..backends import resolve
    from ..models import load_state

    return load_state(resolve(model, ".pt"))


def knn_neighbors(mean: np.ndarray, k: int = 10) -> list[list[int]]:
    d = np.linalg.norm(mean[:, None] - mean[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1)[:, :k].tolist()


def point_weights(m68: np.ndarray) -> np.ndarray:
    """1 for WFLW points a human label pins down, 0.5 for the teacher-only ones."""
    return np.where(np.abs(m68).max(0) >= 0.25, 1.0, 0.5)


def nme68(pred98: torch.Tensor, human68: torch.Tensor, m68: torch.Tensor) -> torch.Tensor:
    """Per-face NME (inter-ocular, outer corners) of the 68-point view of 98-point predictions."""
    p68 = torch.einsum("ij,njd->nid", m68, pred98)
    iod = (human68[:, IOD68[0]] - human68[:, IOD68[1]]).norm(dim=-1)
    return (p68 - human68).norm(dim=-1).mean(-1) / iod


class Trainer:
    def __init__(self, pack: Pack, opts: TrainOptions, log=print):
        self.opts, self.log = opts, log
        if opts.threads:
            torch.set_num_threads(opts.threads)
        torch.manual_seed(opts.seed)
        self.dev = torch.device(opts.device)
        if self.dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available here")
        self.pack = pack
        saved = _saved_config(opts)
        if saved is not None:  # a resume without --arch: the run's own model, whatever --arch or --init made it
            if opts.init:
                log("note: a resumed run goes on from its own weights (--init sets those of its start)")
            self.model = build_model(opts.family, saved).to(self.dev)
        elif opts.init:
            self.model = self._init_model(opts.init, opts.model).train().to(self.dev)
        else:
            cfg = {**DEFAULTS[opts.family], **opts.model}
            if opts.family == "hybrid" and "neighbors" not in cfg:
                cfg["neighbors"] = knn_neighbors(align.TEMPLATES["mean98"])  # the shipped mean shape
            self.model = build_model(opts.family, cfg).to(self.dev)
        self.teacher = None  # dict of cached views: a, t, flip (geometry) and points (teacher labels)
        if self.dev.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.step_fn = torch.compile(self.model) if opts.compile else self.model
        lr = opts.lr or DEFAULT_LR[opts.family]
        decay = [p for n, p in self.model.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim <= 1]
        self.optim = torch.optim.AdamW([{"params": decay, "weight_decay": opts.weight_decay},
                                        {"params": no_decay, "weight_decay": 0.0}], lr=lr)
        self.base_lr = lr
        # Data resident on the device.
        self.images = torch.from_numpy(pack.images()).to(self.dev)
        self.targets = torch.from_numpy(pack.target98).float().to(self.dev)
        self.human = torch.from_numpy(np.nan_to_num(pack.human68)).float().to(self.dev)
        self.sample_w = torch.from_numpy(pack.weight).float().to(self.dev)
        m68 = labelmap.load()
        self.m68 = torch.from_numpy(np.array(m68)).float().to(self.dev)
        self.point_w = torch.from_numpy(point_weights(m68)).float().to(self.dev)
        self.flip = torch.from_numpy(FLIP98).long().to(self.dev)
        self.train_idx = np.flatnonzero(~pack.val)
        self.val_idx = np.flatnonzero(pack.val)
        if not len(self.train_idx):
            raise ValueError("the pack has no training faces (all are held out, or it is empty)")
        self.aug = augment_config(opts.augment)
        self.gen = torch.Generator(device=self.dev).manual_seed(opts.seed)
        self.epoch, self.best, self.history = 0, math.inf, []
        self.seconds = 0.0  # training time spent so far (kept across --resume, for --time-budget)
        self.out = Path(opts.out)
        self.amp = self.dev.type == "cuda"
        # The folder is held before anything of it is read (a run refused by the lock says nothing
        # of resuming, nor labels with a teacher for minutes first); a refused run leaves no folder.
        made = missing_folders(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = _hold_run_folder(self.out)
            if opts.resume and (self.out / "last.pt").is_file():
                self._load_checkpoint(self.out / "last.pt")
            if self.opts.teacher_model and self.opts.distill > 0:
                self.teacher = self._teacher_cache()
            elif self.opts.teacher_model:  # (its labels would weigh nothing: minutes of labelling for no loss)
                self.log(f"note: --distill 0 gives the teacher's loss no weight: {self.opts.teacher_model} is not used")
        except BaseException:
            self.release()
            remove_empty(made)
            raise
        remove_stale_temps(self.out)  # a killed run's half-written checkpoint or log
        if note := upscale_note(pack, self.model.size):  # (once the run is sure to go ahead)
            self.log(note)
        if not len(self.val_idx):
            self.log("note: the pack holds no held-out faces, so best.pt is simply the latest epoch")

    def release(self) -> None:
        """Lets another run into this folder (otherwise when this process ends). The lock file goes
        first, while still held, so a run that ends with nothing saved leaves no folder behind."""
        if getattr(self, "_lock", None) is not None:
            try:
                os.unlink(self.out / ".facemark-train.lock")
            except OSError:
                pass
            os.close(self._lock)
            self._lock = None

    def _init_model(self, init: str, overrides: dict) -> torch.nn.Module:
        """The ``--init`` weights, grown into the ``--arch`` overrides where those add parameters
        (e.g. the direct model's ``pool=spatial``, which starts as the plain average it replaces)."""
        try:
            model, _ = load_torch_model(init)
        except Exception as e:  # noqa: BLE001 - torch and pickle raise many kinds for a file that is no model
            if isinstance(e, ModelError):  # an unknown name, a missing file: its own words, named as --init's
                raise RuntimeError(f"--init {init}: {e}") from None
            if isinstance(e, FacemarkError):
                raise
            raise RuntimeError(f"--init {init}: not a facemark model file ({type(e).__name__})") from None
        if model.family != self.opts.family:
            raise RuntimeError(f"--init {init} is a {model.family} model, not {self.opts.family}")
        if not overrides or all(model.config.get(k) == v for k, v in overrides.items()):
            return model
        grown = build_model(self.opts.family, {**model.config, **overrides})
        try:
            missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
            fits = not unexpected and not any(k.endswith(("running_mean", "running_var")) for k in missing)
        except RuntimeError:  # a weight of another shape
            missing, fits = [], False
        if not fits:
            raise RuntimeError(f"--init {init} does not fit --arch {overrides}: only options that keep every "
                               "weight of the network (and may add new ones) can start from it")
        if missing:
            self.log(f"--init {init}: new parameters {', '.join(missing)} start from their initial values")
        return grown

    # --- distillation -----------------------------------------------------------------------
    def _teacher_cache(self) -> dict:
        """The teacher's labels for ``teacher_views`` augmented views of every face, computed once
        (batched, flip-averaged, on the teacher's clean view: no blur, noise or occlusion) and kept
        in a file, so a resumed run or a second student reuses them. Each epoch draws one view per
        face and adds fresh photometric damage: the teacher's cost is paid once, not every epoch."""
        from ..backends import load_model
        from ..landmarker import flip_averaged

        o = self.opts
        path = Path(o.teacher_cache or self.out / "teacher.npz")
        teacher = load_model(o.teacher_model, device="cpu" if self.dev.type == "cpu" else o.device)
        # What the labels were made from, by content: two exports of one architecture share name
        # and size, and two packs may share a face count.
        made_from = {"teacher": _digest(teacher.path.read_bytes()),
                     "pack": _digest(self.pack.jpeg, self.pack.offsets, self.pack.target98, np.int64(self.pack.res)),
                     "views": o.teacher_views, "seed": o.seed,
                     # (the views' geometry came from these settings)
                     "aug": sorted(o.augment.items()) if o.augment and o.teacher_views > 1 else []}
        key = json.dumps(made_from, default=str)
        if path.is_file():
            try:
                z = np.load(path, allow_pickle=False)
                z["key"]
            except Exception as e:  # noqa: BLE001 - a pack, a photo, a damaged file: not ours to replace
                raise RuntimeError(f"--teacher-cache {path} is not a teacher-label cache, or a damaged one "
                                   f"({type(e).__name__}); not overwritten: delete it, or give another file name") from None
            if str(z["key"]) == key:
                self.log(f"teacher labels from {path} ({o.teacher_views} view{'s' if o.teacher_views > 1 else ''} per face)")
                return {k: torch.from_numpy(z[k]).to(self.dev) for k in ("a", "t", "flip", "points")}
            self.log(f"note: {path} holds labels made {_made_otherwise(str(z['key']), made_from)}: labelling again "
                     f"(it is replaced)")
        n, v = len(self.pack), o.teacher_views
        gen = torch.Generator(device=self.dev).manual_seed(o.seed + 7)
        a, t, flip = sample_geometry(n * v, self.aug, self.dev, gen)
        a[::v], t[::v], flip[::v] = identity_geometry(n, self.dev)  # view 0 of each face: as cropped
        points = np.empty((n * v, self.targets.shape[1], 2), np.float32)
        start = time.time()
        for s in range(0, n * v, 128):
            j = torch.arange(s, min(s + 128, n * v), device=self.dev)
            x = warp(self.images[j // v], a[j], t[j], flip[j], self.pack.margin, teacher.size)
            crops = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()
            points[s:s + len(j)] = flip_averaged(teacher, crops)
            if s % (128 * 20) == 0:
                self.log(f"teacher labels: {s + len(j)}/{n * v} views ({time.time() - start:.0f} s)")
        cache = {"a": a.cpu().numpy(), "t": t.cpu().numpy(), "flip": flip.cpu().numpy(), "points": points}
        try:
            atomic_write(path, lambda tmp: np.savez(tmp, key=key, **cache), ".npz", tidy=True)
            self.log(f"teacher labels: {n * v} views in {time.time() - start:.0f} s -> {path}")
        except OSError as e:  # (a full disk: the labels are made and held; only their keeping is lost)
            self.log(f"note: teacher labels: {n * v} views in {time.time() - start:.0f} s, not kept: cannot write "
                     f"{path} ({e.strerror or e}); training goes on (a resume labels again)")
        return {k: torch.from_numpy(c).to(self.dev) for k, c in cache.items()}

    def _draw_views(self, idx: np.ndarray, rng: np.random.Generator):
        """One cached teacher view per face: (geometry, teacher points). With one view (as cropped)
        the geometry is drawn fresh and the labels move with it, as the human labels do: the
        student still sees every augmentation, for one view's labelling time."""
        v = self.opts.teacher_views
        c = self.teacher
        if v == 1:
            if "pack" not in c:  # the labels once in the pack's frame
                c["pack"] = to_pack_frame(c["points"], c["a"], c["t"], c["flip"], self.pack.margin, self.flip)
            i = torch.from_numpy(idx).to(self.dev)
            geo = sample_geometry(len(idx), self.aug, self.dev, self.gen)
            return geo, transform_points(c["pack"][i], *geo, self.pack.margin, self.flip)
        j = torch.from_numpy(idx * v + rng.integers(0, v, len(idx))).to(self.dev)
        return (c["a"][j], c["t"][j], c["flip"][j]), c["points"][j]

    # --- checkpoints ------------------------------------------------------------------------
    def _checkpoint(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "optim": self.optim.state_dict(),
                "epoch": self.epoch, "best": self.best, "history": self.history, "family": self.model.family,
                "config": self.model.config, "options": {k: str(v) for k, v in asdict(self.opts).items()},
                "rng": self.gen.get_state(), "pack": self.pack_id, "seconds": self.seconds}

    @functools.cached_property
    def pack_id(self) -> dict:
        """What the run trains on, so that --resume with another pack is refused, not mixed in
        (once: a sort of every target, saved with each epoch's checkpoint)."""
        import hashlib

        targets = np.round(self.pack.target98.astype(np.float64), 3)  # a rebuilt pack's float noise is the same pack
        digest = hashlib.sha1(np.ascontiguousarray(targets).tobytes()).hexdigest()[:16]
        rows = targets.reshape(len(targets), -1)
        faces = rows[np.lexsort(rows.T[::-1])] if len(rows) else rows  # (the same faces in any order)
        as_set = hashlib.sha1(np.ascontiguousarray(faces).tobytes()).hexdigest()[:16]
        return {"faces": len(self.pack), "held_out": int(self.pack.val.sum()), "res": int(self.pack.res), "targets": digest,
                "set": as_set}

    def _load_checkpoint(self, path: Path) -> None:
        try:
            ck = torch.load(path, map_location=self.dev, weights_only=False)  # our own checkpoint
            ck = {k: ck[k] for k in ("model", "ema", "optim", "epoch", "best", "history", "family", "config", "rng")} | \
                {"pack": ck.get("pack"), "options": dict(ck.get("options") or {}), "seconds": ck.get("seconds")}
        except Exception as e:  # noqa: BLE001 - torch and pickle raise many kinds for a damaged file
            raise RuntimeError(f"{path} is not a training state facemark can resume ({type(e).__name__}); "
                               f"give a new --out, or delete that run to start again") from None
        if ck["family"] != self.model.family:
            raise RuntimeError(f"{path} holds a {ck['family']} run, not {self.model.family}: resume it without --model "
                               f"(or with --model {ck['family']}), or use a new --out")
        if create(ck["family"], **ck["config"]).config != self.model.config:  # (defaults filled in: older runs lack newer keys)
            raise RuntimeError(f"{path} holds a different model ({ck['family']} {ck['config']}): resume without --arch "
                               f"to go on with it, or use a new --out")
        now, then = self.pack_id, ck["pack"]  # (runs saved before this check have none; before "set", no "set")
        if then is not None and any(then[k] != now[k] for k in then):
            if "res" in then and then["res"] != now["res"]:  # (the same faces cropped at another size)
                raise RuntimeError(f"{path} was trained on {then['res']} px crops; this pack's are {now['res']} px "
                                   f"(--res): resume with a pack of the run's size, or use a new --out")
            if then.get("set") == now["set"]:  # (the epochs' batches and held-out faces are counted by position)
                raise RuntimeError(f"{path} was trained on the same faces in another order: give the --data options in "
                                   f"the run's order (or its --pack file), or use a new --out")
            raise RuntimeError(f"{path} was trained on another pack ({then['faces']} faces, "
                               f"{then['held_out']} held out); resume with the same --pack or --data, or use a new --out")
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.optim.load_state_dict(ck["optim"])
        self.epoch, self.best, self.history = ck["epoch"], ck["best"], ck["history"]
        self.seconds = float(ck.get("seconds") or 0.0)  # (runs saved before --time-budget have none)
        self.gen.set_state(ck["rng"].cpu())  # generator states are CPU byte tensors on every device
        best = f"best val NME {self.best * 100:.3f} %" if math.isfinite(self.best) else "no face held out"
        self.log(f"resumed from {path} at epoch {self.epoch} ({best})")
        self._keep_distilling(ck["options"])
        self._keep_augmentation(ck["options"])
        self._keep_time_budget(ck["options"])
        self._keep_length(ck["options"])
        self._say_changes(ck["options"])

    def _keep_length(self, saved: dict) -> None:
        """--epochs and --batch not given again on --resume are the run's (said): the default
        epochs would redraw its cosine schedule over another length (the rate jumping back up),
        another batch its steps."""
        for key in ("epochs", "batch"):
            try:
                was = int(saved.get(key))
            except (TypeError, ValueError):  # (runs saved without it)
                continue
            if key not in self.opts.stated and was != getattr(self.opts, key):
                self.opts = replace(self.opts, **{key: was})
                self.log(f"note: the run was started with --{key} {was}, and goes on with it")

    def _say_changes(self, saved: dict) -> None:
        """--lr and --batch may change on --resume (a run continued differently on purpose), and
        --epochs may already be done: said, so that a slip of the keyboard is not silent."""
        def shown(v) -> str:
            return "the default" if v in (None, "None") else str(v)

        for key in ("lr", "batch"):
            was, now = saved.get(key), str(getattr(self.opts, key))
            if was is not None and was != now:
                self.log(f"note: the run was started with --{key} {shown(was)}; it goes on with --{key} {shown(now)}")
        if self.opts.epochs <= self.epoch:
            self.log(f"note: --epochs {self.opts.epochs}: the run has done {self.epoch} already, so none is trained")

    def _keep_time_budget(self, saved: dict) -> None:
        """A run started with --time-budget keeps it when resumed without one (said): its schedule
        was drawn over that time, and without it the rate would jump back up the epochs' cosine."""
        try:
            started = float(saved.get("time_budget") or "nan")
        except ValueError:
            return
        if self.opts.time_budget is None and math.isfinite(started):
            self.opts = replace(self.opts, time_budget=started)
            self.log(f"note: the run was started with --time-budget {started:g}, and goes on with it")

    def _keep_augmentation(self, saved: dict) -> None:
        """A resumed run keeps the ``--aug`` settings it was started with unless new ones are given
        (said either way): the teacher cache's views and the schedule were made for them."""
        import ast

        try:
            started = ast.literal_eval(saved.get("augment") or "{}")
        except (ValueError, SyntaxError):
            started = {}
        if not isinstance(started, dict) or started == self.opts.augment:
            return
        shown = " ".join(f"--aug {k}={v}" for k, v in sorted(started.items())) or "the default augmentation"
        if not self.opts.augment:
            self.opts = replace(self.opts, augment=started)
            self.aug = augment_config(started)
            self.log(f"note: the run was started with {shown}, and goes on with it")
        else:
            self.log(f"note: the run was started with {shown}; it goes on with this command's --aug")

    def _keep_distilling(self, saved: dict) -> None:
        """A resumed run goes on as it was started: a distilling run left without --teacher-model
        keeps its teacher (said, not silently dropped); another teacher given is said too."""
        teacher = saved.get("teacher_model")
        if teacher in (None, "None"):
            return
        o, default = self.opts, TrainOptions(family=self.opts.family, out=self.opts.out)
        cache = saved.get("teacher_cache")
        kept = dict(  # what the user set on this command stays; the rest is the run's
            teacher_views=int(saved.get("teacher_views", 8)) if o.teacher_views == default.teacher_views else o.teacher_views,
            teacher_cache=(None if cache in (None, "None") else Path(cache)) if o.teacher_cache is None else o.teacher_cache,
            distill=float(saved.get("distill", 1.0)) if o.distill == default.distill else o.distill)
        if self.opts.teacher_model is None and self.opts.distill != 0:  # (--distill 0: the user stops it)
            self.opts = replace(o, teacher_model=teacher, **kept)
            self.log(f"note: the run was distilling from {teacher}, and goes on doing so (as it was started)")
        elif self.opts.teacher_model is not None and str(self.opts.teacher_model) == teacher:
            self.opts = replace(o, **kept)  # (the same teacher given again: its views and cache as the run's)
        elif self.opts.teacher_model is not None:
            # (another teacher: views and weight as the run's unless given; not the run's cache, which may
            # be shared with other students of the first teacher: its own, unless given)
            self.opts = replace(o, teacher_views=kept["teacher_views"], distill=kept["distill"])
            where = self.opts.teacher_cache or self.opts.out / "teacher.npz"
            self.log(f"note: the run was distilling from {teacher}; it now distils from {self.opts.teacher_model} "
                     f"({self.opts.teacher_views} view(s) per face, labels kept in {where})")

    # --- steps ----------------------------------------------------------------------------
    def _lr(self, it: float, total: float, spent: float = 0.0) -> float:
        """Linear warm-up, then a cosine to zero over the steps or, under --time-budget, over the
        budget's time if that runs out first (``spent``: its share used, 0..1)."""
        warm = max(1.0, self.opts.warmup_epochs * len(self.train_idx) / self.opts.batch)  # (a step at least: lr <= peak)
        ramp = min(1.0, (it + 1) / warm)
        done = max(max(0.0, it - warm) / max(1.0, total - warm), spent)  # (a budget spent in warm-up ends it too)
        return self.base_lr * ramp * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    def _batch(self, idx: np.ndarray, train: bool, geo=None):
        i = torch.from_numpy(idx).to(self.dev)
        n = len(idx)
        if geo is None:
            geo = sample_geometry(n, self.aug, self.dev, self.gen) if train else identity_geometry(n, self.dev)
        x = warp(self.images[i], *geo, self.pack.margin, self.model.size)
        if train:
            x = photometric(x, self.aug, self.gen)
        x = scale_pixels(x)
        if self.dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        pts = transform_points(self.targets[i], *geo, self.pack.margin, self.flip)
        return x, pts, i, geo

    @torch.no_grad()
    def validate(self, model=None) -> float:
        model = self.ema if model is None else model
        model.eval()
        errs = []
        for s in range(0, len(self.val_idx), 256):
            idx = self.val_idx[s:s + 256]
            x, _, i, geo = self._batch(idx, train=False)
            with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.amp):
                out = model(x)
            pred = model.decode(out).float()  # in float32, as the shipped models decode (bf16 moved points 0.4 px)
            h68 = transform_points(self.human[i], *geo, self.pack.margin, None)
            errs.append(nme68(pred, h68, self.m68))
        return float(torch.cat(errs).mean()) if errs else float("nan")

    def gives_numbers(self, model=None) -> bool:
        """Whether the model's points on a few training faces are numbers: with no face held out,
        the only check that keeps a diverged epoch from becoming best.pt."""
        model = self.ema if model is None else model
        model.eval()
        x, _, _, _ = self._batch(self.train_idx[:16], train=False)
        with torch.no_grad(), torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.amp):
            out = model(x)
        return bool(torch.isfinite(model.decode(out).float()).all())

    def fit(self, progress=None) -> dict:
        opts = self.opts
        clean = self.train_idx[self.pack.weight[self.train_idx] >= 1.0]
        aux = self.train_idx[self.pack.weight[self.train_idx] < 1.0]
        n_aux = int(round(len(aux) * opts.aux_fraction))
        steps_per_epoch = max(1, (len(clean) + n_aux) // opts.batch)
        total = opts.epochs * steps_per_epoch
        start = time.time()
        stopped_early = False
        budget = opts.time_budget * 60 if opts.time_budget else math.inf
        if self.seconds >= budget:
            self.log(f"the time budget of {opts.time_budget:g} min was spent by the run being resumed")
        if opts.init and self.epoch == 0 and len(self.val_idx):  # the weights to beat: a fine-tune may only lose
            start_val = self.validate()
            if math.isfinite(start_val):
                self.best = start_val
                save_state(self.ema, self.out / "best.pt", meta={"epoch": 0, "val_nme": start_val * 100}, half=False)
                self.log(f"epoch 0 (the --init weights): val NME {start_val * 100:.3f} %, the best to beat")
        while self.epoch < opts.epochs and self.seconds < budget:
            rng = np.random.default_rng(opts.seed * 1000 + self.epoch)  # same draw after --resume
            self.model.train()
            order = rng.permutation(np.concatenate([clean, rng.choice(aux, n_aux, replace=False)]))
            t0, seen, loss_sum = time.time(), 0, 0.0
            for b in range(steps_per_epoch):
                it = self.epoch * steps_per_epoch + b
                spent = self.seconds + time.time() - t0
                if spent >= budget and seen:  # the schedule is over: this epoch ends here, validated and saved
                    break
                for g in self.optim.param_groups:
                    g["lr"] = self._lr(it, total, spent / budget)
                idx = order[b * opts.batch:(b + 1) * opts.batch]
                geo, taught = self._draw_views(idx, rng) if self.teacher is not None else (None, None)
                x, pts, i, _ = self._batch(idx, train=True, geo=geo)
                with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.amp):
                    out = self.step_fn(x)
                loss = loss_for(self.model, out, pts, self.point_w, self.sample_w[i], fuse=self.opts.fuse_loss)
                if taught is not None:  # human labels keep their loss; the teacher adds its own
                    loss = loss + opts.distill * loss_for(self.model, out, taught, torch.ones_like(self.point_w),
                                                          torch.ones_like(self.sample_w[i]), fuse=self.opts.fuse_loss)
                value = loss.detach().item()
                if not math.isfinite(value):  # before the step: the saved weights stay those of a sane model
                    raise TrainingFailed(f"the loss became {value} in epoch {self.epoch + 1} (step {b + 1}); stopped. "
                                         f"{'last.pt holds the last finished epoch; ' if self.epoch else ''}"
                                         f"try a lower --lr, or check the data")
                self.optim.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
                self.optim.step()
                self._update_ema(it)
                seen += len(i)
                loss_sum += value * len(i)
                if progress:
                    progress(self.epoch, b + 1, steps_per_epoch, loss_sum / seen)
            self.epoch += 1
            val = self.validate()
            self.seconds += time.time() - t0  # steps and the held-out check: what a budget of minutes buys
            row = {"epoch": self.epoch, "loss": loss_sum / max(seen, 1), "val_nme": val * 100,
                   "lr": self.optim.param_groups[0]["lr"], "img_per_s": seen / (time.time() - t0),
                   "minutes": self.seconds / 60}  # (training time so far, across --resume)
            self.history.append(row)
            nothing_held = len(self.val_idx) == 0
            # Nothing held out: keep the latest, if its points are numbers. NaN points never win.
            improved = self.gives_numbers() if nothing_held else val < self.best
            if improved:
                self.best = val
                save_state(self.ema, self.out / "best.pt", meta={"epoch": self.epoch, "val_nme": val * 100}, half=False)
            _atomic_torch_save(self._checkpoint(), self.out / "last.pt")
            self._write_log()
            shown = f"val NME {val * 100:.3f} %" if math.isfinite(val) else \
                "no val NME (no face held out)" if nothing_held and improved else \
                "no val NME (no face held out; points on training faces are not numbers: not kept)" if nothing_held else \
                f"val NME {val} (points that are not numbers: not kept)"
            self.log(f"epoch {self.epoch}/{opts.epochs} loss {row['loss']:.4f} {shown}"
                     f"{' (best)' if improved else ''}  {row['img_per_s']:.{1 if row['img_per_s'] < 100 else 0}f} img/s")
            if self.seconds >= budget:
                self.log(f"time budget of {opts.time_budget:g} min spent after {self.epoch} epochs")
            elif opts.max_minutes and (time.time() - start) / 60 > opts.max_minutes and self.epoch < opts.epochs:
                self.log(f"stopping after {opts.max_minutes} min (resume with --resume)")
                stopped_early = True
                break
        if opts.init and self.history and self.best < min((r["val_nme"] for r in self.history), default=math.inf) / 100:
            self.log("note: no epoch beat the --init weights on the held-out faces: best.pt holds them as they came")
        return {"epochs": self.epoch, "best_val_nme": self.best * 100, "finished": not stopped_early}

    def _update_ema(self, it: int) -> None:
        d = min(self.opts.ema, (1 + it) / (10 + it))
        with torch.no_grad():
            for e, p in zip(self.ema.state_dict().values(), self.model.state_dict().values()):
                if e.dtype.is_floating_point:
                    e.mul_(d).add_(p.detach(), alpha=1 - d)
                else:
                    e.copy_(p)

    def _write_log(self) -> None:
        def write_csv(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(self.history[0]))
                w.writeheader()
                w.writerows(self.history)

        atomic_write(self.out / "log.csv", write_csv)
        text = json.dumps(json_numbers(self.history), indent=1)  # NaN is not JSON: null
        atomic_write_bytes(self.out / "log.json", text.encode())

    def export_best(self, name: str | None = None) -> tuple[Path, Path]:
        """best.pt -> model.onnx (decode inside, fp16-stored) and model.pt (fp16 state)."""
        from ..models import load_state

        if not (self.out / "best.pt").is_file():  # every epoch's points were not numbers
            held = "held-out " if len(self.val_idx) else ""
            raise TrainingFailed(f"no epoch gave {held}points that are numbers, so there is no best model to export "
                                 f"({self.out / 'last.pt'} holds the last epoch); try a lower --lr, or check the data")
        model, meta = load_state(self.out / "best.pt")
        meta = {**meta, "name": name or self.model.family, "family": self.model.family}
        onnx_path, pt_path = self.out / "model.onnx", self.out / "model.pt"
        export_pair(model, onnx_path, pt_path, meta)
        return onnx_path, pt_path


def run_family(out: Path) -> str | None:
    """The model family of the run in ``out`` (its last.pt), so ``--resume`` needs no ``--model``;
    None without one (a damaged checkpoint is said when it is loaded)."""
    path = Path(out) / "last.pt"
    if not path.is_file():
        return None
    try:
        family = torch.load(path, map_location="cpu", weights_only=False).get("family")
    except Exception:  # noqa: BLE001 - torch and pickle raise many kinds for a damaged file
        return None
    return family if isinstance(family, str) else None


def _saved_config(opts: TrainOptions) -> dict | None:
    """The model config of the run a ``--resume`` without ``--arch`` continues (one of this family),
    so that a run started with ``--arch`` or ``--init`` goes on without repeating them; None
    otherwise (a damaged checkpoint is said when it is loaded)."""
    path = Path(opts.out) / "last.pt"
    if not opts.resume or opts.model or not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        config = dict(ck["config"]) if ck.get("family") == opts.family else None
    except Exception:  # noqa: BLE001 - torch and pickle raise many kinds for a damaged file
        return None
    return config


def build_model(family: str, cfg: dict) -> torch.nn.Module:
    """``create`` with ``--arch`` values of the wrong kind or size named as such (ValueError)."""
    from ..models import options

    defaults = options(family)
    for k, v in cfg.items():  # values of the wrong kind: said as such, not as Python's or torch's TypeError
        d = defaults.get(k)
        if isinstance(d, (int, float)) and not isinstance(d, bool) and isinstance(v, str):
            raise ValueError(f"--arch {k}={v}: {k} is a number (default {d})")
        if isinstance(d, int) and not isinstance(d, bool) and isinstance(v, float):
            raise ValueError(f"--arch {k}={v}: {k} is a whole number (default {d})")
        if isinstance(d, (tuple, list)) and (not isinstance(v, (tuple, list)) or not v):
            raise ValueError(f"--arch {k}={json.dumps(v)}: {k} is a list of one or more numbers (default "
                             f"{k}={json.dumps(list(d), separators=(',', ':'))})")
    shown = " ".join(f"{k}={v}" for k, v in cfg.items() if k != "neighbors")
    try:
        model = create(family, **cfg)
    except (TypeError, ValueError, RuntimeError, MemoryError, IndexError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]  # (torch's C++ errors carry their stack frames)
        if isinstance(e, MemoryError) or "allocate" in why:
            why = "not enough memory for a model that size"
        elif "Overflow" in why:
            why = "a size too large to be a number of channels"
        raise ValueError(f"--arch: the {family} model cannot be built with {shown}: {why}") from None
    try:  # (sizes that build but cannot run, e.g. an hourglass input its levels cannot halve and double
        with torch.no_grad():  # back: said now, not as a traceback from training's first step)
            model.eval()(torch.zeros(1, 3, model.size, model.size))
    except (RuntimeError, ValueError, MemoryError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        hint = f"; a size that is a multiple of {2 ** (model.config['depth'] + 2)} runs" if family == "hourglass" else ""
        raise ValueError(f"--arch: the {family} model built with {shown} cannot run on its {model.size}px input "
                         f"({why}){hint}") from None
    return model.train()


def _digest(*arrays) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    for x in arrays:
        h.update(memoryview(np.ascontiguousarray(x)).cast("B"))
    return h.hexdigest()


def _made_otherwise(saved: str, made_from: dict) -> str:
    """What differs between a teacher cache's key and this run's: 'by another teacher', ..."""
    try:
        old = json.loads(saved)
    except json.JSONDecodeError:  # (caches of facemark before content keys)
        return "by an older facemark"
    words = {"teacher": "by another teacher", "pack": "for another pack", "views": "with another --teacher-views",
             "seed": "with another seed", "aug": "with other --aug settings"}
    now = json.loads(json.dumps(made_from, default=str))
    differ = [w for k, w in words.items() if not isinstance(old, dict) or old.get(k) != now[k]]
    return ", ".join(differ) if differ else "otherwise"


def parse_arch(items: list[str], option: str = "--arch") -> dict:
    """``--arch KEY=VALUE`` options (and ``--aug``'s): JSON values where they parse (``width=128``,
    ``widths=[8,16]``)."""
    from ..errors import UsageError

    arch = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{option} wants KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            arch[k] = json.loads(v)
        except json.JSONDecodeError:
            arch[k] = v
    return arch


def load_pack(pack_path: Path | None, data: list[str], teacher: Path | None, cache: Path, res: int, log=None) -> Pack:
    """A pack file, or one built from ``--data`` on the fly (its ``skipped:`` lines and notes
    through ``log``, as ``facemark pack`` says them)."""
    from ..errors import UsageError
    from .pack import build_pack

    if pack_path is not None:
        if Path(pack_path).is_dir():
            raise UsageError(f"--pack {pack_path} is a folder: give the pack file (.npz) that facemark pack wrote")
        if not Path(pack_path).is_file():
            raise UsageError(f"pack not found: {pack_path}")
        try:
            pk = Pack.load(pack_path)
        except Exception as e:  # noqa: BLE001 - numpy raises many kinds for a file that is no pack
            raise UsageError(f"{pack_path} is not a facemark pack ({type(e).__name__}); make one with facemark pack") from None
        try:
            pk.check()
        except ValueError as e:
            raise UsageError(f"{pack_path} is not a usable pack: {e}") from None
        return pk
    if data:
        if not 32 <= res <= 1024:
            raise UsageError(f"--res must be between 32 and 1024 pixels, not {res}")
        pk = build_pack(data, teacher, cache, res, 0.5, log=log)
        try:
            pk.check()
        except ValueError as e:
            raise UsageError(f"the faces in --data make no usable pack: {e}") from None
        return pk
    raise UsageError("give --data KIND=PATH (and --teacher for 68-point data) or --pack FILE")


RUN_FILES = ("best.pt", "model.onnx", "model.pt", "log.csv")  # what a run folder holds besides last.pt


def _hold_run_folder(folder: Path):
    """This process's hold on a run folder for its life: a second ``train`` into it (two at once,
    or a ``--resume`` beside the running one) would mix both runs' checkpoints and logs. The lock
    file also keeps the folder from being empty, so the refused run never removes it. None where
    the system has no ``flock`` (Windows). ``Trainer.release`` lets go."""
    from ..errors import UsageError

    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(folder / ".facemark-train.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UsageError(f"another facemark train is running in {folder}: wait for it to end, or give another "
                         f"--out") from None
    return fd


MAX_LR = 10.0  # an AdamW step moves each weight by about lr: far above 1 is never a learning rate


def check_options(opts: TrainOptions) -> None:
    """``UsageError`` for options that cannot work, before any data is loaded."""
    from ..errors import UsageError
    from ..models import FAMILIES

    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {opts.out} exists and is not a directory")
    if not opts.resume and (out / "last.pt").exists():
        raise UsageError(f"--out {opts.out} holds a training run: --resume continues it; to start again, "
                         f"give another --out (or delete that one)")
    if not opts.resume and any((out / f).exists() for f in RUN_FILES):
        raise UsageError(f"--out {opts.out} holds a training run with no last.pt to continue from: give another "
                         f"--out (or delete that one)")
    if opts.resume and not (out / "last.pt").exists() and any((out / f).exists() for f in RUN_FILES):
        raise UsageError(f"--out {opts.out} holds a training run but no last.pt to continue from (only the "
                         f"last finished epoch is kept there): a new run would replace it; give another --out")
    for name, value in (("--epochs", opts.epochs), ("--batch", opts.batch)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, not {value}")
    for name, value, low in (("--lr", opts.lr, 0.0), ("--max-minutes", opts.max_minutes, 0.0),
                             ("--time-budget", opts.time_budget, 0.0)):
        if value is not None and not (math.isfinite(value) and value > low):
            raise UsageError(f"{name} must be a positive number, not {value}")
    if opts.lr is not None and opts.lr > MAX_LR:  # (3.5e38 is no float32: torch's traceback)
        raise UsageError(f"--lr must be at most {MAX_LR:g} (AdamW's step per parameter; the default is 2e-3), "
                         f"not {opts.lr:g}")
    if out.is_symlink() and not out.exists():
        raise UsageError(f"--out {opts.out} is a link to nothing")
    if not (math.isfinite(opts.distill) and opts.distill >= 0):
        raise UsageError(f"--distill must be 0 or a positive number, not {opts.distill}")
    tc = opts.teacher_cache
    if tc is not None and ((Path(tc).exists() and not Path(tc).is_file()) or Path(tc).suffix != ".npz"):
        raise UsageError(f"--teacher-cache {tc}: give an .npz file name (it is made if missing)")
    if tc is not None and not Path(tc).exists():  # (where it can be made: said now, not after minutes of
        from ..outputs import check_output_file  # labelling; one there, shared read-only, is only read)

        check_output_file(Path(tc), "--teacher-cache")
    if opts.threads is not None and not 1 <= opts.threads <= max_threads():
        raise UsageError(f"--threads must be from 1 to {max_threads()} (four per core here), not {opts.threads}")
    if not is_device(opts.device):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, not {opts.device!r}")
    if opts.family not in FAMILIES:
        raise UsageError(f"unknown model {opts.family!r}: use one of {', '.join(FAMILIES)}")
    if opts.teacher_views < 1:
        raise UsageError("--teacher-views must be at least 1")
    try:
        augment_config(opts.augment)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available here (no GPU, or a CPU-only PyTorch)")
    from ..models import options

    known = options(opts.family)
    for key in opts.model:
        if key not in known:
            raise UsageError(f"--arch {key}: not an option of the {opts.family} model (it has {', '.join(known)})")
    if "num_points" in opts.model and opts.model["num_points"] != 98:
        raise UsageError(f"--arch num_points={opts.model['num_points']}: facemark's models and packs have 98 points")
    size = opts.model.get("size")
    if size is not None and not (isinstance(size, int) and 16 <= size <= 1024):
        raise UsageError(f"--arch size={size}: give the crop side in pixels, 16 to 1024")
    # Widths, multipliers, counts: none may be 0 or below (readout, where 0 is off, has its own check
    # in the model). Checked before the trial build below, where torch would first warn of an empty layer.
    for key, value in opts.model.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if key != "readout" and any(isinstance(v, (int, float)) and not isinstance(v, bool)
                                    and not (math.isfinite(v) and v > 0) for v in values):
            raise UsageError(f"--arch {key}={value}: must be a positive number")
    if opts.model:  # values of the wrong kind, before any data is loaded (with --init too: same kinds)
        try:
            build_model(opts.family, {**DEFAULTS[opts.family], **opts.model})
        except ValueError as e:
            raise UsageError(str(e)) from None


def upscale_note(pack: Pack, size: int) -> str | None:
    """A pack whose faces have fewer pixels than the model's input trains on enlarged, blurred
    faces, unlike the sharp crops the model will be given: said, with the ``--res`` that avoids it."""
    face = pack.res / pack.margin
    if face >= 0.9 * size:
        return None
    return (f"note: the pack holds each face at {face:.0f} px and the model takes {size} px: it trains on enlarged, "
            f"blurred faces; a pack made with --res {math.ceil(size * pack.margin)} or more keeps them sharp")


def make_trainer(pack: Pack, opts: TrainOptions, log=print) -> Trainer:
    """Check the options, then build the trainer (resuming if asked): ``UsageError`` if they cannot work."""
    from ..errors import UsageError, out_of_memory

    check_options(opts)
    try:
        return Trainer(pack, opts, log=log)
    except (RuntimeError, ValueError) as e:
        if out_of_memory(e):  # (torch's words, with its C++ frames: the machine's limit, not a usage error)
            raise MemoryError("not enough memory to set the run up (--batch, --teacher-views and the model's "
                              "--arch size it)") from None
        raise UsageError(str(e)) from None
