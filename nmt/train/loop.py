"""The training loop: bucketed batches -> loss -> clipped SGD step, with evaluation and checkpoints.

One update, as in the paper:
  1. loss = summed token cross-entropy / batch size in sentences (`loss_normalization`);
  2. backward; s = ||g||_2; if s > 5 then g = 5 g / s;
  3. SGD without momentum at the rate of the halving schedule for the current fractional epoch.
The position in the data is (epoch, batch index): the sampler rebuilds an epoch's batches from
the seed, so a resumed run sees exactly the batches the uninterrupted one would have seen.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from nmt.config import Config, config_from_dict, apply_overrides
from nmt.data.batching import BucketSampler, ParallelData, StaticShapeSampler, collate
from nmt.data.corpus import read_lines
from nmt.data.prepare import read_manifest, tokenizer_files
from nmt.data.tokenizer import Tokenizer
from nmt.decode.translate import search_ids
from nmt.files import write_atomically
from nmt.device import autocast, pick_device
from nmt.errors import CheckpointError, ConfigError, DataError, NmtError, TrainingError
from nmt.evaluate import score
from nmt.model import build_model
from nmt.train import checkpoint
from nmt.train.distributed import first_process, join
from nmt.train.graphs import CapturedSteps
from nmt.train.progress import JsonlLog, Progress
from nmt.train.schedule import clip_gradient_norm, learning_rate


class TrainingInterrupted(NmtError):
    """SIGINT or SIGTERM: a checkpoint was saved; the exit code is 128 + the signal number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Window:
    """Loss and token counts since the last report; the loss stays on the device until read."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.tokens = self.all_tokens = 0
        self.restart_clock()

    def add(self, loss: torch.Tensor, tokens: int, all_tokens: int) -> None:
        """`tokens`: this process's target tokens (what `loss` sums over); `all_tokens`: every process's."""
        self.loss += loss.to(self.loss.device)
        self.tokens += tokens
        self.all_tokens += all_tokens

    def take(self) -> tuple[float, int, int]:
        """(summed loss, its tokens, all processes' tokens) since the last take."""
        loss, tokens, all_tokens = self.loss.item(), self.tokens, self.all_tokens
        self.loss.zero_()
        self.tokens = self.all_tokens = 0
        self.restart_clock()
        return loss, tokens, all_tokens

    def seconds(self) -> float:
        return time.time() - self.started

    def restart_clock(self) -> None:
        self.started = time.time()


@dataclass
class TrainerState:
    """Everything besides tensors that a resumed run needs; saved as trainer.json."""

    step: int = 0
    epoch: int = 0  # the epoch in progress
    batch_in_epoch: int = 0  # batches of that epoch already trained on
    tgt_tokens: int = 0
    train_seconds: float = 0.0
    best_score: Optional[float] = None  # dev BLEU, or minus dev perplexity when BLEU is off
    best_step: Optional[int] = None
    evals_since_best: int = 0  # for early stopping and the plateau schedule
    plateau_lr: Optional[float] = None  # the plateau schedule's current rate
    nonfinite_steps: int = 0  # updates skipped because the loss or gradient was NaN or inf
    oom_steps: int = 0  # batches skipped because they did not fit in GPU memory


class Trainer:
    def __init__(self, config: Config, *, resume_from: Optional[Path] = None, stream=None):
        self.config = config
        t = config.train
        self.run_dir = Path(t.run_dir)
        self.world, self.device = join(t.device)  # a torchrun process group, or one process alone
        prepared = Path(config.data.prepared)
        self.manifest = read_manifest(prepared)
        self.tokenizer_files = tokenizer_files(prepared)
        self.tgt_tokenizer = Tokenizer(self.tokenizer_files[1])
        self.train_data = ParallelData(prepared, "train")
        self.valid_data = ParallelData(prepared, "valid")
        self.valid_refs = read_lines(prepared / "valid.tgt.txt", allow_empty=True)

        torch.manual_seed(t.seed)  # the initial weights depend on the seed alone, not the device
        self.model = build_model(config, self.manifest["src_vocab_size"], self.manifest["tgt_vocab_size"])
        if t.devices:  # the paper's layout: layers (and softmax slices) over several devices
            for name in (*t.devices, *t.softmax_devices):
                pick_device(name)
            self.model.place(list(t.devices), list(t.softmax_devices), t.pipeline_chunk)
            self.device = torch.device(t.devices[0])  # where batches and the embeddings go
        else:
            self.model.to(self.device)
        self.forward = self.model  # what the training step calls; DistributedDataParallel under torchrun
        if self.world.size > 1:
            if t.devices or t.cuda_graphs:
                raise ConfigError("torchrun data parallelism cannot be combined with train.devices or "
                                  "train.cuda_graphs yet: drop them from the config")
            if t.static_shapes and t.batch_size % self.world.size:
                raise ConfigError(f"train.batch_size {t.batch_size} must divide evenly over {self.world.size} processes")
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.model, device_ids=ids)
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        # The fused SGD step reads `found_inf` (the protocol torch's GradScaler uses) and skips the
        # update on the device when it is set: no host round trip to check every step.
        self.optimizer = make_optimizer(self.parameters, t,
                                        capturable=t.cuda_graphs and self.device.type == "cuda")
        self.nonfinite_in_a_row = torch.zeros((), dtype=torch.long, device=self.device)
        self.nonfinite_worst = torch.zeros((), dtype=torch.long, device=self.device)  # longest streak since the last read
        self.nonfinite_total = torch.zeros((), dtype=torch.long, device=self.device)
        self.stop_signal: Optional[int] = None
        if t.static_shapes:
            self.sampler = StaticShapeSampler(self.train_data.src_lens, self.train_data.tgt_lens,
                                              batch_size=t.batch_size, max_tokens=t.max_tokens,
                                              tgt_multiple=t.tgt_multiple, seed=t.seed,
                                              row_multiple=8 * self.world.size)
        else:
            self.sampler = BucketSampler(self.train_data.src_lens, self.train_data.tgt_lens, batch_size=t.batch_size,
                                         max_tokens=t.max_tokens, pool=t.bucket_pool, seed=t.seed)
        self.captured: Optional[CapturedSteps] = None
        self.state = TrainerState()
        if resume_from is not None:
            self._restore(resume_from)
            self.nonfinite_total.fill_(self.state.nonfinite_steps)
        if t.cuda_graphs and self.device.type == "cuda":
            self.captured = CapturedSteps(self.update, self.parameters, self.optimizer, self.device)
        # Only the first process reports and writes; the others train quietly.
        self.progress = Progress(self._planned_steps(), stream if self.world.main else open(os.devnull, "w"))
        self.log = JsonlLog(self.run_dir / "log.jsonl" if self.world.main else None)

    # --- one update -----------------------------------------------------------------------
    def update(self, src, src_lens, tgt_in, tgt_out, divisor, dry_run: bool = False) -> torch.Tensor:
        """Forward, backward, clip, optimizer step; returns the summed loss as a device tensor.

        A NaN or inf in the loss or the gradient skips the update (the weights stay as they were)
        and is counted on the device; `_check_nonfinite` reads the count every few steps. With
        `dry_run` nothing is updated or counted (a CUDA graph's warm-up). Nothing here waits
        for the host, so the same code is captured into CUDA graphs.
        """
        t = self.config.train
        # Autocast casts each weight to bf16 once per step (its cache). Under graph capture the
        # context opens and closes inside the captured step, so the casts are part of every replay
        # and read the weights of that moment.
        with autocast(self.device, t.bf16):
            loss_sum = self.forward(src, src_lens, tgt_in, tgt_out, label_smoothing=t.label_smoothing)
        (loss_sum / divisor).backward()
        norm = clip_gradient_norm(self.parameters, t.clip_norm)
        # Under torchrun the gradient (and so its norm) is the same on every rank, the loss is not:
        # every rank must take the same decision, so only the norm decides there.
        bad = ~torch.isfinite(norm)
        if self.world.size == 1:
            bad |= ~torch.isfinite(loss_sum.detach().to(norm.device))
        self.optimizer.found_inf = (bad | dry_run).float()
        self.optimizer.step()
        if not dry_run:
            self.nonfinite_in_a_row.mul_(bad).add_(bad.long())  # reset on a good step
            torch.maximum(self.nonfinite_worst, self.nonfinite_in_a_row, out=self.nonfinite_worst)
            self.nonfinite_total.add_(bad.long())
        return torch.where(bad, 0.0, loss_sum.detach())

    def divisor(self, indices) -> float:
        """What the summed loss is divided by: the global batch's sentences (the paper: 128) or
        target tokens, over the number of processes (DDP averages their gradients)."""
        if self.config.train.loss_normalization == "sentences":
            return len(indices) / self.world.size
        return float(self.train_data.tgt_lens[indices].sum() + len(indices)) / self.world.size

    def train_step(self, batch, divisor: float) -> torch.Tensor:
        """One eager step on a batch already on the device."""
        loss = self.update(batch.src, batch.src_lens, batch.tgt_in, batch.tgt_out, divisor)
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> Path:
        """Train until the epochs or a budget run out; SIGINT/SIGTERM save a checkpoint first."""
        self.progress.message(f"training on {self.device}: {sum(p.numel() for p in self.parameters):,} parameters, "
                              f"{len(self.train_data):,} training pairs, run folder {self.run_dir}")
        previous = self._catch_signals()
        try:
            stop = self.train_steps()
            self.state.train_seconds += self._window.seconds()
            self.progress.message(f"stopping: {stop}")
            if self._last_saved != self.state.step:
                self._evaluate_and_save()  # still under our handlers: a signal now waits for the save
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if self.stop_signal is not None:
            name = signal.Signals(self.stop_signal).name
            raise TrainingInterrupted(f"{name}: saved a checkpoint at step {self.state.step}; "
                                      f"continue with nmt train --resume {self.run_dir}", 128 + self.stop_signal)
        return self.run_dir

    def train_steps(self) -> str:
        """Updates until the epochs, a budget or a signal stop them; returns why. No final save."""
        t = self.config.train
        self._last_saved = self.state.step if self.state.step else None
        self._window = Window(self.device)
        stop = self._budget_spent()  # a resumed run may have nothing left to do
        if stop:
            return stop
        while True:
            batches = self.sampler.epoch(self.state.epoch)
            if self.captured is not None:
                self._capture_shapes(batches)
            if self.state.batch_in_epoch == 0:
                padding = self.sampler.padding_fraction(batches)
                self.log.write(event="epoch", epoch=self.state.epoch, batches=len(batches),
                               padding_fraction=round(padding, 4))
                self.progress.message(f"epoch {self.state.epoch}: {len(batches)} batches, "
                                      f"{100 * padding:.1f}% of the batch positions are padding")
            for index in range(self.state.batch_in_epoch, len(batches)):
                epoch_progress = self.state.epoch + index / len(batches)
                if epoch_progress >= t.epochs:
                    return f"trained {t.epochs} epochs"
                self._lr = self.current_lr(epoch_progress)
                if self.captured is not None:
                    self.captured.set_lr(self._lr)
                else:
                    for group in self.optimizer.param_groups:
                        group["lr"] = self._lr
                self._step_on(batches[index])
                self.state.step += 1
                self.state.batch_in_epoch = index + 1
                self._after_step(epoch_progress)
                stop = self._budget_spent()
                if stop:
                    return stop
            self.state.epoch += 1
            self.state.batch_in_epoch = 0

    def current_lr(self, epoch_progress: float) -> float:
        t = self.config.train
        if t.schedule == "halving":
            lr = learning_rate(epoch_progress, lr=t.lr, decay_start=t.decay_start_epoch,
                               decay_every=t.decay_every_epochs, factor=t.decay_factor)
        else:
            lr = self.state.plateau_lr if self.state.plateau_lr is not None else t.lr
        if self.state.step < t.warmup_steps:
            lr *= (self.state.step + 1) / t.warmup_steps
        return lr

    def _batch(self, indices):
        """This process's share of a batch, padded, and pinned on CUDA so its copy overlaps the
        previous step. Alone, the share is the whole batch."""
        share = indices[self.world.rank::self.world.size]
        if isinstance(self.sampler, StaticShapeSampler):
            rows, _, width = self.sampler.shape(indices)
            batch = collate(self.train_data, share, rows=rows // self.world.size, tgt_width=width)
        elif len(share) == 0:  # a batch smaller than the world: this rank trains on one empty row
            batch = collate(self.train_data, share, rows=1, tgt_width=1)
        else:
            batch = collate(self.train_data, share)
        return batch.pin_memory() if self.device.type == "cuda" else batch

    def _capture_shapes(self, batches) -> None:
        """Capture a step graph for every batch shape of this epoch not captured yet."""
        first_of_shape = {}
        for indices in batches:
            rows, length, width = self.sampler.shape(indices)
            first_of_shape.setdefault((rows, length, rows, width), indices)  # CapturedSteps.key of its batch
        new = [indices for key, indices in first_of_shape.items() if key not in self.captured.graphs]
        if not new:
            return
        started = time.time()
        for indices in new:
            self.captured.capture(self._batch(indices))
        self.progress.message(f"captured {len(new)} CUDA graphs (one per batch shape) in {time.time() - started:.1f} s")
        self._window.restart_clock()

    def _step_on(self, indices) -> None:
        """Train on one batch; a batch that runs out of GPU memory is skipped."""
        batch, divisor = self._batch(indices), self.divisor(indices)
        try:
            if self.captured is not None:
                step_loss = self.captured(batch, divisor)
            else:
                step_loss = self.train_step(batch.to(self.device, non_blocking=True), divisor)
        except torch.OutOfMemoryError:
            # Skip, rather than split: the batch's sentences come back next epoch, and the step
            # count (and so the schedule and resume position) stays the same as without the error.
            self.optimizer.zero_grad(set_to_none=self.captured is None)
            torch.cuda.empty_cache()
            self.state.oom_steps += 1
            self.progress.message(f"warning: step {self.state.step + 1} skipped: a batch of {batch.size} sentences "
                                  f"x {batch.tgt_in.size(1)} target tokens did not fit in GPU memory "
                                  f"({self.state.oom_steps} skipped so far; lower train.batch_size or data.max_len)")
            return
        global_tokens = int(self.train_data.tgt_lens[indices].sum()) + len(indices)
        self._window.add(step_loss, batch.num_tgt_tokens, global_tokens)
        self.state.tgt_tokens += global_tokens

    def _after_step(self, epoch_progress: float) -> None:
        t = self.config.train
        step = self.state.step
        if step % t.log_every == 0 or step % t.max_nonfinite_in_a_row == 0:
            self._check_nonfinite()
        if step % t.log_every == 0:
            seconds = self._window.seconds()
            self.state.train_seconds += seconds
            loss, tokens, all_tokens = self._window.take()
            self._report(loss / max(tokens, 1), self._lr, all_tokens / max(seconds, 1e-9), epoch_progress)
        if step % t.eval_every == 0:
            self._evaluate_and_save()
            self._window.restart_clock()
        elif step % t.save_every == 0 or (self.stop_signal is not None and self.world.size == 1):
            self._save(best=False)  # (under torchrun the ranks first agree to stop; run() then saves)

    def _check_nonfinite(self) -> None:
        """Read the device counters; stop before a diverged model is trained on any further."""
        t = self.config.train
        in_a_row, total = int(self.nonfinite_worst), int(self.nonfinite_total)
        self.nonfinite_worst.copy_(self.nonfinite_in_a_row)  # a streak still running stays counted
        if total > self.state.nonfinite_steps:
            self.progress.message(f"warning: {total - self.state.nonfinite_steps} update(s) skipped for a NaN or "
                                  f"inf loss or gradient by step {self.state.step}")
        self.state.nonfinite_steps = total
        if in_a_row >= t.max_nonfinite_in_a_row:
            raise TrainingError(f"{in_a_row} updates in a row had a NaN or inf loss or gradient at step "
                                f"{self.state.step}; the weights were not touched by them and the last good "
                                f"checkpoint is {self.run_dir / 'last'}: lower train.lr, check the data, then "
                                f"nmt train --resume {self.run_dir}")

    def _catch_signals(self) -> dict:
        """SIGINT and SIGTERM end the run after the current step, with a checkpoint."""
        def handler(signum, frame):
            if self.stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now, the last checkpoint stays
            self.stop_signal = signum
            self.progress.message(f"received {signal.Signals(signum).name}: saving a checkpoint after this step")

        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}

    def _budget_spent(self) -> Optional[str]:
        t = self.config.train
        if t.max_steps is not None and self.state.step >= t.max_steps:
            return f"reached train.max_steps={t.max_steps}"
        if t.early_stopping_patience is not None and self.state.evals_since_best >= t.early_stopping_patience:
            return f"no better dev score in {t.early_stopping_patience} evaluations (train.early_stopping_patience)"
        out_of_time = t.max_minutes is not None and (
            self.state.train_seconds + self._window.seconds() >= 60 * t.max_minutes)
        if self.world.size > 1:
            # A signal or the clock may reach the ranks at different steps: they agree every
            # log_every steps, so that all of them stop (and the first saves) at the same step.
            if self.state.step % t.log_every:
                return None
            signalled, out_of_time = self.world.any([self.stop_signal is not None, out_of_time], self.device)
            if signalled:
                self.stop_signal = self.stop_signal or signal.SIGTERM  # another rank got it
        if self.stop_signal is not None:
            return f"received {signal.Signals(self.stop_signal).name}"
        if out_of_time:
            return f"reached train.max_minutes={t.max_minutes}"
        return None

    def _planned_steps(self) -> int:
        t = self.config.train
        steps = math.ceil(t.epochs * len(self.sampler.epoch(0)))
        return min(steps, t.max_steps) if t.max_steps else steps

    def _report(self, loss_per_token: float, lr: float, tokens_per_second: float, epoch: float) -> None:
        self.progress.update(step=self.state.step, epoch=epoch, loss=loss_per_token, lr=lr,
                             tokens_per_second=tokens_per_second)
        record = dict(event="train", step=self.state.step, epoch=round(epoch, 4), lr=lr,
                      loss=round(loss_per_token, 5), ppl=round(math.exp(min(loss_per_token, 50)), 3),
                      tgt_tokens_per_second=round(tokens_per_second, 1))
        if self.device.type == "cuda":
            record["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
        self.log.write(**record)

    # --- evaluation and checkpoints --------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        """Dev perplexity over the whole valid split, and BLEU of greedy output on its first sentences."""
        t, d = self.config.train, self.config.decode
        self.model.eval()
        nonempty = [i for i in range(len(self.valid_data)) if self.valid_data.src_lens[i] > 0]
        nonempty.sort(key=lambda i: self.valid_data.src_lens[i])
        total_loss, total_tokens = 0.0, 0
        for start in range(0, len(nonempty), t.batch_size):
            batch = collate(self.valid_data, nonempty[start:start + t.batch_size]).to(self.device)
            with autocast(self.device, t.bf16):
                total_loss += self.model(batch.src, batch.src_lens, batch.tgt_in, batch.tgt_out).item()
            total_tokens += batch.num_tgt_tokens
        result = {"ppl": math.exp(min(total_loss / max(total_tokens, 1), 50))}
        count = min(t.eval_bleu_sentences, len(self.valid_data))
        if count:
            sources = [self.valid_data.sentence("src", i).tolist() for i in range(count)]
            # Greedy search holds one row per sentence: as many sentences per batch as beam search
            # holds rows (decode.batch_size x decode.beam), so evaluation costs few launches.
            found = search_ids(self.model, sources, device=self.device, beam=1, batch_size=d.batch_size * d.beam,
                               max_len_a=d.max_len_a, max_len_b=d.max_len_b, bf16=t.bf16)
            hypotheses = self.tgt_tokenizer.decode([h[0].tokens for h in found])
            result["bleu"] = score(hypotheses, self.valid_refs[:count]).bleu
        self.model.train()
        return result

    def _evaluate_and_save(self) -> None:
        t = self.config.train
        result = self.evaluate()
        dev_score = result.get("bleu", -result["ppl"])  # higher is better
        best = self.state.best_score is None or dev_score > self.state.best_score
        if best:
            self.state.best_score, self.state.best_step, self.state.evals_since_best = dev_score, self.state.step, 0
        else:
            self.state.evals_since_best += 1
            if t.schedule == "plateau" and self.state.evals_since_best % t.plateau_patience == 0:
                current = self.state.plateau_lr if self.state.plateau_lr is not None else t.lr
                self.state.plateau_lr = max(t.min_lr, current * t.decay_factor)
                self.progress.message(f"dev score flat for {t.plateau_patience} evaluations: lr {self.state.plateau_lr:.3g}")
        shown = f"dev ppl {result['ppl']:.2f}" + (f", dev BLEU {result['bleu']:.2f}" if "bleu" in result else "")
        self.progress.message(f"step {self.state.step}: {shown}{' (best so far)' if best else ''}")
        self.log.write(event="valid", step=self.state.step, **{k: round(v, 4) for k, v in result.items()})
        self._save(best=best, score=dev_score)

    def _save(self, *, best: bool, score: Optional[float] = None) -> None:
        self._last_saved = self.state.step
        if not self.world.main:  # one writer: the first process
            return
        self.state.nonfinite_steps = int(self.nonfinite_total)
        checkpoint.save_checkpoint(self.run_dir, model=self.model, optimizer=self.optimizer,
                                   trainer_state=dataclasses.asdict(self.state), config=self.config,
                                   tokenizer_files=self.tokenizer_files, score=score, best=best,
                                   keep_best=self.config.train.keep_best)

    def _restore(self, folder: Path) -> None:
        meta = checkpoint.read_meta(folder)
        have = {Path(p).name: checkpoint.sha256(Path(p)) for p in set(self.tokenizer_files)}
        if meta.get("tokenizers") != have:
            raise CheckpointError(f"{folder} was trained with other tokenizers than the prepared data in "
                                  f"{self.config.data.prepared}: set data.prepared to the folder the run started from")
        checkpoint.load_weights(self.model, folder)
        trainer = checkpoint.read_json(folder / "trainer.json")
        tensors = checkpoint.load_tensors(folder / "trainer.safetensors")
        self.optimizer.load_state_dict(checkpoint.optimizer_from_tensors(tensors, trainer.pop("optimizer")))
        checkpoint.restore_rng(tensors)
        self.state = TrainerState(**{f.name: trainer[f.name] for f in dataclasses.fields(TrainerState)
                                     if f.name in trainer})


def make_optimizer(parameters, t, *, capturable: bool = False) -> torch.optim.Optimizer:
    """The paper's SGD without momentum, or Adam. Both fused: they honour `found_inf` on the device.

    `capturable` (Adam inside CUDA graphs) keeps its step count on the device.
    """
    if t.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=t.lr, betas=tuple(t.adam_betas), fused=True, capturable=capturable)
    return torch.optim.SGD(parameters, lr=t.lr, fused=True)


def start_run(config: Config) -> Path:
    """Check the run folder is free and record the resolved config in it."""
    run_dir = Path(config.train.run_dir)
    if (run_dir / "last").exists():
        raise ConfigError(f"run folder {run_dir} already holds checkpoints: continue it with "
                          f"nmt train --resume {run_dir}, or set train.run_dir to a new folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create run folder {run_dir}: {e.strerror}") from None
    if first_process():  # under torchrun, the first process writes
        write_atomically(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    return run_dir


def train(config: Config, stream=None) -> Path:
    read_manifest(config.data.prepared)  # fail on missing data before the run folder is made
    start_run(config)
    return Trainer(config, stream=stream).run()


def resume(run_dir: Path, overrides: list[str] = (), stream=None) -> Path:
    """Continue the run in `run_dir` from its last checkpoint, with optional config overrides."""
    run_dir = Path(run_dir)
    last = run_dir / "last"
    if not run_dir.is_dir():
        raise CheckpointError(f"cannot resume {run_dir}: no such run folder; check the path, "
                              f"or start a new run with nmt train --config CONFIG")
    if not last.exists():
        raise CheckpointError(f"cannot resume {run_dir}: it holds no checkpoint ({last} is missing); "
                              f"start a new run with nmt train --config CONFIG")
    raw = checkpoint.read_json(last / "config.json")
    raw["train"]["run_dir"] = str(run_dir)
    config = config_from_dict(apply_overrides(raw, list(overrides)))
    trained = checkpoint.load_config(last).model
    changed = [f"model.{k}={v!r} (trained with {getattr(trained, k)!r})"
               for k, v in dataclasses.asdict(config.model).items() if getattr(trained, k) != v]
    if changed:
        raise CheckpointError(f"cannot resume {run_dir} with another architecture: {', '.join(changed)}; "
                              f"the model section cannot change on resume, start a new run instead")
    return Trainer(config, resume_from=last.resolve(), stream=stream).run()
