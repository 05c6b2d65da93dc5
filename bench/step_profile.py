"""How close a from-scratch airbench training step comes to this CPU's bf16 convolution peak, and where the
rest of its time goes (issue 30, "Measure the limit and the step").

One markdown table, one column per network, side and batch (the planner's usual choices). Its rows:
1. **Peaks.** The best bf16 4096x4096 matmul, and each 3x3 convolution of the real network at the column's
   shape, forward and backward (input and weight gradients in one `convolution_backward`, as autograd calls
   it), on bf16 channels-last tensors: what the step's convolutions could cost at best.
2. **The step, profiled.** The step `imagefit train --recipe fast` runs, written out: a uint8 batch from
   imagefit's TensorLoader (alternating flip), `light` augmentation, bf16 autocast and channels-last, the
   label-smoothed loss, backward, MuonSGD and the triangle schedule, and Lookahead's average every 5 steps.
   Timed without the profiler (best and median of --steps), then profiled over 5 steps (one Lookahead period);
   the profiler's self-CPU times are grouped into categories, shown as ms a step and share of the profiled step.
3. **Conv throughput.** The 3x3 convolutions' FLOPs a step (forward + backward = 3x forward) over the step's
   wall time, against the time the same convolutions take at their measured peaks; and per layer, the layer's
   own time in the profile against its peak.
4. **Lightning's overhead.** The same steps under `lightning.Trainer` with imagefit's ClassifierModule (its
   accuracy metric and logging included), best step against the plain loop's best.

    python -m bench.step_profile                      # about 5 minutes on an idle machine
    python -m bench.step_profile --out step.md        # the table also written to a file
    python -m bench.step_profile --quick              # tiny batches, one repetition: a smoke test only
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, record_function

from imagefit.config import TrainConfig
from imagefit.data.augment import light
from imagefit.data.loader import TensorLoader
from imagefit.data.types import ImageSet
from imagefit.models import create_model
from imagefit.models.loss import classification_loss
from imagefit.train.optim import build_optimizer, build_scheduler

CONFIGS = [("airbench93", 32, 1024), ("airbench93", 64, 256), ("airbench", 32, 1024), ("airbench", 64, 256)]
CL = torch.channels_last
BF16 = torch.bfloat16

# the profile's categories, in the table's order
CONV_FWD, CONV_BWD = "3x3 conv forward", "3x3 conv backward (input + weight grads)"
WHITEN = "whitening conv (2x2), fwd+bwd"
NORM, ACT, POOL, LOSS = "BatchNorm, fwd+bwd", "GELU, fwd+bwd", "max-pool, fwd+bwd", "loss, fwd+bwd"
NEWTON, OPT = "Muon: Newton-Schulz matmuls", "optimizer: the rest (momentum, norms, updates)"
LOOK = "Lookahead average (1 step in 5)"
AUG, COPY, OTHER = "augmentation and batching", "casts, layout conversions, copies", "Python and other"
CATEGORIES = [CONV_FWD, CONV_BWD, WHITEN, NORM, ACT, POOL, LOSS, NEWTON, OPT, LOOK, AUG, COPY, OTHER]
COPIES = {"aten::to", "aten::_to_copy", "aten::copy_", "aten::contiguous", "aten::clone", "aten::to_dense",
          "aten::to_mkldnn", "ToCopyBackward0", "CloneBackward0"}
MATMULS = {"aten::mm", "aten::matmul", "aten::addmm", "aten::bmm"}
BACKWARD_NODE = "autograd::engine::evaluate_function: "


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # progress on stderr: stdout holds the table alone


def best_seconds(fn, repeats: int) -> float:
    """Best of `repeats` timed calls after one untimed one (oneDNN builds its kernel for a shape on the first
    call). The best, not the median: on a shared machine another process can only slow a call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ---- 1. peaks --------------------------------------------------------------------------------------------------

def matmul_peak(n: int, repeats: int) -> float:
    """GFLOP/s of the best n x n bf16 matmul: the ceiling of any bf16 arithmetic here (as bench.run's B5)."""
    a, b = torch.randn(n, n, dtype=BF16), torch.randn(n, n, dtype=BF16)
    return 2 * n**3 / best_seconds(lambda: a @ b, repeats) / 1e9


def conv_layers(model: torch.nn.Module, batch: int, size: int) -> list[dict]:
    """Every Conv2d of the real network in call order, with the shapes one forward pass gives it."""
    layers, hooks = [], []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(lambda m, args, out, name=name: layers.append({
                "name": name.replace("net.", "").replace("groups.", "group "), "x": tuple(args[0].shape),
                "w": tuple(m.weight.shape), "out": tuple(out.shape), "stride": m.stride, "padding": m.padding})))
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        model(torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8).contiguous(memory_format=CL))
    for h in hooks:
        h.remove()
    for layer in layers:  # 2 N Cout Hout Wout Cin k k; the backward (input grad + weight grad) is twice that
        n, c_out, h, w = layer["out"]
        layer["flops"] = 2 * n * c_out * h * w * layer["w"][1] * layer["w"][2] * layer["w"][3]
    return layers


def conv_peak(layer: dict, repeats: int, cache: dict) -> tuple[float, float]:
    """Best forward and backward seconds of one layer's convolution alone, bf16 channels-last tensors (the step's
    autocast casts the weight each call: that cast is timed in the step, as a copy, not here)."""
    k = layer["w"][-1]
    key = (layer["x"], layer["w"], layer["stride"], layer["padding"])
    if key not in cache:
        pad = [k // 2] * 2 if layer["padding"] == "same" else list(layer["padding"])
        x = torch.randn(layer["x"], dtype=BF16).contiguous(memory_format=CL)
        w = torch.randn(layer["w"], dtype=BF16).contiguous(memory_format=CL)
        g = torch.randn(layer["out"], dtype=BF16).contiguous(memory_format=CL)
        fwd = best_seconds(lambda: F.conv2d(x, w, stride=layer["stride"], padding=pad), repeats)
        bwd = best_seconds(lambda: torch.ops.aten.convolution_backward(
            g, x, w, None, list(layer["stride"]), pad, [1, 1], False, [0, 0], 1, [True, True, False]), repeats)
        cache[key] = (fwd, bwd)
    return cache[key]


# ---- 2. the step -----------------------------------------------------------------------------------------------

class PlainLoop:
    """The run's training step without Lightning: the same loader, augmentation, precision, layout, loss,
    optimizer, schedule and Lookahead arithmetic as `imagefit train --recipe fast`."""

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, data: ImageSet, total_steps: int, every: int):
        self.cfg, self.every, self.steps = cfg, every, 0
        self.model = model.to(memory_format=CL).train()
        self.loader = TensorLoader(data, cfg.batch_size, shuffle=True, seed=cfg.seed, alternating_flip=True)
        self.batches = iter(self.loader)
        self.gen = torch.Generator().manual_seed(cfg.seed)  # the run's augmentation generator
        groups = model.net.optimizer_groups(cfg.learning_rate, cfg.weight_decay, cfg.bias_lr_scale)
        self.opt = build_optimizer(cfg, groups)  # MuonSGD: Newton-Schulz on the filter banks, Nesterov SGD on the rest
        self.sched = build_scheduler(cfg, self.opt, total_steps)
        # Lookahead (train/callbacks.py) averages every floating tensor of the state dict: weights and BN statistics
        self.tensors = [t for t in model.state_dict(keep_vars=True).values() if t.is_floating_point()]
        self.average = [t.detach().clone() for t in self.tensors]

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self) -> None:
        with record_function("augment"):
            x, y = self.next_batch()
            x = light(x, self.gen, flip=False)  # the loader mirrored already (--flip alternating)
        with torch.autocast("cpu", dtype=BF16):
            logits = self.model(x.contiguous(memory_format=CL))  # as ClassifierModule.forward
            with record_function("loss"):
                loss = classification_loss(logits, y, None, self.cfg.label_smoothing)
        loss.backward()
        with record_function("muon"):
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        self.steps += 1
        if self.steps % self.every == 0:
            with record_function("lookahead"), torch.no_grad():
                rho = 0.95**5 * 0.5**3  # Lookahead's decay**every * progress**power, half-way through a run
                for average, t in zip(self.average, self.tensors):
                    average.lerp_(t.detach(), 1 - rho)
                    t.copy_(average)


def step_intervals(step, warmup: int, steps: int) -> list[float]:
    """Seconds between consecutive step starts after `warmup` steps (batch fetching included)."""
    starts = []
    for _ in range(warmup + steps + 1):
        starts.append(time.perf_counter())
        step()
    return [b - a for a, b in zip(starts[warmup:], starts[warmup + 1:])]


def chain(ev):
    while ev is not None:
        yield ev
        ev = ev.cpu_parent


def classify(ev, layer_of_seq: dict, loss_seqs: set, layers: list) -> tuple[str, int | None]:
    """(category, conv layer or None) of one profiler event, by its own name and its parents'. Autograd's
    backward nodes carry the sequence number of the forward op that made them: that ties a convolution's
    backward to its layer and the loss's backward to the loss."""
    names = [e.name for e in chain(ev)]
    for label, category in (("augment", AUG), ("lookahead", LOOK), ("loss", LOSS)):
        if label in names:
            return category, None
    if "muon" in names:
        return (NEWTON if MATMULS & set(names) else OPT), None
    for e in chain(ev):  # the innermost name that says what the time is for
        name = e.name
        if name.startswith(BACKWARD_NODE) and e.sequence_nr in loss_seqs:
            return LOSS, None
        if name in COPIES or "reorder" in name:
            return COPY, None
        if name == "aten::convolution" or name.startswith(BACKWARD_NODE + "ConvolutionBackward"):
            layer = layer_of_seq[e.sequence_nr]
            if layers[layer]["w"][-1] == 2:
                return WHITEN, layer
            return (CONV_FWD if name == "aten::convolution" else CONV_BWD), layer
        if name in ("aten::conv2d", "aten::_convolution_mode"):  # autocast's wrapper around the casts and the conv
            return (WHITEN if e.input_shapes[1][-1] == 2 else CONV_FWD), None
        for key, category in (("batch_norm", NORM), ("batchnorm", NORM), ("gelu", ACT), ("max_pool", POOL),
                              ("maxpool", POOL)):
            if key in name.lower():
                return category, None
    return OTHER, None


def profile_step(loop: PlainLoop, layers: list, steps: int) -> tuple[float, dict, dict]:
    """Wall seconds a step over `steps` profiled steps, {category: seconds a step}, {layer: seconds a step}."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            loop.step()
        wall = time.perf_counter() - start
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    forward_convs = [e for e in events if e.name == "aten::convolution"]
    assert len(forward_convs) == steps * len(layers), (len(forward_convs), steps, len(layers))
    layer_of_seq = {}
    for i, e in enumerate(forward_convs):  # forward convolutions run in the network's order, once a layer a step
        layer = i % len(layers)
        assert tuple(e.input_shapes[1]) == layers[layer]["w"], (e.input_shapes, layers[layer])
        layer_of_seq[e.sequence_nr] = layer
    inside = lambda s, e: e.time_range.start <= s.time_range.start <= s.time_range.end <= e.time_range.end
    loss_seqs = {s.sequence_nr for e in events if e.name == "loss" for s in events if s.sequence_nr >= 0 and inside(s, e)}
    by_category, by_layer = defaultdict(float), defaultdict(float)
    for ev in events:
        category, layer = classify(ev, layer_of_seq, loss_seqs, layers)
        by_category[category] += ev.self_cpu_time_total / 1e6 / steps
        if layer is not None:
            by_layer[layer] += ev.self_cpu_time_total / 1e6 / steps
    by_category[OTHER] += wall / steps - sum(by_category.values())  # time no op accounts for: Python, the profiler
    return wall / steps, by_category, by_layer


# ---- 4. Lightning ----------------------------------------------------------------------------------------------

def lightning_intervals(cfg: TrainConfig, model: torch.nn.Module, data: ImageSet, warmup: int, steps: int,
                        every: int) -> list[float]:
    """Seconds between consecutive training-batch starts of a Trainer fit with imagefit's ClassifierModule."""
    import lightning as L

    from imagefit.train.callbacks import Lookahead
    from imagefit.train.module import ClassifierModule

    class Clock(L.Callback):
        def __init__(self):
            self.starts: list[float] = []

        def on_train_batch_start(self, trainer, *args):
            self.starts.append(time.perf_counter())

    clock = Clock()
    module = ClassifierModule(model, cfg, 10, loader_flips=True)
    trainer = L.Trainer(max_steps=warmup + steps + 1, accelerator="cpu", devices=1, precision="bf16-mixed",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        callbacks=[Lookahead(every=every, start=0.0), clock])
    trainer.fit(module, TensorLoader(data, cfg.batch_size, shuffle=True, seed=cfg.seed, alternating_flip=True))
    return [b - a for a, b in zip(clock.starts[warmup:], clock.starts[warmup + 1:])]


# ---- the table -------------------------------------------------------------------------------------------------

def measure(name: str, size: int, batch: int, args, matmul: float, peaks: dict) -> dict:
    """Every row's value for one column."""
    cfg = TrainConfig.from_dict({"recipe": "fast", "model": name, "batch_size": batch, "image_size": size}).with_defaults()
    total = args.warmup + args.steps + 1
    torch.manual_seed(0)
    images = torch.randint(0, 256, (batch * total, 3, size, size), dtype=torch.uint8)
    data = ImageSet(images, torch.randint(0, 10, (len(images),)))

    def network():
        torch.manual_seed(0)
        model = create_model(name, 10, 3, size, [0.5] * 3, [0.25] * 3)
        model.net.init_whitening(model.prepare(images[:5000]))  # as a run does: the filters' values, not their cost
        return model

    model = network()
    layers = conv_layers(model, batch, size)
    note(f"{name}, {size} px, batch {batch}: conv peaks")
    convs = [i for i, layer in enumerate(layers) if layer["w"][-1] == 3]
    seconds = {i: conv_peak(layers[i], args.repeats, peaks) for i in convs}
    note(f"{name}, {size} px, batch {batch}: plain loop")
    loop = PlainLoop(cfg, model, data, 10 * total, args.every)
    plain = step_intervals(loop.step, args.warmup, args.steps)
    note(f"{name}, {size} px, batch {batch}: profile of {args.every} steps")
    profiled, by_category, by_layer = profile_step(loop, layers, args.every)
    note(f"{name}, {size} px, batch {batch}: Lightning")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lit = lightning_intervals(cfg, network(), data, args.warmup, args.steps, args.every)

    flops = sum(3 * layers[i]["flops"] for i in convs)
    ideal = sum(seconds[i][0] + seconds[i][1] for i in convs)  # the 3x3 convolutions at their peaks
    measured = sum(by_layer[i] for i in convs)
    ms, pct = (lambda s: f"{1e3 * s:.1f}"), (lambda f: f"{100 * f:.0f}%")
    spread = lambda times: f"{ms(min(times))} / {ms(statistics.median(times))}"
    best = min(plain)  # the fastest step: on a shared machine another process can only slow a step
    rows = {
        "bf16 matmul peak (GFLOP/s, best of 5 4096x4096 matmuls)": f"{matmul:.0f}",
        "bf16 3x3 conv peak over this step's convs, fwd+bwd (GFLOP/s)": f"{flops / ideal / 1e9:.0f}",
        "3x3 conv work a step, fwd+bwd (GFLOP)": f"{flops / 1e9:.1f}",
        "step wall time, plain loop, no profiler (ms: best / median)": spread(plain),
        "achieved conv GFLOP/s over the best step (of the conv peak)": f"{flops / best / 1e9:.0f} ({pct(ideal / best)})",
        "3x3 convs' own time in the profile: GFLOP/s (of the conv peak)":
            f"{flops / measured / 1e9:.0f} ({pct(ideal / measured)})",
        "profiled step (ms; the shares below are of it)": ms(profiled),
    }
    for category in CATEGORIES:
        rows[f"{category}: ms (share)"] = f"{ms(by_category[category])} ({pct(by_category[category] / profiled)})"
    for n, i in enumerate(convs, 1):
        layer = layers[i]
        rows[f"conv {n}: peak fwd / bwd GFLOP/s"] = (f"{layer['w'][1]}→{layer['w'][0]} at {layer['x'][-1]} px: "
                                                    f"{layer['flops'] / seconds[i][0] / 1e9:.0f} / "
                                                    f"{2 * layer['flops'] / seconds[i][1] / 1e9:.0f}")
        rows[f"conv {n} in the step: GFLOP/s (of its peak)"] = (
            f"{3 * layer['flops'] / by_layer[i] / 1e9:.0f} ({pct(sum(seconds[i]) / by_layer[i])})")
    rows["the same steps under Lightning's Trainer and ClassifierModule (ms: best / median)"] = spread(lit)
    rows["Lightning's overhead (ms a step, best against best; share of the plain step)"] = (
        f"{ms(min(lit) - best)} ({pct((min(lit) - best) / best)})")
    return rows


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny batches, one repetition: a smoke test (numbers mean nothing)")
    p.add_argument("--out", default=None, help="also write the table to this markdown file")
    p.add_argument("--steps", type=int, default=6, help="timed steps of the plain loop and of Lightning")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (oneDNN kernels, momentum buffers)")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions of each peak (the best counts)")
    p.add_argument("--every", type=int, default=5, help="Lookahead's period, and the profiled steps")
    p.add_argument("--threads", type=int, default=2, help="torch's threads: the machine's two cores, as a run uses them")
    args = p.parse_args(argv)
    configs, matmul_n = CONFIGS, 4096
    if args.quick:
        configs, matmul_n = [(m, s, 8 if s == 32 else 2) for m, s, _ in CONFIGS], 256
        # one thread: on a busy machine two threads wait for each other at every small op's barrier
        args.steps, args.warmup, args.repeats, args.every, args.threads = 1, 0, 1, 1, 1
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    note("bf16 matmul peak")
    matmul = matmul_peak(matmul_n, 5 if not args.quick else 1)
    peaks, columns = {}, []
    for name, size, batch in configs:
        columns.append(measure(name, size, batch, args, matmul, peaks))
    heads = [f"{'airbench94' if name == 'airbench' else name}, {size} px, batch {batch}" for name, size, batch in configs]
    lines = [f"| measurement | {' | '.join(heads)} |", f"|---|{'---|' * len(heads)}"]
    lines += [f"| {row} | {' | '.join(c[row] for c in columns)} |" for row in columns[0]]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return table


if __name__ == "__main__":
    main()
