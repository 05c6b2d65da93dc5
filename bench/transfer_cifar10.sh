#!/usr/bin/env bash
# Transfer learning on CIFAR-10-JPEG (issue 3) with the offline ImageNet EfficientNet-Lite0.
# Usage: bash bench/transfer_cifar10.sh [zip]
set -euo pipefail
cd "$(dirname "$0")/.."
ZIP=${1:-../shared/data/cifar10/cifar10-jpg.zip}
IMAGEFIT=.venv/bin/imagefit
# features of the frozen backbone at 128 px, computed once, then a linear head trained on them
$IMAGEFIT train --dataset "$ZIP" --model tf_efficientnet_lite0 --pretrained --transfer-strategy linear-probe \
  --epochs 30 --batch-size 256 --optimizer adamw --lr 1e-3 --weight-decay 1e-4 --scheduler cosine \
  --runs-dir bench/out --name cifar10-lite0-probe --no-progress
# every layer trains (backbone at 0.1x the head's rate); 64 px input is what one epoch in ~10 minutes allows
$IMAGEFIT train --dataset "$ZIP" --model tf_efficientnet_lite0 --pretrained --transfer-strategy fine-tune --image-size 64 \
  --epochs 1 --batch-size 64 --optimizer adamw --lr 2e-3 --weight-decay 1e-4 --scheduler onecycle \
  --label-smoothing 0.1 --runs-dir bench/out --name cifar10-lite0-finetune --no-progress
