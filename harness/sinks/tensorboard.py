"""TensorBoard: one run per trial in <results>/tb/<run>, hparams in that same run.

`SummaryWriter.add_hparams` would make a sub-run per call and write an experiment
summary holding only that call's metrics; instead the sweep writes one experiment
summary (every hparam's domain, every metric) at tb/, and each trial writes its session
start (hparams, group = its configuration, so seeds group together) and end (status)
into its own run, next to its curves.

TensorBoard gives a session group the hparams of whichever member it reads first and the
mean of its members' metrics. So a session's hparams are its configuration only, never
its seed: a group row then shows the configuration and the mean over its seeds, and each
member is told apart by its own run name, which ends in its seed (`-s1`).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import crc32c
import numpy as np
import torch
from google.protobuf import struct_pb2
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer import record_writer
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from harness.config import Config, TensorBoardConfig
from harness.errors import describe, warn
from harness.hyperparams import BY_NAME, LR
from harness.models import example_input
from harness.sinks.graph import graph_def
from harness.sinks.images import png, prediction_grid

if TYPE_CHECKING:
    from harness.types import TrialResult, TrialSpec

SCALARS = {"train_loss": "train/loss", "val_loss": "val/loss", "val_acc": "val/accuracy",
           "test_loss": "test/loss", "test_acc": "test/accuracy", LR: "train/lr",
           "epoch_s": "time/epoch_s"}
# The HParams table's metrics: validation and test at the best epoch (the one chosen on
# the objective, the checkpoint's), and test at the last.
HPARAM_METRICS = {"hparam/val_acc": "val_acc", "hparam/test_acc": "test_acc",
                  "hparam/final_test_acc": "test_acc", "hparam/final_test_loss": "test_loss"}
# TensorBoard shows about 30 buckets; its default of ~1,500 bin edges costs 3x the time.
HISTOGRAM_BINS = 64
SWEEP = "sweep"  # the hparam naming each run's sweep (its label)
STATUS = {"COMPLETE": api_pb2.STATUS_SUCCESS, "FAIL": api_pb2.STATUS_FAILURE,
          "PRUNED": api_pb2.STATUS_UNKNOWN}


def masked_crc32c(data: bytes) -> int:
    """The checksum of every TensorBoard record. Without TensorFlow, TensorBoard computes
    it in pure Python (about 0.5 ms per kB): that was most of what logging cost a sweep.
    Same value, from the crc32c package's C code."""
    x = crc32c.crc32c(data)
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def setup_tensorboard() -> None:
    """What a process that writes TensorBoard runs sets once, explicitly (the sweep, at
    its start): fast record checksums and quiet writer threads, both process-wide."""
    fast_checksums()
    quiet_writer_threads()


def fast_checksums() -> None:
    """TensorBoard's record writer with masked_crc32c: for every writer of this process."""
    record_writer.masked_crc32c = masked_crc32c


class TensorBoardSink:
    def __init__(self, root: Path, config: Config, examples: tuple[torch.Tensor, torch.Tensor],
                 label: str = "") -> None:
        self.root, self.config = root, config
        self.label = label or config.name  # the sweep's (harness.label)
        self.settings = config.logging.tensorboard or TensorBoardConfig()
        self.examples = examples  # test digits and labels for the prediction grid
        self.writer: SummaryWriter | None = None
        self.model: nn.Module | None = None
        self.spec: TrialSpec | None = None

    def start(self, spec: TrialSpec, model: nn.Module) -> None:
        path = self.root / spec.run
        retire(path)
        self.writer = SummaryWriter(str(path), filename_suffix=attempt_suffix(spec))
        self.model, self.spec = model, spec
        # The configuration, shared by its seeds, in its sweep: never pooled with another
        # sweep's, even of the same config.
        group = f"{self.label}/{spec.run.rsplit('-s', 1)[0]}"
        hparams = trial_hparams(spec, self.config) | {SWEEP: self.label}
        self.writer.file_writer.add_summary(session_start(hparams, group))

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        if "train_loss_step" in metrics:
            self.writer.add_scalar("train/loss_step", metrics["train_loss_step"], step)
            return
        for key, tag in SCALARS.items():
            if key in metrics:
                self.writer.add_scalar(tag, metrics[key], step)
        if self.settings.histograms and self.model is not None:
            self.writer.file_writer.add_summary(model_histograms(self.model), step)

    def finish(self, result: TrialResult) -> None:
        if self.writer is None:
            return
        last = len(result.history)
        for tag, value in hparam_metrics(result).items():
            self.writer.add_scalar(tag, value, last)
        if self.settings.images and self.model is not None and result.history:
            grid, caption = prediction_grid(self.model, *self.examples)
            image = Summary.Image(height=grid.height, width=grid.width, colorspace=3,
                                  encoded_image_string=png(grid))
            self.writer.file_writer.add_summary(
                Summary(value=[Summary.Value(tag="test/predictions", image=image)]), last)
            self.writer.add_text("test/predictions", caption, last)
        self.writer.file_writer.add_summary(session_end(result.state))
        self.close()

    def close(self) -> None:
        """Let go of the trial's run, if one is open (also after an error)."""
        writer, self.writer, self.model = self.writer, None, None
        if writer is not None:
            writer.close()


def attempt_suffix(spec: TrialSpec) -> str:
    """The end of an attempt's event file names: its trial number, so that a dropped
    attempt's events can be told from the rerun's in the same run directory."""
    return f".t{spec.number}"


def discard_attempt(root: Path, spec: TrialSpec) -> None:
    """Remove an attempt's events (its result was dropped: another worker runs the
    point), and its run directory when nothing else is in it."""
    run = root / spec.run
    for events in run.glob(f"events.out.tfevents.*{attempt_suffix(spec)}"):
        events.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run.rmdir()  # only when empty


def retire(run: Path) -> None:
    """A rerun (its first attempt interrupted, or cut off by a fault of the machine)
    starts its run afresh: the earlier attempt's event files go. Hiding their steps is
    not enough: TensorBoard's HParams table takes the session status of the first event
    file it reads, and would call the rerun failed while trials.csv says COMPLETE. A
    TensorBoard already running keeps what it read until it is restarted."""
    for events in run.glob("events.out.tfevents.*"):
        events.unlink(missing_ok=True)


def quiet_writer_threads() -> None:
    """TensorBoard's writer thread re-raises its error (a full disk), which Python prints
    as a traceback; the writer raises the same error on its next call, where the sink's
    guard reports it in one line. So that thread's traceback is left out."""
    previous = threading.excepthook
    if getattr(previous, "quiet_writers", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ != "_AsyncWriterThread":
            previous(args)

    hook.quiet_writers = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def model_histograms(model: nn.Module) -> Summary:
    """Its weights' histograms (and its gradients', when it has them). A member of a
    population (harness.trainers.mirror: `model.population` is `(mirror, row)`) gets its
    row of all members' histograms, binned together in one pass and one sync by the
    first member's sink to ask after each epoch, and kept in the mirror's cache."""
    shared = getattr(model, "population", None)
    if shared is not None:
        mirror, row = shared
        if "histograms" not in mirror.cache:
            stacked = {f"weights/{name}": t for name, t in mirror.stacked().items()}
            mirror.cache["histograms"] = _summaries(stacked)
        return mirror.cache["histograms"][row]
    tensors = {}
    for name, param in model.named_parameters():
        tensors[f"weights/{name}"] = param.detach()
        if param.grad is not None:
            tensors[f"grads/{name}"] = param.grad
    return histograms(tensors)


def histograms(tensors: dict[str, torch.Tensor]) -> Summary:
    """One histogram per tensor, binned on its device and read in one sync; tensors
    with a nan or inf are left out. `SummaryWriter.add_histogram` copies each tensor
    to the host and bins it with numpy: 2.5x the time, and a sync per tensor on a GPU."""
    if not tensors:
        return Summary()
    return _summaries({tag: t.reshape(1, -1) for tag, t in tensors.items()})[0]


def _summaries(stacked: dict[str, torch.Tensor]) -> list[Summary]:
    """One Summary per member of `stacked` ({tag: [K, ...]}), every tensor of every
    member binned in one pass per tag and all read in one sync."""
    members = next(iter(stacked.values())).shape[0]
    read = torch.stack([_binned(t.detach().reshape(members, -1).float())
                        for t in stacked.values()]).double().cpu().numpy()
    low, high = read[..., 1], read[..., 2]  # [tag, member]
    # TensorBoard reads bucket i as [limit[i-1], limit[i]], from min to max.
    steps = np.arange(1, HISTOGRAM_BINS + 1) / HISTOGRAM_BINS
    limits = (low[..., None] + (high - low)[..., None] * steps).tolist()
    heads, counts = read[..., :5].tolist(), read[..., 5:].tolist()
    numels = [t[0].numel() for t in stacked.values()]
    summaries = []
    for k in range(members):
        values = [Summary.Value(tag=tag, histo=HistogramProto(
            min=head[k][1], max=head[k][2], num=numel, sum=head[k][3],
            sum_squares=head[k][4], bucket=count[k], bucket_limit=limit[k]))
            for tag, numel, head, count, limit in zip(stacked, numels, heads, counts, limits,
                                                      strict=True) if head[k][0]]
        summaries.append(Summary(value=values))
    return summaries


def _binned(flat: torch.Tensor) -> torch.Tensor:
    """Per row of `flat` ([K, n]): finite?, min, max, sum, sum of squares, then the
    HISTOGRAM_BINS counts from min to max: [K, 5 + HISTOGRAM_BINS], on its device."""
    k = flat.shape[0]
    low, high = torch.aminmax(flat, dim=1, keepdim=True)
    scale = HISTOGRAM_BINS / (high - low).clamp(min=1e-12)
    bins = ((flat - low) * scale).long().clamp(0, HISTOGRAM_BINS - 1)
    bins += torch.arange(k, device=flat.device).unsqueeze(1) * HISTOGRAM_BINS
    counts = torch.bincount(bins.flatten(), minlength=k * HISTOGRAM_BINS).view(k, -1)
    head = torch.cat([torch.isfinite(flat).all(1, keepdim=True).float(), low, high,
                      flat.sum(1, keepdim=True), flat.square().sum(1, keepdim=True)], 1)
    return torch.cat([head, counts.float()], 1)


def write_experiment(root: Path, config: Config, model: nn.Module, summary_md: str) -> None:
    """Once per sweep at tb/: the experiment summary (all columns of the HParams table),
    the model graph and the model summary as text. A failure (a full disk) is one
    warning: the sweep's results do not depend on it."""
    if any(root.glob("events.out.tfevents.*")):
        return  # a resumed sweep or another worker already wrote it
    try:
        _write_experiment(root, config, model, summary_md)
    except Exception as err:
        warn(f"tensorboard failed writing the experiment summary in {root} ({describe(err)})"
             "; the sweep goes on")


def _write_experiment(root: Path, config: Config, model: nn.Module, summary_md: str) -> None:
    with SummaryWriter(str(root)) as writer:
        writer.file_writer.add_summary(experiment(config))
        settings = config.logging.tensorboard or TensorBoardConfig()
        if settings.graph:
            device = next(model.parameters()).device
            graph = graph_def(model, example_input(config.model, device))
            writer.file_writer.add_event(Event(graph_def=graph.SerializeToString()))
            writer.add_text("model/summary", summary_md)


def trial_hparams(spec: TrialSpec, config: Config) -> dict[str, Any]:
    """Every searched hyperparameter: the configuration, the same for all its seeds. An
    integer is written as text: TensorBoard prints every number to five digits (a batch
    size of 64 as 64.000)."""
    return {key: str(spec.params[key]) if BY_NAME[key].kind is int else spec.params[key]
            for key in config.search.space}


def hparam_metrics(result: TrialResult) -> dict[str, float]:
    """The HParams table's metric columns; those with no finite value are left out."""
    last = result.history[-1] if result.history else {}
    values = {tag: (last if tag.startswith("hparam/final_") else result.best).get(key, math.nan)
              for tag, key in HPARAM_METRICS.items()}
    return {k: v for k, v in values.items() if math.isfinite(v)}


def experiment(config: Config, sweeps: dict[str, tuple[str, ...]] | None = None) -> Summary:
    """The experiment summary: every searched hyperparameter, the sweep, every metric.
    Its domains admit every sweep's values (TensorBoard reads the first summary it
    finds, whichever sweep wrote it): a float's whole interval, a string's every choice;
    an integer (text) and the sweep have none. `sweeps` gives a domain to those (names
    -> values), for a view that knows all its sweeps (harness tensorboard)."""
    sweeps = sweeps or {}
    infos = [_hparam_info(name, sweeps.get(name)) for name in config.search.space]
    infos.append(_string_info(SWEEP, sweeps.get(SWEEP)))
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in
               (*HPARAM_METRICS, "val/accuracy", "val/loss", "test/accuracy", "test/loss",
                "train/loss")]
    exp = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics,
                             name=config.name, time_created_secs=time.time())
    return _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(
        experiment=exp, version=metadata.PLUGIN_DATA_VERSION))


def session_start(hparams: dict[str, Any], group: str) -> Summary:
    info = plugin_data_pb2.SessionStartInfo(group_name=group, start_time_secs=time.time())
    for key, value in hparams.items():
        if isinstance(value, str):
            info.hparams[key].string_value = value
        else:
            info.hparams[key].number_value = float(value)
    return _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(
        session_start_info=info, version=metadata.PLUGIN_DATA_VERSION))


def session_end(state: str) -> Summary:
    info = plugin_data_pb2.SessionEndInfo(status=STATUS[state], end_time_secs=time.time())
    return _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(
        session_end_info=info, version=metadata.PLUGIN_DATA_VERSION))


def _hparam_info(name: str, values: tuple[str, ...] | None) -> api_pb2.HParamInfo:
    h = BY_NAME[name]
    if h.kind is float:
        low, high = h.interval
        return api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_FLOAT64,
                                  domain_interval=api_pb2.Interval(min_value=low,
                                                                   max_value=high))
    return _string_info(name, values or h.choices or None)


def _string_info(name: str, values: tuple[str, ...] | None) -> api_pb2.HParamInfo:
    """A text hyperparameter; with `values`, a checkbox each (in that order)."""
    if values is None:
        return api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_STRING)
    domain = [struct_pb2.Value(string_value=v) for v in values]
    return api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_STRING,
                              domain_discrete=struct_pb2.ListValue(values=domain))


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()))
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])
