"""Splits kept in host memory and fed to the device a chunk at a time, for datasets larger than device memory."""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import jax
import numpy as np

from ssr_jax.data import pad_rows


@dataclasses.dataclass(frozen=True)
class HostChunks:
    """Splits kept in host memory and sent to the device a chunk at a time (`data.device_chunk` examples), for
    datasets larger than device memory.

    Each epoch draws one permutation of the training split (seeded by `data.seed` and the epoch, so a resumed run
    sees the same chunks) and cuts it into `len // chunk` chunks; the remainder sits out that epoch, as Keras drops
    a last partial batch. Inside a chunk every member shuffles on the device, as in the all-on-device mode. The
    test split (and the validation split, when there is one) goes through in chunks of whole padded batches; metrics
    are combined from counts, so they are exact.
    """

    train: dict  # {"image": uint8 [N, H, W, 3], "age": float32 [N]}
    test: dict  # pad_to_batches output: {"image": [B, batch, H, W, 3], "age", "mask": [B, batch]}
    chunk: int
    test_batches_per_chunk: int
    seed: int
    place: Callable[[dict], dict] = lambda chunk: chunk  # host chunk → its copy on the devices, as it is consumed
    val: dict | None = None  # like test

    @classmethod
    def of(cls, host: dict, chunk: int, *, eval_batch_size: int, seed: int,
           place: Callable[[dict], dict] = jax.device_put) -> HostChunks:
        """`host` = {"train": {"image", "age"}, "test": pad_to_batches output[, "val": the same]}; the evaluation
        batches are padded with empty ones (mask 0) to whole chunks, so one compiled evaluation serves every chunk."""
        batches_per_chunk = max(1, chunk // eval_batch_size)
        padded = {split: {name: pad_rows(array, -len(batches["age"]) % batches_per_chunk)
                          for name, array in batches.items()}
                  for split, batches in host.items() if split != "train"}
        return cls(host["train"], padded["test"], chunk, batches_per_chunk, seed=seed, place=place,
                   val=padded.get("val"))

    @property
    def chunks_per_epoch(self) -> int:
        return len(self.train["age"]) // self.chunk

    def host_train_chunks(self, epoch: int) -> Iterator[dict]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train["age"]))
        for start in range(0, self.chunks_per_epoch * self.chunk, self.chunk):
            rows = np.sort(order[start:start + self.chunk])  # sorted: contiguous host reads
            yield {"train": {name: array[rows] for name, array in self.train.items()}}

    def host_test_chunks(self, split: str = "test") -> Iterator[dict]:
        """Chunks of the evaluation split `split` ("test" or "val"), each under the key "test" (the key the
        evaluation program reads)."""
        batches = getattr(self, split)
        for start in range(0, len(batches["age"]), self.test_batches_per_chunk):
            yield {"test": {name: array[start:start + self.test_batches_per_chunk] for name, array in batches.items()}}

    def train_chunks(self, epoch: int) -> Iterator[dict]:
        """Epoch `epoch`'s (0-based) training chunks, on the devices."""
        return map(self.place, self.host_train_chunks(epoch))

    def test_chunks(self, split: str = "test") -> Iterator[dict]:
        """The chunks of evaluation split `split`, on the devices."""
        return map(self.place, self.host_test_chunks(split))

    def abstract(self, name: str) -> dict:
        """Shapes of one chunk of split `name`, for compiling ahead of time."""
        chunk = next(self.host_train_chunks(0) if name == "train" else self.host_test_chunks())
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), chunk)


@dataclasses.dataclass(frozen=True)
class Resident:
    """Splits already on the devices, fed as `HostChunks` are: one chunk per epoch, the whole of both splits (the
    tree the trainer's programs take), so the trainer has one feeding path for both."""

    data: dict

    def train_chunks(self, epoch: int) -> Iterator[dict]:
        del epoch  # every member shuffles the whole split on the device
        yield self.data

    def test_chunks(self, split: str = "test") -> Iterator[dict]:
        # Evaluation reads data["test"]: the validation split is passed under that key (same shapes, same program).
        yield self.data if split == "test" else {**self.data, "test": self.data[split]}

    def abstract(self, name: str) -> dict:
        del name
        return self.data
