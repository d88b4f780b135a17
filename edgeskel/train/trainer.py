"""Train or fine-tune a recognizer: resumable, with optional knowledge distillation.

Why it looks like this: reference training on a 2-core CPU takes an hour and a session can end
at any moment, so every epoch writes `last.pt` (model + optimiser + scheduler + RNG state)
atomically and a rerun with the same `out_dir` resumes from it. The best epoch by validation
top-1 is kept as a self-describing edgeskel checkpoint (`best.ckpt`). Under `torchrun` the same
code runs DDP (one process per GPU/CPU worker; see `distributed.py`); only rank 0 writes files.
A non-finite loss stops training with a `TrainingDivergedError` before the step is applied, so
`best.ckpt` and `last.pt` still hold the last good weights.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from edgeskel.checkpoint import ModelSpec, save_checkpoint
from edgeskel.errors import ConfigError, TrainingDivergedError
from edgeskel.io import atomic_write_json, torch_load_safe, torch_save_atomic
from edgeskel.train import distributed as dist_
from edgeskel.train.config import TrainConfig
from edgeskel.train.device import Runtime, amp_dtype, describe, loader_settings, resolve_device
from edgeskel.train.metrics import accuracy_summary, predict_logits

RESUME_FORMAT = "edgeskel-train-state/1"


# Settings that change how fast training runs, not what it computes: a rerun with another
# --threads continues the interrupted run instead of starting over.
_RUNTIME_ONLY = ("threads",)


def _resume_key(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _RUNTIME_ONLY}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on norms, biases and learnable graph/gating parameters (1-D or tiny).
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay, stepped per iteration."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton KD: KL(softmax(t/T) || softmax(s/T)) * T^2."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="batchmean") * t * t


def fit(
    model: nn.Module,
    spec: ModelSpec,
    train_set: Dataset,
    val: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig,
    out_dir: str | Path,
    teacher: nn.Module | None = None,
    resume: bool = True,
    extra: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    quiet: bool = False,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """Train `model` on `train_set`, validate on `val` (preprocessed arrays, or a list of clips of
    their own lengths for native-rate training) each epoch.

    `cfg.batch_size` is the global batch: under torchrun each of the W ranks takes 1/W of every
    batch a 1-process run would take. Returns {"best_top1", "best_epoch", "history",
    "best_checkpoint", "wall_time_s", "device", "world_size", "amp"}; every rank returns the same
    history (metrics are gathered over ranks) and only rank 0 writes files.
    """
    runtime = runtime or Runtime()
    out = Path(out_dir)
    device = resolve_device(runtime.device)
    rank, world = dist_.init(device)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + rank)
    dist_.per_rank_batch(cfg.batch_size)  # the global batch must split evenly over the ranks
    if len(train_set) < world:  # type: ignore[arg-type]
        raise ConfigError(f"{len(train_set)} training samples cannot be split over {world} processes")  # type: ignore[arg-type]

    base_model = model.to(device)
    if world > 1:
        if device.type == "cuda":  # SyncBatchNorm is GPU-only in PyTorch; on CPU each rank keeps its own BN stats
            base_model = nn.SyncBatchNorm.convert_sync_batchnorm(base_model)
        model = nn.parallel.DistributedDataParallel(base_model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        model = base_model
    gen = torch.Generator().manual_seed(cfg.seed)
    drop_last = len(train_set) > cfg.batch_size  # type: ignore[arg-type]
    make_batches = getattr(train_set, "batch_sampler", None)  # clips of their own lengths bring their own
    batches = make_batches(gen, cfg.batch_size, drop_last, rank, world) if make_batches else None
    if batches is None:
        batches = dist_.GlobalBatchSampler(RandomSampler(train_set, generator=gen), cfg.batch_size, drop_last, rank, world)  # type: ignore[arg-type]
    loader = DataLoader(train_set, batch_sampler=batches, generator=gen, collate_fn=getattr(train_set, "collate", None),
                        **loader_settings(device, runtime.workers, world))
    opt = make_optimizer(base_model, cfg)
    sched = make_scheduler(opt, cfg, len(loader))
    dtype = amp_dtype(device, runtime.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    if teacher is not None:
        teacher.to(device).eval()

    state_path = out / "last.pt"
    history: list[dict[str, Any]] = []
    start_epoch, best_top1, best_epoch, elapsed_before = 0, -1.0, -1, 0.0
    if resume and state_path.exists():
        st = torch_load_safe(state_path)
        if st.get("format") != RESUME_FORMAT or _resume_key(st.get("config") or {}) != _resume_key(cfg.model_dump()):
            if not quiet and rank == 0:
                print(f"{state_path}: written by a different training configuration; starting over")
        else:
            base_model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            if st.get("scaler"):
                scaler.load_state_dict(st["scaler"])
            torch.set_rng_state(st["torch_rng"])
            gen.set_state(st["loader_rng"])
            start_epoch, best_top1, best_epoch = st["epoch"], st["best_top1"], st["best_epoch"]
            history, elapsed_before = list(st["history"]), float(st["elapsed"])
            if not quiet and rank == 0:
                print(f"resuming from {state_path} at epoch {start_epoch}/{cfg.epochs} (best top-1 {best_top1:.2f})")

    val_x, val_y = val
    val_part = dist_.shard(len(val_x))
    if not isinstance(val_x, np.ndarray):  # clips of their own lengths (a list)
        val_x = np.empty(len(val_x), dtype=object)
        val_x[:] = list(val[0])
    where = describe(device, runtime.amp) + (f" x {world} processes" if world > 1 else "")
    t0 = time.perf_counter()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        disable=quiet or rank != 0)
    from edgeskel.progress_log import epoch_line, plain_progress, print_line

    plain = plain_progress()
    with progress:
        task = progress.add_task(f"train ({where})", total=cfg.epochs * len(loader), completed=start_epoch * len(loader),
                                 status="")
        for epoch in range(start_epoch, cfg.epochs):
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)  # fresh, reproducible augmentation per epoch
            model.train()
            t_epoch = time.perf_counter()
            loss_sum, correct, seen = 0.0, 0, 0
            for step, (xb, yb, *teacher_view) in enumerate(loader, start=1):
                # a teacher view (dataset teacher_cfg): the clip as the teacher saw it in training
                xt = teacher_view[0].to(device, non_blocking=True).float() if teacher_view else None
                xb = xb.to(device, non_blocking=True).float()
                yb = yb.to(device, non_blocking=True).long()
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    logits = model(xb)
                    loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
                    if teacher is not None and cfg.kd_weight > 0:
                        with torch.no_grad():
                            t_logits = teacher(xb if xt is None else xt)
                        loss = (1 - cfg.kd_weight) * loss + cfg.kd_weight * distillation_loss(
                            logits.float(), t_logits.float(), cfg.kd_temperature)
                loss_value = loss.item()
                if not dist_.all_true(math.isfinite(loss_value), device):
                    raise _diverged(epoch + 1, step, len(loader), loss_value, out, best_epoch, opt, dtype)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                loss_sum += loss_value * len(yb)
                correct += int((logits.argmax(1) == yb).sum())
                seen += len(yb)
                progress.update(task, advance=1, status=f"ep {epoch + 1}/{cfg.epochs} loss {loss_sum / seen:.3f}")
            loss_sum, correct, seen = dist_.all_sum([loss_sum, correct, seen], device)
            epoch_s = time.perf_counter() - t_epoch
            val_logits = dist_.gather_rows(predict_logits(base_model, val_x[val_part], cfg.eval_batch_size, device))
            metrics = accuracy_summary(val_logits, val_y)
            row = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "train_top1": 100.0 * correct / max(seen, 1),
                   "val_top1": metrics["top1"], "val_top5": metrics["top5"], "lr": opt.param_groups[0]["lr"],
                   "train_samples": int(seen), "val_samples": int(len(val_logits)),
                   "epoch_train_s": round(epoch_s, 2), "time_s": round(elapsed_before + time.perf_counter() - t0, 2)}
            history.append(row)
            improved = metrics["top1"] > best_top1
            if improved:
                best_top1, best_epoch = metrics["top1"], epoch + 1
            if rank == 0:
                if improved:
                    save_checkpoint(out / "best.ckpt", base_model, spec,
                                    extra={**(extra or {}), "val": metrics, "epoch": epoch + 1, "train_config": cfg.model_dump()})
                torch_save_atomic({
                    "format": RESUME_FORMAT, "config": cfg.model_dump(), "epoch": epoch + 1,
                    "model": base_model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "torch_rng": torch.get_rng_state(), "loader_rng": gen.get_state(),
                    "best_top1": best_top1, "best_epoch": best_epoch, "history": history,
                    "elapsed": elapsed_before + time.perf_counter() - t0,
                }, state_path)
                atomic_write_json(out / "history.json", history)
            dist_.barrier()  # the others wait until rank 0 has written best.ckpt / last.pt
            progress.update(task, status=f"ep {epoch + 1}/{cfg.epochs} val top-1 {metrics['top1']:.1f} (best {best_top1:.1f})")
            if plain and not quiet and rank == 0:  # no terminal: the bar draws nothing, so one line per epoch
                print_line(epoch_line(row, cfg.epochs, best_top1, best_epoch))
            if on_epoch:
                on_epoch(row)
    if cfg.epochs == 0:  # nothing to train: still write a checkpoint of the given weights
        logits = dist_.gather_rows(predict_logits(base_model, val_x[val_part], cfg.eval_batch_size, device))
        metrics = accuracy_summary(logits, val_y)
        best_top1, best_epoch = metrics["top1"], 0
        if rank == 0:
            save_checkpoint(out / "best.ckpt", base_model, spec, extra={**(extra or {}), "val": metrics, "epoch": 0})
    dist_.barrier()
    return {
        "best_top1": best_top1,
        "best_epoch": best_epoch,
        "history": history,
        "best_checkpoint": str(out / "best.ckpt"),
        "wall_time_s": round(elapsed_before + time.perf_counter() - t0, 2),
        "device": str(device),
        "world_size": world,
        "amp": str(dtype).replace("torch.", "") if dtype else None,
    }


def _diverged(epoch: int, step: int, steps: int, loss: float, out: Path, best_epoch: int,
              opt: torch.optim.Optimizer, dtype: torch.dtype | None) -> TrainingDivergedError:
    """The error for a non-finite loss: where it happened and which files still hold good weights."""
    kept = [f"{out / 'best.ckpt'} (epoch {best_epoch})"] if best_epoch > 0 else []
    if epoch > 1 and (out / "last.pt").exists():
        kept.append(f"{out / 'last.pt'} (end of epoch {epoch - 1})")
    lr = opt.param_groups[0]["lr"]
    hint = f"lower the learning rate (now {lr:.3g})" + (" or train without mixed precision (--no-amp)" if dtype else "")
    keep = "kept: " + ", ".join(kept) if kept else "no checkpoint was written before this"
    value = "NaN" if math.isnan(loss) else str(loss)
    return TrainingDivergedError(f"training diverged at epoch {epoch}, step {step}/{steps}: loss is {value}; "
                                 f"{keep}; {hint}")
