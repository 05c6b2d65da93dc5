"""The data audit: class counts, image sizes and modes, exact and near duplicates, label conflicts, leaks.

Run on the decoded uint8 images of train/val/test after imagefit carved its splits and before anything
becomes features, so a linear probe or a cached trunk is audited on the same pictures as a full fine-tune.
Every split is read with `ImageSet.take` in chunks, so a memory-mapped (streamed) set stays on disk.

Exact duplicates: a SHA-1 digest of each decoded image's bytes (identical pixels, whatever the file).

Near duplicates: a difference hash (dHash: 9x9 grey thumbnail, one bit per left/right comparison in 8
rows, 64 bits), computed here in torch/numpy on whole chunks. `imagehash.dhash` computes the same kind of
hash but needs one PIL image per picture: measured on a busy two-core machine, tensor -> PIL -> imagehash.dhash
took 6.1 s for 50,000 32-px images and 5.0 s for 13,000 128-px ones, against 2.2 s and 1.5 s for the
hashes and thumbnails here (tests/test_audit.py holds no timing; the numbers are in the data audit
commit). The library would have been the audit's whole budget, so it is not a dependency. Two
images are near duplicates when their hashes differ in at most NEAR_BITS bits and their 9x9 colour
thumbnails differ by at most NEAR_THUMB grey levels on average. The thumbnail test does the real work: it
keeps flat or low-texture images of different colours (whose dHash is all zeros) apart, and the hash
finds the candidates. Measured on smooth synthetic photos, a copy re-encoded as JPEG (quality 70) at 70%
of the size differs from the original, once both are decoded at the run's side, by at most 5 bits and
1.9 grey levels at 32-128 px (5 grey levels at 16 px, where the thumbnail is the whole image); distinct
handwritten digits (scikit-learn's 8x8 set, all 1,797) have no pair within both limits.

Candidate pairs come from multi-index hashing: split the 64 bits into NEAR_BITS + 1 blocks; two hashes at
most NEAR_BITS apart agree exactly on at least one block (pigeonhole), so only images sharing a block
value are compared. The bits are dealt to the blocks by their entropy on this data, so the constant bits
of a data set with blank borders (MNIST) do not pile every image into one bucket; where a bucket is still
crowded, its images are compared with their nearest neighbours in hash order only (near_pairs), so the
search stays about linear in the number of images, and data_audit.md says how many images that limited.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from .types import ImageSet

SPLITS = ("train", "val", "test")
NEAR_BITS = 6  # dHash bits two near duplicates may differ in
NEAR_THUMB = 3.0  # mean absolute difference of the 9x9 colour thumbnails, in grey levels (0..255)
CHUNK = 2048  # images read at once: a streamed set is never read whole
NAMED = 10  # leaks and conflicts named in the CLI line, metrics.json and the report; the counts are always whole
LISTED = 30  # groups listed in data_audit.md
BUCKET_CAP = 64  # near-duplicate search: a bucket up to this size is compared pair by pair...
WINDOW = 32  # ...a bigger one, each image with this many neighbours in hash order (see near_pairs)


# ---- hashing ------------------------------------------------------------------------------------
def small_images(images: torch.Tensor) -> np.ndarray:
    """9x9 area thumbnails (N, C, 9, 9) float32 of uint8 images, the one pass over the pixels that both the
    dHash and the thumbnail test use. Sides over 96 px are first sampled every side//48 pixels: the
    uint8-to-float pass over 128-px images cost more than all the rest, and each of the 81 cells still
    averages dozens of samples. What follows is numpy: on thumbnails this small, torch's thread pool
    costs more than the arithmetic (measured 3x slower on a busy two-core machine)."""
    step = images.shape[-1] // 48 if images.shape[-1] > 96 else 1
    if step > 1:
        images = images[:, :, ::step, ::step]
    return F.adaptive_avg_pool2d(images.float(), (9, 9)).numpy()


def dhash(small: np.ndarray) -> np.ndarray:
    """64-bit difference hashes (uint64) from 9x9 thumbnails: grey, the first 8 rows, a bit set where a
    cell is brighter than its left neighbour."""
    grey = 0.299 * small[:, 0] + 0.587 * small[:, 1] + 0.114 * small[:, 2] if small.shape[1] == 3 else small.mean(1)
    bits = (grey[:, :8, 1:] > grey[:, :8, :-1] + 1e-3).reshape(len(small), 64)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def digests(images: torch.Tensor) -> list[bytes]:
    """One SHA-1 digest per image of its uint8 pixels: equal digests, identical images. SHA-1 measured
    faster here than BLAKE2b and MD5; it finds accidental copies, nobody forges a collision in a data set."""
    a = np.ascontiguousarray(images.numpy())
    return [hashlib.sha1(a[i], usedforsecurity=False).digest() for i in range(len(a))]


def hash_split(data: ImageSet, chunk: int = CHUNK) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """(digests, dHashes, thumbnails (N, C*81) uint8) of every image of a split, read chunk by chunk."""
    exact, perceptual, thumbs = [], [], []
    for start in range(0, len(data), chunk):
        x = data.take(start, start + chunk)
        exact += digests(x)
        small = small_images(x)
        perceptual.append(dhash(small))
        thumbs.append(np.rint(small).astype(np.uint8).reshape(len(x), -1))
    if not perceptual:
        c = int(data.images.shape[1])
        return [], np.zeros(0, np.uint64), np.zeros((0, c * 81), np.uint8)
    return exact, np.concatenate(perceptual), np.concatenate(thumbs)


# ---- grouping -----------------------------------------------------------------------------------
def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of n nodes joined by `pairs` (K, 2): a root id per node."""
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def _blocks(hashes: np.ndarray, parts: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The 64 bit positions dealt into `parts` blocks, each with about the same entropy on these hashes,
    and the hashes' bits (N, 64)."""
    bits = np.unpackbits(hashes.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)
    p = bits.mean(0).clip(1e-9, 1 - 1e-9)
    entropy = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    blocks, load = [[] for _ in range(parts)], np.zeros(parts)
    for bit in np.argsort(-entropy, kind="stable"):
        room = [b for b in range(parts) if len(blocks[b]) < -(-64 // parts)]
        b = min(room, key=lambda k: (load[k], len(blocks[k])))
        blocks[b].append(int(bit))
        load[b] += entropy[bit]
    return [np.array(sorted(b)) for b in blocks], bits


def _close(a: np.ndarray, b: np.ndarray, hashes: np.ndarray, thumbs: np.ndarray, max_bits: int,
           max_thumb: float) -> np.ndarray:
    """The candidate pairs (a[k], b[k]) that pass both tests, as (K, 2) with the smaller index first."""
    close = np.bitwise_count(hashes[a] ^ hashes[b]) <= max_bits
    a, b = a[close], b[close]
    keep = np.abs(thumbs[a].astype(np.int16) - thumbs[b].astype(np.int16)).mean(1) <= max_thumb
    return np.stack([np.minimum(a, b)[keep], np.maximum(a, b)[keep]], 1)


def near_pairs(hashes: np.ndarray, thumbs: np.ndarray, max_bits: int | None = None,
               max_thumb: float | None = None, work: dict | None = None) -> tuple[np.ndarray, int]:
    """(index pairs (K, 2), i < j, of near-duplicate images: dHash distance <= max_bits and mean thumbnail
    difference <= max_thumb; the number of images whose search was limited).

    Every pair within a bucket of up to BUCKET_CAP images is compared. A bigger bucket (many images alike
    in one block of bits: blank-bordered digits) would cost its size squared, so there each image is
    compared with its WINDOW neighbours in the order of the other blocks' bits instead, and counted as limited.
    So at most n * (max_bits + 1) * max(BUCKET_CAP - 1, 2 * WINDOW) pairs are compared, linear in n; `work`, when
    given, gets that count as work["compared"] (tests/test_audit.py checks it grows with n, not n squared)."""
    max_bits = NEAR_BITS if max_bits is None else max_bits
    max_thumb = NEAR_THUMB if max_thumb is None else max_thumb
    n = len(hashes)
    if n < 2:
        return np.zeros((0, 2), np.int64), 0
    blocks, bits = _blocks(hashes, max_bits + 1)
    found, limited, compared = [], np.zeros(n, dtype=bool), 0
    for b, block in enumerate(blocks):
        keys = bits[:, block].astype(np.int64) @ (1 << np.arange(len(block), dtype=np.int64))
        # within a bucket, the order of the other blocks' bits starting with the next block: each block's
        # buckets rank by different bits first, so a pair differing in a few bits is adjacent in some of them
        rest = np.concatenate(blocks[b + 1:] + blocks[:b] + [np.zeros(0, np.int64)]).astype(np.int64)
        rank = bits[:, rest].astype(np.int64) @ (1 << np.arange(len(rest) - 1, -1, -1, dtype=np.int64))
        order = np.lexsort((rank, keys))  # by block value, then by the other bits
        sorted_keys = keys[order]
        edges = np.flatnonzero(np.diff(sorted_keys)) + 1
        starts, stops = np.r_[0, edges], np.r_[edges, n]
        sizes = stops - starts
        for size in np.unique(sizes[(sizes >= 2) & (sizes <= BUCKET_CAP)]):
            members = order[starts[sizes == size][:, None] + np.arange(size)]  # (buckets, size)
            ii, jj = np.triu_indices(size, 1)
            compared += len(members) * len(ii)
            for rows in np.array_split(np.arange(len(members)), max(1, len(members) * len(ii) // 2_000_000)):
                found.append(_close(members[rows][:, ii].ravel(), members[rows][:, jj].ravel(), hashes, thumbs,
                                    max_bits, max_thumb))
        big = sizes > BUCKET_CAP
        if big.any():
            in_big = np.repeat(big, sizes)  # positions of `order` that lie in a crowded bucket
            limited[order[in_big]] = True
            bucket = np.repeat(np.arange(len(sizes)), sizes)
            for k in range(1, WINDOW + 1):
                ok = in_big[:-k] & (bucket[:-k] == bucket[k:])
                compared += int(ok.sum())
                found.append(_close(order[:-k][ok], order[k:][ok], hashes, thumbs, max_bits, max_thumb))
    pairs = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), np.int64)
    if work is not None:
        work["compared"] = compared
    return pairs, int(limited.sum())


# ---- the audit ----------------------------------------------------------------------------------
def _name(split: str, index: int, files: list[str] | None) -> str:
    return files[index] if files is not None else f"{split} image {index}"


def _where(image: dict) -> str:
    """'train/dog/2.png', or 'dog/2.png (val)' when the file's path does not say its split."""
    return image["file"] if image["file"].startswith(image["split"]) else f"{image['file']} ({image['split']})"


def _originals(originals: dict | None, side: int, channels: int) -> dict:
    if originals:
        return {"known": True, **originals}
    return {"known": False, "side": side, "channels": channels}


def label_counts(labels, num_classes: int) -> np.ndarray:
    """Images of each class; multi-label: images with each label."""
    labels = np.asarray(labels)
    return labels.sum(0) if labels.ndim == 2 else np.bincount(labels, minlength=num_classes)


def label_name(label, class_names: list[str]) -> str:
    """A class name; multi-label: the image's labels joined by '+' ('none' for an image without one)."""
    if np.ndim(label) == 1:
        return "+".join(class_names[j] for j in np.flatnonzero(label)) or "none"
    return class_names[int(label)]


def audit(splits: dict[str, ImageSet | None], class_names: list[str], originals: dict | None = None,
          skipped: int = 0) -> dict:
    """The whole audit as a plain dict (JSON-ready): see report.audit_section.render_markdown and summary for what it holds.

    `splits` maps train/val/test to uint8 image sets (None where absent); `originals` is the source's
    record of the files' own sizes and modes (SourceData.originals), None when it has no files.
    """
    started = time.perf_counter()
    present = [(s, splits[s]) for s in SPLITS if splits.get(s) is not None]
    counts = {s: label_counts(d.labels, len(class_names)).tolist() for s, d in present}
    ids_split, ids_index, labels, names, exact, hashes, thumbs = [], [], [], [], [], [], []
    for s, d in present:
        e, h, t = hash_split(d)
        ids_split += [s] * len(d)
        ids_index.append(np.arange(len(d)))
        labels.append(d.labels.numpy())
        names += [_name(s, i, d.files) for i in range(len(d))]
        exact += e
        hashes.append(h)
        thumbs.append(t)
    n = len(names)
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    index = np.concatenate(ids_index) if ids_index else np.zeros(0, np.int64)
    hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    thumbs = np.concatenate(thumbs) if thumbs else np.zeros((0, 81), np.uint8)

    # exact groups: one representative per distinct content
    first: dict[bytes, int] = {}
    content = np.array([first.setdefault(d, i) for i, d in enumerate(exact)], dtype=np.int64)
    reps = np.flatnonzero(content == np.arange(n))
    pairs, limited = near_pairs(hashes[reps], thumbs[reps])
    near_root = np.arange(n)
    if len(pairs):
        root = _components(len(reps), pairs)
        near_root = reps[root][np.searchsorted(reps, content)]  # each image's near group, via its content
    groups = []
    for kind, key in (("exact", content), ("near", near_root)):
        members = defaultdict(list)
        for i, k in enumerate(key.tolist()):
            members[k].append(i)
        for ids in members.values():
            if len(ids) < 2 or (kind == "near" and len({int(content[i]) for i in ids}) < 2):
                continue
            groups.append({"kind": kind, "images": [{"id": i, "split": ids_split[i], "index": int(index[i]), "file": names[i],
                                                     "label": label_name(labels[i], class_names)} for i in ids]})
    within = {k: {s: 0 for s, _ in present} for k in ("exact", "near")}
    across = {k: Counter() for k in ("exact", "near")}
    leaks, conflicts = [], []
    for g in groups:  # a near group counts distinct contents: its identical copies are counted as exact
        kind, images = g["kind"], g["images"]
        by_split = defaultdict(set)
        for im in images:
            by_split[im["split"]].add(int(content[im.pop("id")]))
        for s, contents in by_split.items():
            within[kind][s] += (sum(im["split"] == s for im in images) if kind == "exact" else len(contents)) - 1
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            if by_split[a] and by_split[b]:  # images of the later split with a copy in the earlier one
                across[kind][f"{a}-{b}"] += (sum(im["split"] == b for im in images) if kind == "exact"
                                             else len(by_split[b] - by_split[a]))
        g["labels"] = sorted({im["label"] for im in images})
        if len(g["labels"]) > 1:
            conflicts.append(g)
        if by_split["test"] and (by_split["train"] or by_split["val"]):
            others = [im for im in images if im["split"] != "test"]
            for im in images:
                if im["split"] == "test":
                    leaks.append({"kind": kind, "test": im["file"], "index": im["index"], "label": im["label"],
                                  "copy": _where(others[0]),
                                  "copies": [f"{o['split']}: {o['file']} ({o['label']})" for o in others[:3]],
                                  "copies_count": len(others)})
    exact_leaked = {lk["index"] for lk in leaks if lk["kind"] == "exact"}
    leaks = [lk for lk in leaks if lk["kind"] == "exact" or lk["index"] not in exact_leaked]
    side, channels = (int(present[0][1].images.shape[-1]), int(present[0][1].images.shape[1])) if present else (0, 0)
    return {
        "class_names": class_names, "counts": counts, "images": n,
        "decoded": {"side": side, "channels": channels}, "originals": _originals(originals, side, channels),
        "skipped": skipped,
        "within": within, "across": {k: dict(v) for k, v in across.items()},
        "groups": groups, "conflicts": len(conflicts), "leaks": leaks, "near_limited": limited,
        "method": {"exact": "SHA-1 of the decoded uint8 pixels",
                   "near": f"64-bit dHash within {NEAR_BITS} bits and 9x9 colour thumbnails within {NEAR_THUMB:g} grey levels"},
        "seconds": round(time.perf_counter() - started, 3),
    }


def leak_warning(result: dict, named: int = NAMED) -> str | None:
    """One sentence naming the leaked test images (at most `named`; the count is whole), None without leaks."""
    leaks = result.get("leaks") or []
    if not leaks:
        return None
    shown = ", ".join(f"{lk['test']} ({lk['kind']} copy of {lk['copy']})" for lk in leaks[:named])
    more = f", and {len(leaks) - named:,} more" if len(leaks) > named else ""
    n = len(leaks)
    return (f"{n:,} test image{'s' if n != 1 else ''} ha{'ve' if n != 1 else 's'} an exact or near copy in train or "
            f"val, so the test score overstates accuracy on new images: {shown}{more} (data_audit.md lists them)")


def summary(result: dict, named: int = NAMED) -> dict:
    """The short form for metrics.json: counts, the first leaked test files, the warning and the audit's time."""
    leaks = result.get("leaks") or []
    return {
        "exact_within": sum(result["within"]["exact"].values()), "exact_across": sum(result["across"]["exact"].values()),
        "near_within": sum(result["within"]["near"].values()), "near_across": sum(result["across"]["near"].values()),
        "within": result["within"], "across": result["across"],
        "label_conflicts": result["conflicts"], "near_limited": result.get("near_limited", 0), "leaks": len(leaks), "leaked_files": [lk["test"] for lk in leaks[:named]],
        "warning": leak_warning(result, named), "seconds": result["seconds"],
    }
