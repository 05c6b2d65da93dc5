"""B4's reference: the training loop a careful PyTorch user writes by hand, for imagefit's overhead.

Same data (imagefit's decoded cache and split), same model, batch, optimizer, augmentation, precision
and channels-last as an `imagefit train` run, and timed the same way: training batches only, from the
start of each epoch to its last step. Run as a script so it gets a fresh process like the CLI does:

    python -m bench.hand_loop --dataset ZIP --model airbench --recipe fast --epochs 2 --limit-train-batches 20
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from imagefit.config import TrainConfig
from imagefit.data.augment import AUGMENTATIONS
from imagefit.data.pipeline import prepare_data
from imagefit.models import create_model
from imagefit.train.optim import build_optimizer, build_scheduler
from imagefit.runtime import autocast, fp32_depthwise, resolve_precision
from imagefit.train.transfer import default_input_size


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--recipe", default="none")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--augment", default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--limit-train-batches", type=int, default=None)
    p.add_argument("--cache-dir", default="~/.cache/imagefit/cache")
    p.add_argument("--pretrained", action="store_true", help="ImageNet weights at imagefit's input side (a fine-tune)")
    p.add_argument("--transfer-strategy", choices=["fine-tune"], default="fine-tune")
    p.add_argument("--plain-depthwise", action="store_true",
                   help="keep depthwise convolutions in bf16, as a bare timm loop does (imagefit runs them in fp32)")
    args = p.parse_args(argv)
    values = {"dataset": args.dataset, "recipe": args.recipe, "image_size": args.image_size, "cache_dir": args.cache_dir}
    values.update({k: v for k, v in (("model", args.model), ("batch_size", args.batch_size),
                                                     ("augment", args.augment)) if v is not None})
    if args.pretrained:
        values.update(pretrained=True, transfer_strategy=args.transfer_strategy)
    cfg = TrainConfig.from_dict(values).with_defaults()
    torch.manual_seed(cfg.seed)
    precision = resolve_precision(cfg.precision, "cpu")
    data = prepare_data(cfg)
    input_size = default_input_size(data.image_size)[0] if args.pretrained else None
    model = create_model(cfg.model, data.num_classes, data.channels, data.image_size, data.mean, data.std,
                         pretrained=args.pretrained, input_size=input_size)
    if precision == "bf16-mixed" and not args.plain_depthwise:
        fp32_depthwise(model)  # what imagefit does on a CPU
    if hasattr(model.net, "init_whitening"):
        with torch.no_grad():
            model.net.init_whitening(model.prepare(data.train.take(0, 5000)))
    model = model.to(memory_format=torch.channels_last).train()
    params = (model.net.optimizer_groups(cfg.learning_rate, cfg.weight_decay, cfg.bias_lr_scale)
              if hasattr(model.net, "optimizer_groups") else model.parameters())
    optimizer = build_optimizer(cfg, params)
    images, labels = data.train.images, data.train.labels
    steps = len(images) // cfg.batch_size + (len(images) % cfg.batch_size > 0)
    steps = min(steps, args.limit_train_batches or steps)
    scheduler = build_scheduler(cfg, optimizer, steps * args.epochs)
    augment = AUGMENTATIONS[cfg.augment]
    gen = torch.Generator().manual_seed(cfg.seed)
    seconds, seen = 0.0, 0
    for epoch in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(len(images))
        for i in range(steps):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x, y = images[idx], labels[idx]
            if augment is not None:
                x = augment(x, gen)
            x = x.contiguous(memory_format=torch.channels_last)
            with autocast(precision, "cpu"):
                loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            seen += len(y)
        seconds += time.perf_counter() - start
    result = {"model": cfg.model, "input_size": input_size, "batch_size": cfg.batch_size, "precision": precision, "images": seen,
              "train_seconds": round(seconds, 3), "train_images_per_second": round(seen / seconds, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
