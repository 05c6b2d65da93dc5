#!/usr/bin/env bash
# From scratch on CIFAR-10-JPEG (issue 2): the course report's plain CNN, then ResNet-9.
# Usage: bash bench/scratch_cifar10.sh [path/to/cifar10-jpg.zip]
set -euo pipefail
cd "$(dirname "$0")/.."
ZIP=${1:-../shared/data/cifar10/cifar10-jpg.zip}
IMAGEFIT=.venv/bin/imagefit
$IMAGEFIT train --dataset "$ZIP" --model seed-cnn --epochs 15 --runs-dir bench/out --name cifar10-seed-cnn --no-progress
$IMAGEFIT train --dataset "$ZIP" --model resnet9-small --epochs 10 --batch-size 256 --optimizer sgd --lr 0.2 \
  --weight-decay 5e-4 --scheduler onecycle --label-smoothing 0.1 --runs-dir bench/out --name cifar10-resnet9-small --no-progress
