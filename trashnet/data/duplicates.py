"""Duplicate images among the scanned rows: exact copies (sha256) rejected, near-duplicates (perceptual hash) grouped.

Exact copies with one label keep the first path; copies with different labels are all rejected. Near-duplicates
within ``NEAR_DUPLICATE_DISTANCE`` bits are linked into groups, named by their first path, that the stratified
split keeps together (``trashnet.data.splits``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterator

import numpy as np

from trashnet.data.scan import reject

NEAR_DUPLICATE_DISTANCE = 52  # Hamming distance (of 256 bits) at or under which two images are near-duplicates


def reject_exact_duplicates(rows: list[dict[str, str]]) -> None:
    by_hash: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "accepted":
            by_hash[row["sha256"]].append(row)
    for copies in by_hash.values():
        if len(copies) < 2:
            continue
        labels = sorted({row["class"] for row in copies})
        if len(labels) > 1:
            listing = ", ".join(f"{row['path']} ({row['class']})" for row in copies)
            for row in copies:
                reject(row, f"duplicate-conflict: identical bytes carry different labels ({listing}); "
                             f"all copies rejected")
        else:
            for row in copies[1:]:
                reject(row, f"duplicate of {copies[0]['path']} (kept)")


def hamming_pairs(hashes: list[str], limit: int) -> Iterator[tuple[int, int]]:
    """Index pairs i < j whose hex hashes differ in at most ``limit`` bits, yielded block by block: memory
    is one 1024 x n distance block, never the list of pairs (which grows with n squared)."""
    if not hashes:
        return
    raw = np.array([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes])
    bits = np.unpackbits(raw, axis=1).astype(np.float32)
    ones = bits.sum(axis=1)
    for start in range(0, len(bits), 1024):
        block = bits[start:start + 1024]
        # |a xor b| = |a| + |b| - 2 a.b, exact in float32 for 256 bits
        distance = ones[start:start + 1024, None] + ones[None, :] - 2.0 * (block @ bits.T)
        for i, j in zip(*np.nonzero(distance <= limit + 0.5)):
            if start + i < j:
                yield int(start + i), int(j)


def group_near_duplicates(rows: list[dict[str, str]]) -> None:
    accepted = [row for row in rows if row["status"] == "accepted"]
    parent = list(range(len(accepted)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)  # the root is the group's first path

    # Images with the same hash form one bucket, joined without comparing them pairwise (10,000 look-alike
    # photos cost one comparison, not 50 million); only the buckets' distinct hashes are compared.
    first: dict[str, int] = {}
    for i, row in enumerate(accepted):
        union(first.setdefault(row["phash"], i), i)
    distinct = list(first)
    for i, j in hamming_pairs(distinct, NEAR_DUPLICATE_DISTANCE):
        union(first[distinct[i]], first[distinct[j]])
    sizes = Counter(find(i) for i in range(len(accepted)))
    for i, row in enumerate(accepted):
        root = find(i)
        row["near_duplicate_group"] = accepted[root]["path"] if sizes[root] > 1 else ""
