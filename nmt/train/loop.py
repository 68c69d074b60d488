"""The training loop: batches -> loss -> clipped SGD step, with evaluation and checkpoints.

One update, as in the paper:
  1. loss = summed token cross-entropy / batch size in sentences (`loss_normalization`);
  2. backward; s = ||g||_2; if s > 5 then g = 5 g / s;
  3. SGD without momentum at the rate of the halving schedule for the current fractional epoch.
The position in the data is (epoch, batch index): the sampler rebuilds an epoch's batches from
the seed, so a resumed run sees exactly the batches the uninterrupted one would have seen.

The trainer knows its task only through nmt/tasks/base.py's protocol, and hands the rest to
schedule.py (learning rates), stopping.py (budgets, signals, NaN streaks), validate.py (dev
scores), graphs.py (CUDA graphs), setup.py (devices, optimizer) and nmt.checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader

from nmt.checkpoint import check_compatible, open_checkpoint, save_checkpoint
from nmt.checkpoint.load import optimizer_from_tensors, restore_rng
from nmt.checkpoint.store import sha256
from nmt.config import Config, resolve_auto
from nmt.data.batching import Batch
from nmt.device import autocast, idle_cores
from nmt.errors import NmtError
from nmt.model import lstm_kernel
from nmt.tasks import Task, build_task
from nmt.train.distributed import join
from nmt.train.averaging import WeightAverage
from nmt.train.graphs import CapturedSteps, why_not_capturable
from nmt.train.progress import JsonlLog, Progress, Window
from nmt.train.schedule import LearningRateSchedule, set_rate
from nmt.train.setup import check_model_fits, make_optimizer, place
from nmt.train.stopping import NonfiniteGuard, StopRules
from nmt.train.validate import evaluate

log = logging.getLogger("nmt")


def check_lstm_kernel(config: Config, device: torch.device) -> None:
    """model.lstm_kernel: triton, asked for where the kernels cannot run: one clear error."""
    if config.task == "lm" and config.model.lstm_kernel == "triton":
        if device.type != "cuda" or lstm_kernel.triton is None:
            where = "Triton is not installed" if device.type == "cuda" else f"training runs on {device.type}"
            raise NmtError(f"model.lstm_kernel: triton needs a CUDA GPU and Triton, but {where}: "
                           "set model.lstm_kernel: auto (cuDNN's LSTM where the kernels cannot run)")


class TrainingInterrupted(NmtError):
    """SIGINT or SIGTERM: a checkpoint was saved; the exit code is 128 + the signal number. A stop
    that was asked for, not an error: its line says so."""

    prefix, interrupt = "", True

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class TrainerState:
    """Everything besides tensors and the schedule that a resumed run needs; saved in trainer.json."""

    step: int = 0
    epoch: int = 0  # the epoch in progress
    batch_in_epoch: int = 0  # batches of that epoch already trained on
    tgt_tokens: int = 0
    train_seconds: float = 0.0
    best_score: Optional[float] = None  # dev BLEU, or minus dev perplexity when BLEU is off
    best_step: Optional[int] = None
    evals_since_best: int = 0  # for early stopping and the plateau schedule
    nonfinite_steps: int = 0  # updates skipped because the loss or gradient was NaN or inf
    oom_steps: int = 0  # batches skipped because they did not fit in GPU memory
    run_id: str = ""  # drawn when the run starts: checkpoints of one run share it (nmt average checks)
    average_count: int = 0  # steps in the weight average (train.averaging: nt-asgd); 0: not averaging


class _EpochBatches(torch.utils.data.Dataset):
    """What the DataLoader reads: the task's batch for one index array of the sampler."""

    def __init__(self, task: Task):
        self.task = task

    def __getitem__(self, indices) -> Batch:
        return self.task.batch(indices)


class Trainer:
    def __init__(self, config: Config, *, task: Optional[Task] = None, resume_from: Optional[Path] = None,
                 stream=None):
        self._started = time.perf_counter()  # for the log's first_step event
        self.world, device = join(config.train.device)  # a torchrun process group, or one process alone
        # train.static_shapes and train.cuda_graphs: `auto` becomes what this device takes; the
        # resolved config is the one written to config.yaml and into every checkpoint.
        self.config = config = resolve_auto(config, device.type, self.world.size)
        t = config.train
        self.run_dir = Path(t.run_dir)
        if t.threads or device.type == "cpu":  # 0: the cores idle now, on the CPU (PyTorch's default on a GPU)
            torch.set_num_threads(t.threads or idle_cores())  # reported in run()'s first line
        check_lstm_kernel(config, device)
        self.task = task or build_task(config, rank=self.world.rank, processes=self.world.size)
        check_model_fits(self.task, t, device)
        torch.manual_seed(t.seed)  # the initial weights depend on the seed alone, not the device
        self.model = self.task.build_model()
        self.forward, self.device = place(self.model, t, self.world, device)  # forward: DDP under torchrun
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        graphs = t.cuda_graphs and self.device.type == "cuda"
        eager_only = why_not_capturable(self.model) if graphs else None
        if eager_only:
            log.warning(f"warning: train.cuda_graphs is off for this run: {eager_only}; training eagerly")
            graphs = False
        if not graphs:  # model.lstm_kernel: auto; eagerly the kernels' launch per step loses to cuDNN's one call
            for module in self.model.modules():
                if getattr(module, "kernel", None) == "auto":
                    module.kernel = "cudnn"
        self.optimizer = make_optimizer(self.parameters, t, capturable=graphs)
        self.schedule, self.rules, self.sampler = LearningRateSchedule(t), StopRules(t, self.world), self.task.sampler()
        self.averager = WeightAverage(self.parameters)
        self.state = TrainerState(run_id=uuid.uuid4().hex)
        self.resumed_from = resume_from
        if resume_from is not None:
            self._restore(resume_from)
        self.guard = NonfiniteGuard(self.device, total=self.state.nonfinite_steps)
        self.captured: Optional[CapturedSteps] = None
        if graphs:
            self.captured = self.captured_steps()
        # Only the first process reports and writes; the others train quietly.
        self.say = log.info if self.world.main else (lambda message: None)
        self.progress = Progress(self._planned_steps(), stream if self.world.main else open(os.devnull, "w"))
        self.log = JsonlLog(self.run_dir / "log.jsonl" if self.world.main else None, tensorboard=t.tensorboard,
                            first_step=self.state.step)

    # --- one update -----------------------------------------------------------------------
    def update(self, batch: Batch, divisor, dry_run: bool = False) -> torch.Tensor:
        """Forward, backward, clip, optimizer step; returns the summed loss as a device tensor.

        A NaN or inf in the loss or the gradient skips the update (the weights stay as they were)
        and is counted on the device (NonfiniteGuard). With `dry_run` nothing is updated or counted
        (a CUDA graph's warm-up). Nothing here waits for the host, so the same code is captured
        into CUDA graphs.
        """
        t = self.config.train
        # Autocast casts each weight to bf16 once per step (its cache). Under graph capture the
        # context opens and closes inside the captured step, so the casts are part of every replay
        # and read the weights of that moment.
        with autocast(self.device, t.bf16):
            loss_sum = self.forward(batch, label_smoothing=t.label_smoothing)
        (loss_sum / divisor).backward()
        # The paper's rule, s = ||g||_2, g = 5 g / s when s > 5, is torch's clipping (which divides
        # by s + 1e-6); its fused kernels handle gradients on several devices (the layer pipeline).
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, t.clip_norm, foreach=True)
        # Under torchrun the gradient (and so its norm) is the same on every rank, the loss is not:
        # every rank must take the same decision, so only the norm decides there.
        bad = ~torch.isfinite(norm)
        if self.world.size == 1:
            bad |= ~torch.isfinite(loss_sum.detach().to(norm.device))
        self.optimizer.found_inf = (bad | dry_run).float()
        self.optimizer.step()
        if not dry_run:
            self.guard.record(bad)
        return torch.where(bad, 0.0, loss_sum.detach())

    def divisor(self, batch: Batch) -> float:
        """What the summed loss is divided by: the whole batch's sentences (the paper: 128) or
        target tokens, over the number of processes (DDP averages their gradients)."""
        if self.config.train.loss_normalization == "sentences":
            return batch.total_examples / self.world.size
        return float(batch.total_tokens) / self.world.size

    def train_step(self, batch: Batch, divisor: float) -> torch.Tensor:
        """One eager step on a batch already on the device."""
        loss = self.update(batch, divisor)
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> Path:
        """Train until the epochs or a budget run out; SIGINT/SIGTERM save a checkpoint first."""
        threads = f" ({torch.get_num_threads()} threads)" if self.device.type == "cpu" else ""
        self.say(f"training on {self.device}{threads}: {sum(p.numel() for p in self.parameters):,} parameters, "
                 f"{self.task.train_size:,} training examples, run folder {self.run_dir}")
        if self.resumed_from is not None:
            s = self.state
            self.say(f"resuming from {self.resumed_from} at step {s.step}: epoch {s.epoch}, {s.batch_in_epoch} of its "
                     f"batches done, {s.train_seconds / 60:.1f} minutes trained")
        if self.captured is not None:
            self.say(f"CUDA graphs: each batch shape's step is captured the first time it comes up "
                     f"(at most train.max_graphs={self.config.train.max_graphs} shapes)")
        with self.rules.catching_signals():
            stop = self.train_steps()
            self.state.train_seconds += self._window.seconds()
            self.say(f"stopping: {stop}")
            if self._last_saved != self.state.step:
                self._evaluate_and_save()  # still under our handlers: a signal now waits for the save
        if self.rules.signal is not None:
            name = signal.Signals(self.rules.signal).name
            raise TrainingInterrupted(f"stopped by {name}: saved a checkpoint at step {self.state.step}; "
                                      f"continue with nmt train --resume {self.run_dir}", 128 + self.rules.signal)
        return self.run_dir

    def train_steps(self) -> str:
        """Updates until the epochs, a budget or a signal stop them; returns why. No final save."""
        self._last_saved = self.state.step if self.state.step else None
        self._window = Window(self.device)
        stop = self._budget_spent()  # a resumed run may have nothing left to do
        while not stop:
            batches = self.sampler.epoch(self.state.epoch)
            if self.state.batch_in_epoch == 0:
                self._log_epoch(batches)
            for index, batch in self._loader(batches, self.state.batch_in_epoch):
                epoch_progress = self.state.epoch + index / len(batches)
                stop = self.rules.epochs_done(epoch_progress)
                if stop:
                    return stop
                self._lr = self.schedule.rate(self.state.step, epoch_progress)
                set_rate(self.optimizer, self._lr)
                self._step_on(batch)
                self.state.step += 1
                self.state.batch_in_epoch = index + 1
                self._after_step(epoch_progress)
                stop = self._budget_spent()
                if stop:
                    return stop
            self._log_epoch_done(batches)
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
        return stop

    def _loader(self, batches, start: int) -> Iterator[tuple[int, Batch]]:
        """(index, batch) for the epoch's batches from `start` on: collated and, on CUDA, pinned (so
        the copy to the device overlaps the previous step) by a DataLoader over the sampler's order.
        Its own generator keeps the global random state (dropout masks) as it was."""
        loader = DataLoader(_EpochBatches(self.task), sampler=batches[start:], batch_size=None,
                            pin_memory=self.device.type == "cuda", generator=torch.Generator())
        return enumerate(loader, start)

    def _log_epoch(self, batches) -> None:
        self.log.write(event="epoch", epoch=self.state.epoch, batches=len(batches))
        self.say(f"epoch {self.state.epoch}: {len(batches):,} batches")

    def _log_epoch_done(self, batches) -> None:
        """The epoch's padding, once it is trained: the samplers make an epoch's batches as they
        are read (nmt/data/samplers.py), so counting its padding first would build it all before
        the first step (seconds at 12M pairs); at the end it is one more pass beside the epoch's."""
        padding = self.sampler.padding_fraction(batches)
        self.log.write(event="epoch_done", epoch=self.state.epoch, padding_fraction=round(padding, 4))
        self.say(f"epoch {self.state.epoch} done: {100 * padding:.1f}% of its batch positions were padding")

    def captured_steps(self) -> CapturedSteps:
        """This trainer's update, to be captured as CUDA graphs (the CPU tests emulate capture)."""
        return CapturedSteps(self.update, self.parameters, self.optimizer, self.device,
                             max_graphs=self.config.train.max_graphs, kept=self._carried_state_kept)

    @contextlib.contextmanager
    def _carried_state_kept(self):
        """A capture's warm-up runs the model: what it carries from batch to batch is put back after
        (cloned: on the CPU, training_state's .cpu() returns the live tensors themselves)."""
        carried = {name: tensor.clone() for name, tensor in _training_state(self.model).items()}
        yield
        if carried:
            self.model.load_training_state(carried, self.device)

    def _step_on(self, batch: Batch) -> None:
        """Train on one batch; a batch that runs out of GPU memory is skipped."""
        divisor = self.divisor(batch)
        try:
            if self.captured is not None:
                step_loss = self.captured(batch, divisor)
            else:
                step_loss = self.train_step(batch.to(self.device, non_blocking=True), divisor)
        except torch.OutOfMemoryError:
            # Skip, rather than split: the batch's examples come back next epoch, and the step
            # count (and so the schedule and resume position) stays the same as without the error.
            self.optimizer.zero_grad(set_to_none=self.captured is None)
            torch.cuda.empty_cache()
            self.state.oom_steps += 1
            log.warning(f"warning: step {self.state.step + 1} skipped: a batch of {batch.describe()} did not fit "
                        f"in GPU memory ({self.state.oom_steps} skipped so far; lower train.batch_size or "
                        f"data.max_len)")
            return
        self.averager.update()
        self._window.add(step_loss, batch.num_tokens, batch.total_tokens)
        self.state.tgt_tokens += batch.total_tokens
        if self._started is not None:
            self._log_first_step()

    def _log_first_step(self) -> None:
        """The time from the Trainer's start to the end of its first step, in log.jsonl (one wait
        for the device, once)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.log.write(event="first_step", step=self.state.step + 1,
                       seconds=round(time.perf_counter() - self._started, 3), unix_time=round(time.time(), 3))
        self._started = None

    def _after_step(self, epoch_progress: float) -> None:
        t = self.config.train
        step = self.state.step
        if step % t.log_every == 0 or step % t.max_nonfinite_in_a_row == 0:
            self.state.nonfinite_steps = self.guard.check(step, t.max_nonfinite_in_a_row, self.run_dir / "last")
        if step % t.log_every == 0:
            seconds = self._window.seconds()
            self.state.train_seconds += seconds
            loss, tokens, all_tokens = self._window.take()
            self._report(loss / max(tokens, 1), self._lr, all_tokens / max(seconds, 1e-9), epoch_progress)
        if step % t.eval_every == 0:
            self._evaluate_and_save()
            self._window.restart_clock()
        elif step % t.save_every == 0 or (self.rules.signal is not None and self.world.size == 1):
            self._save(best=False)  # (under torchrun the ranks first agree to stop; run() then saves)

    def _budget_spent(self) -> Optional[str]:
        seconds = self.state.train_seconds + self._window.seconds()
        return self.rules.budget_spent(self.state.step, seconds, self.state.evals_since_best, self.device)

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
        if self.captured is not None:
            record.update(graphs=len(self.captured.graphs), capture_seconds=round(self.captured.capture_seconds, 2),
                          eager_steps=self.captured.eager_steps)
        self.log.write(**record)

    # --- evaluation and checkpoints --------------------------------------------------------
    def _evaluate_and_save(self) -> None:
        with self.averager.swapped():  # averaging: the mean of the weights is what is judged and kept
            result = evaluate(self.task, self.model, self.config, self.device)
        dev_score = result.get("bleu", -result["ppl"])  # higher is better
        best = self.state.best_score is None or dev_score > self.state.best_score
        if best:
            self.state.best_score, self.state.best_step, self.state.evals_since_best = dev_score, self.state.step, 0
        else:
            self.state.evals_since_best += 1
            lowered = self.schedule.after_evaluation(self.state.evals_since_best)
            if lowered:
                self.say(lowered)
            t = self.config.train
            if t.averaging == "nt-asgd" and not self.averager.active and self.state.evals_since_best >= t.asgd_patience:
                self.averager.start()
                self.say(f"dev score flat for {t.asgd_patience} evaluations: averaging the weights from step "
                         f"{self.state.step} on (train.averaging: nt-asgd)")
        shown = f"dev ppl {result['ppl']:.2f}" + (f", dev BLEU {result['bleu']:.2f}" if "bleu" in result else "")
        self.say(f"step {self.state.step}: {shown}{' (best so far)' if best else ''}")
        self.log.write(event="valid", step=self.state.step, **{k: round(v, 4) for k, v in result.items()})
        self._save(best=best, score=dev_score)

    def _save(self, *, best: bool, score: Optional[float] = None) -> None:
        self._last_saved = self.state.step
        if not self.world.main:  # one writer: the first process
            return
        self.state.nonfinite_steps = int(self.guard.total)
        self.state.average_count = self.averager.count if self.averager.active else 0
        extra = _training_state(self.model)
        with self.averager.swapped() as trained:  # the checkpoint's weights are the mean; trained ones beside
            extra.update({f"trained.{i}": w.detach().cpu() for i, w in enumerate(trained or [])})
            save_checkpoint(self.run_dir, model=self.model, optimizer=self.optimizer,
                            trainer_state={**dataclasses.asdict(self.state), "schedule": self.schedule.state_dict()},
                            config=self.config, tokenizer_files=self.task.tokenizer_files, score=score, best=best,
                            keep_best=self.config.train.keep_best, extra_tensors=extra)

    def _restore(self, folder: Path) -> None:
        checkpoint = open_checkpoint(folder)
        prepared = {"tokenizers": {p.name: sha256(p) for p in dict.fromkeys(self.task.tokenizer_files)}}
        check_compatible(checkpoint.identity(), prepared, same_model=False, found_name=str(folder),
                         expected_name=f"the prepared data in {self.config.data.prepared}",
                         fix="set data.prepared to the folder the run started from")
        checkpoint.load_into(self.model)
        trainer, tensors = checkpoint.trainer_state()
        self.optimizer.load_state_dict(optimizer_from_tensors(tensors, trainer.pop("optimizer")))
        restore_rng(tensors)
        self.schedule.load_state_dict(trainer.get("schedule") or {})
        self.state = TrainerState(**{f.name: trainer[f.name] for f in dataclasses.fields(TrainerState)
                                     if f.name in trainer})
        self.averager.resume(self.state.average_count, [tensors.get(f"trained.{i}") for i in range(len(self.parameters))])
        carried = {k: v for k, v in tensors.items() if k.startswith("carried.")}
        if carried:
            self.model.load_training_state(carried, self.device)


def _training_state(model) -> dict:
    """What a model carries from batch to batch (a language model's state), if it carries anything."""
    return model.training_state() if hasattr(model, "training_state") else {}
