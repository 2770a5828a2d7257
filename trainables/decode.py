"""Image files -> uint8 batches for `engine.Batches`: in process for small sets, else one worker pool.

A trial makes many passes over image files: each epoch's training and
validation passes, then feature extraction over train, val and test for a
linear probe. A DataLoader per pass started its workers per pass (two forks,
their start-up and the prefetch burst behind it, five times in a one-epoch
trial). Two paths replace it (bench/bench_image_trials.py measures both):

- in process (`IN_PROCESS_MAX_FILES` files or fewer, or `num_workers=0`):
  each file is decoded once per process into `DECODED`, a least-recently-used
  cache bounded in bytes; a pass then only runs the transform. A sweep's
  pack runs its trials one after another in one process, so its trials share
  the decoded images.
- workers (larger sets): one DataLoader per process whose workers persist
  (`persistent_workers`), fed by a batch sampler this module sets before each
  pass, so every pass of every trial in the process reuses the same workers.
  The dataset the workers hold carries only the transforms: file names travel
  with the batch indices, so any trial's files go through the same workers.

Determinism: example i of a pass seeded s is transformed under the torch seed
`sample_seed(s, i)`, whoever decodes it (this process or any worker), with the
caller's RNG state restored afterwards. A trial's batches therefore do not
depend on the path, the number of workers or what is cached, and the ranks of
a data-parallel trial augment their slices as one process would.
"""

from __future__ import annotations

import atexit
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

# Sets of at most this many files decode in process. On 2 CPU cores
# (bench/bench_image_trials.py) a cached in-process pass ran as fast as warm
# workers or faster at every size measured (60 to 1024 JPEGs 320x240 -> 224;
# 434 vs 298 images/s at 512), and a pack of small trials' fixed cost fell to
# ~0.1 s (0.2 s through the pool, whose first trial pays ~1 s of worker
# start-up). Larger sets still go to the workers: a cold in-process pass
# decodes serially (100-400 images/s here: over a second per pass beyond ~256
# files), on a GPU workers overlap decoding with the step, and a large set
# would not fit the cache and would only churn it (256 decoded images of
# 500x375 take ~140 MB).
IN_PROCESS_MAX_FILES = 256

# The decoded-image cache's bound (bytes of pixel data). Images are evicted
# least recently used first; one image larger than the bound is not kept.
DECODED_CACHE_BYTES = 512 * 2**20

Transforms = dict[str, Callable]


def sample_seed(pass_seed: int, position: int) -> int:
    """The torch seed of example `position` in a pass seeded `pass_seed` (distinct for each pair)."""
    return (int(pass_seed) % 2**31) << 32 | (int(position) % 2**32)


def _seeded(transform: Callable, image, seed: int) -> torch.Tensor:
    """`transform(image)` under torch seed `seed`; the caller's global RNG state is kept."""
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        return transform(image)
    finally:
        generator.set_state(state)


def _open_rgb(path: str):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


# ---- in process: the decoded-image cache ---------------------------------------------
class DecodedCache:
    """Decoded RGB pixels (uint8 HxWx3 arrays) by file, least recently used out, at most `max_bytes`.

    A file is keyed by its path, modification time and size, so a file
    rewritten on disk is decoded again.
    """

    def __init__(self, max_bytes: int = DECODED_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes={max_bytes} must be >= 0")
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = self.misses = 0
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0

    def image(self, path: str):
        """The file's image (PIL, RGB), decoded now or taken from the cache."""
        from PIL import Image

        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)
        pixels = self._items.get(key)
        if pixels is not None:
            self.hits += 1
            self._items.move_to_end(key)
            return Image.fromarray(pixels)
        self.misses += 1
        image = _open_rgb(path)
        pixels = np.asarray(image)
        if pixels.nbytes <= self.max_bytes:
            self._items[key] = pixels
            self.nbytes += pixels.nbytes
            while self.nbytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.nbytes -= evicted.nbytes
        return image


DECODED = DecodedCache()


def _in_process(
    files: Sequence[str], transform: Callable, batches: Sequence[torch.Tensor], seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for take in batches:
        positions = take.tolist()
        images = [
            _seeded(transform, DECODED.image(files[i]), sample_seed(seed, i)) for i in positions
        ]
        yield torch.stack(images), torch.as_tensor(positions, dtype=torch.long)


# ---- workers: one persistent pool per process ----------------------------------------
# An index the pool's workers receive: (file, transform name, torch seed, position).
Request = tuple[str, str, int, int]


class _RequestedImages(torch.utils.data.Dataset):
    """What the workers hold: the transforms only; each index names its file and seed."""

    def __init__(self, transforms: Transforms) -> None:
        self.transforms = transforms

    def __getitem__(self, request: Request) -> tuple[torch.Tensor, int]:
        path, mode, seed, position = request
        return _seeded(self.transforms[mode], _open_rgb(path), seed), position


class _Plan:
    """The batch sampler of the pool's DataLoader: the current pass's batches of requests."""

    def __init__(self) -> None:
        self.batches: list[list[Request]] = []

    def __iter__(self) -> Iterator[list[Request]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _count_start(counter, worker_id: int) -> None:
    """worker_init_fn: one more worker process started (runs in the worker)."""
    with counter.get_lock():
        counter.value += 1


_starts = None  # a shared counter of worker processes started by this process's pools


def worker_starts() -> int:
    """How many DataLoader worker processes this process's pools have started (each counts itself)."""
    return 0 if _starts is None else int(_starts.value)


class WorkerPool:
    """One DataLoader with persistent workers; `passes` runs one pass at a time through it."""

    def __init__(self, transforms: Transforms, num_workers: int, pin_memory: bool) -> None:
        import functools
        import multiprocessing

        global _starts
        if _starts is None:
            _starts = multiprocessing.Value("i", 0)
        self.transforms, self.num_workers, self.pin_memory = transforms, num_workers, pin_memory
        self.pid = os.getpid()
        self.plan = _Plan()
        self.current = 0  # the pass now allowed to read the loader
        self.broken = False
        self.loader = torch.utils.data.DataLoader(
            _RequestedImages(transforms),
            batch_sampler=self.plan,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=True,
            worker_init_fn=functools.partial(_count_start, _starts),
            # Its own generator: the workers' base seed must not draw from the
            # global RNG, which seeds dropout and the like (the in-process path
            # draws nothing either).
            generator=torch.Generator().manual_seed(0),
        )

    def fits(self, transforms: Transforms, num_workers: int, pin_memory: bool) -> bool:
        return (
            not self.broken
            and self.transforms is transforms
            and self.num_workers == num_workers
            and self.pin_memory == pin_memory
            and self.pid == os.getpid()  # a forked child cannot use its parent's workers
        )

    def passes(self, requests: list[list[Request]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images, positions) per batch of `requests`; a later pass ends this one.

        The first pass forks the workers; later ones reuse them (an abandoned
        pass's prefetched batches are drained by the next one's start).
        """
        self.current += 1
        mine = self.current
        self.plan.batches = requests
        batches = iter(self.loader)
        while True:
            try:
                x, position = next(batches)
            except StopIteration:
                return
            except Exception:
                # A worker that died (killed, out of memory) or raised leaves the
                # loader unusable: the next pass (a retry, say) gets fresh workers.
                self.broken = True
                raise
            yield x, position
            if self.current != mine:
                raise RuntimeError(
                    "a pass over image files was resumed after a later pass started "
                    "(one pass at a time per process)"
                )

    def close(self) -> None:
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and self.pid == os.getpid():
            iterator._shutdown_workers()
        self.loader._iterator = None


_pool: WorkerPool | None = None


def _shared_pool(transforms: Transforms, num_workers: int, pin_memory: bool) -> WorkerPool:
    """This process's pool for these transforms and settings (a different request replaces it)."""
    global _pool
    if _pool is None or not _pool.fits(transforms, num_workers, pin_memory):
        close_pool()
        _pool = WorkerPool(transforms, num_workers, pin_memory)
    return _pool


def close_pool() -> None:
    """Stop this process's pool workers (a later pass starts new ones)."""
    global _pool
    if _pool is not None:
        _pool.close()
        _pool = None


atexit.register(close_pool)


def _through_pool(
    files: Sequence[str],
    transforms: Transforms,
    mode: str,
    batches: Sequence[torch.Tensor],
    seed: int,
    num_workers: int,
    pin_memory: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    requests = [
        [(files[i], mode, sample_seed(seed, i), i) for i in take.tolist()] for take in batches
    ]
    return _shared_pool(transforms, num_workers, pin_memory).passes(requests)


# ---- the entry point ---------------------------------------------------------------------
def file_batches(
    files: Sequence[str],
    transforms: Transforms,
    batches: Sequence[torch.Tensor],
    *,
    train: bool,
    seed: int | None,
    num_workers: int,
    pin_memory: bool = False,
    input_shape: tuple[int, ...] = (3, 0, 0),
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images NCHW, positions in `files`) for each batch of positions in `batches`.

    `train` picks the "train" transform (augmenting) over "eval"; `seed`
    seeds the per-example augmentation (None: 0). Small sets (at most
    IN_PROCESS_MAX_FILES files) and `num_workers=0` decode in this process
    through the cache; larger ones go through the process's worker pool. An
    empty batch (a data-parallel rank's slice of a short last batch) is an
    empty tensor of `input_shape` images: the rank still takes its step.
    """
    mode = "train" if train else "eval"
    seed = 0 if seed is None else int(seed)
    full = [take for take in batches if len(take)]
    if num_workers == 0 or len(files) <= IN_PROCESS_MAX_FILES:
        decoded = _in_process(files, transforms[mode], full, seed)
    else:
        decoded = _through_pool(files, transforms, mode, full, seed, num_workers, pin_memory)
    for take in batches:
        if len(take):
            yield next(decoded)
        else:
            yield (
                torch.zeros((0, *input_shape), dtype=torch.uint8),
                torch.zeros(0, dtype=torch.long),
            )
