#!/usr/bin/env bash
# Early stopping on CIFAR-10-JPEG (issue 4): seed-cnn for 50 epochs, without and with early stopping
# (patience 5 on val_loss, best epoch restored); no augmentation, as in the course report. Usage: bash bench/early_stopping_cifar10.sh [zip]
set -euo pipefail
cd "$(dirname "$0")/.."
ZIP=${1:-../shared/data/cifar10/cifar10-jpg.zip}
IMAGEFIT=.venv/bin/imagefit
$IMAGEFIT train --dataset "$ZIP" --model seed-cnn --epochs 50 --augment none --runs-dir bench/out --name cifar10-seed-cnn-50 --no-progress
$IMAGEFIT train --dataset "$ZIP" --model seed-cnn --epochs 50 --augment none --early-stopping --patience 5 --monitor val_loss \
  --runs-dir bench/out --name cifar10-seed-cnn-50-es --no-progress
