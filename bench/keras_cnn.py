"""B1's alternative: Keras 3 on its torch backend training the course report's plain CNN.

The network is imagefit's `seed-cnn` layer for layer (conv32-conv32-pool, conv64-conv64-pool, dropout,
dense 512, dropout), compiled the way the Keras examples do: Adam 1e-3, batch 128, Keras defaults
(float32). It trains on the same decoded images and the same train/validation/test split as imagefit
(read through imagefit's cache), until a wall-clock budget would be overrun, and prints one JSON line:

    python -m bench.keras_cnn --dataset ZIP --budget 600
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

STARTED = time.perf_counter()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--budget", type=float, default=600.0, help="seconds, from process start to the test result")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--cache-dir", default="~/.cache/imagefit/cache")
    args = p.parse_args(argv)

    import keras

    from imagefit.config import TrainConfig
    from imagefit.data.pipeline import prepare_data

    keras.utils.set_random_seed(0)
    data = prepare_data(TrainConfig(dataset=args.dataset, image_size=args.image_size, cache_dir=args.cache_dir))

    def arrays(split):
        return split.images.permute(0, 2, 3, 1).numpy(), split.labels.numpy()

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = map(arrays, (data.train, data.val, data.test))
    side, channels = x_train.shape[1], x_train.shape[3]
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((side, side, channels)),
        layers.Rescaling(1 / 255),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(), layers.Dropout(0.25),
        layers.Conv2D(64, 3, padding="same", activation="relu"), layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(), layers.Dropout(0.25),
        layers.Flatten(), layers.Dense(512, activation="relu"), layers.Dropout(0.5),
        layers.Dense(data.num_classes),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    class Budget(keras.callbacks.Callback):
        """Stop when another epoch would not fit; log the wall clock of every epoch."""

        def on_train_begin(self, logs=None):
            self.rows, self.last = [], time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.rows.append({"epoch": epoch + 1, "elapsed": round(now - STARTED, 2),
                              "val_acc": round(float(logs["val_accuracy"]), 6), "train_acc": round(float(logs["accuracy"]), 6)})
            epoch_seconds, self.last = now - self.last, now
            reserve = epoch_seconds * len(x_test) / (len(x_train) + len(x_val))  # the final test pass
            if now - STARTED + epoch_seconds + reserve > args.budget:
                self.model.stop_training = True

    budget = Budget()
    model.fit(x_train, y_train, batch_size=128, epochs=args.max_epochs, validation_data=(x_val, y_val),
              callbacks=[budget], verbose=0, shuffle=True)
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    result = {"test_accuracy": round(float(accuracy), 6), "test_loss": round(float(loss), 6),
              "epochs_run": len(budget.rows), "wall_seconds": round(time.perf_counter() - STARTED, 2),
              "history": budget.rows, "keras": keras.__version__, "backend": keras.backend.backend(),
              "dtype_policy": keras.config.dtype_policy().name, "params": int(model.count_params()),
              "train_images": int(len(x_train))}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
