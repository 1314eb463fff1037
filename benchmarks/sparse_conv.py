"""Benchmark one 3x3x3 submanifold layer of pcal's sparse engine on a synthetic room.

All cases run in ONE process, interleaved (order shuffled every repeat, after one warm-up), so
drift of the machine's speed hits every case alike. Reports medians, GFLOP/s and ratios against a
dense matmul of the same FLOP count (and against spconv's CPU layer when it is installed).

    .venv/bin/python benchmarks/sparse_conv.py --voxels 100000 --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from pcal_cli.sparse import KernelMap, sparse_conv, sparse_quantize, submanifold_map

VOXEL = 0.05  # metres


def room_voxels(target: int, seed: int = 0) -> torch.Tensor:
    """``[N, 4]`` int32 (batch 0, x, y, z): a centred xy-crop of exactly ``target`` voxels of a room
    surface (floor, 4 walls, furniture boxes) sampled at 1500 points/m^2 with 1 cm noise, rotated
    about z and shifted by a sub-voxel offset, quantised at 5 cm."""
    rng = np.random.default_rng(seed)
    side = 10.0
    while True:
        cells = _room_cells(rng, side)
        if cells.shape[0] >= target:
            break
        side *= 1.1 * np.sqrt(target / cells.shape[0])
    centre = (cells[:, :2].max(0) + cells[:, :2].min(0)) / 2
    distance = np.abs(cells[:, :2] - centre).max(1)
    keep = np.sort(np.argsort(distance, kind="stable")[:target])
    coords = np.concatenate([np.zeros((target, 1), np.int32), cells[keep]], 1)
    return torch.from_numpy(coords)


def _room_cells(rng: np.random.Generator, side: float, height: float = 3.0) -> np.ndarray:
    rects = [  # (origin, edge u, edge v)
        ((0, 0, 0), (side, 0, 0), (0, side, 0)),
        ((0, 0, 0), (side, 0, 0), (0, 0, height)),
        ((0, side, 0), (side, 0, 0), (0, 0, height)),
        ((0, 0, 0), (0, side, 0), (0, 0, height)),
        ((side, 0, 0), (0, side, 0), (0, 0, height)),
    ]
    for _ in range(int(25 * (side / 10) ** 2)):
        w, d, h = rng.uniform(0.4, 2.0), rng.uniform(0.4, 1.2), rng.uniform(0.4, 2.0)
        x, y = rng.uniform(0.2, side - 2.2), rng.uniform(0.2, side - 1.4)
        rects += [
            ((x, y, h), (w, 0, 0), (0, d, 0)),
            ((x, y, 0), (w, 0, 0), (0, 0, h)),
            ((x, y + d, 0), (w, 0, 0), (0, 0, h)),
            ((x, y, 0), (0, d, 0), (0, 0, h)),
            ((x + w, y, 0), (0, d, 0), (0, 0, h)),
        ]
    parts = []
    for origin, u, v in rects:
        o, u, v = (np.asarray(a, dtype=np.float64) for a in (origin, u, v))
        n = int(1500 * np.linalg.norm(u) * np.linalg.norm(v))
        st = rng.uniform(size=(n, 2))
        parts.append(o + st[:, :1] * u + st[:, 1:] * v)
    points = np.concatenate(parts) + rng.normal(scale=0.01, size=(sum(len(p) for p in parts), 3))
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    points = points @ rot.T + rng.uniform(0, VOXEL, size=3)
    return sparse_quantize(points, VOXEL)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def conv_case(kmap: KernelMap, channels: int, backward: bool) -> Callable[[], None]:
    g = torch.Generator().manual_seed(channels)
    feats = torch.randn(kmap.n_in, channels, generator=g, requires_grad=backward)
    kernel = (torch.randn(27, channels, channels, generator=g) / channels**0.5).requires_grad_(backward)
    grad = torch.randn(kmap.n_out, channels, generator=g)

    def run() -> None:
        if backward:
            sparse_conv(feats, kernel, kmap).backward(grad)
            feats.grad = kernel.grad = None
        else:
            with torch.no_grad():
                sparse_conv(feats, kernel, kmap)

    return run


def dense_case(pairs: int, channels: int) -> Callable[[], None]:
    """The three GEMMs of fwd+bwd over ``pairs`` rows: 6 * P * C * C FLOPs."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(pairs, channels, generator=g)
    w = torch.randn(channels, channels, generator=g)
    b = torch.randn(pairs, channels, generator=g)

    def run() -> None:
        a.mm(w)
        b.mm(w.t())
        a.t().mm(b)

    return run


def spconv_case(coords: torch.Tensor, channels: int) -> Callable[[], None] | str:
    """spconv's SubMConv3d fwd+bwd under 1 torch thread (its only correct CPU setting), or why not."""
    try:
        spconv = importlib.import_module("spconv.pytorch")
    except Exception:
        return "spconv not installed"
    if not torch.cuda.is_available():  # spconv's backward asks torch.cuda for a stream unconditionally
        for name in ("spconv.pytorch.cppcore", "spconv.pytorch.ops", "spconv.pytorch.hash"):
            try:
                module = importlib.import_module(name)
            except Exception:
                continue
            if hasattr(module, "get_current_stream"):
                module.get_current_stream = lambda: 0
    indices = coords.clone()
    indices[:, 1:] -= indices[:, 1:].amin(0)
    shape = (indices[:, 1:].amax(0) + 1).tolist()
    g = torch.Generator().manual_seed(channels)
    feats = torch.randn(coords.shape[0], channels, generator=g, requires_grad=True)
    grad = torch.randn(coords.shape[0], channels, generator=g)
    layer = spconv.SubMConv3d(channels, channels, 3, bias=False, indice_key="bench")
    tensor = spconv.SparseConvTensor(feats, indices.int(), shape, 1)

    def run() -> None:
        with torch_threads(1):
            layer(tensor).features.backward(grad)
        feats.grad = None
        layer.weight.grad = None

    try:
        run()
    except Exception as exc:
        return f"spconv failed: {type(exc).__name__}: {exc}".splitlines()[0]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=100_000, help="voxels in the room crop")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per case")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    coords = room_voxels(args.voxels, args.seed)
    kmap = submanifold_map(coords, 3)
    pairs = kmap.num_pairs
    cases: dict[str, Callable[[], None]] = {
        "kernel map 3x3x3, 13-offset symmetric": lambda: submanifold_map(coords, 3),
        "kernel map 3x3x3, 27-offset search": lambda: submanifold_map(coords, 3, symmetric=False),
    }
    flops: dict[str, float] = {}
    notes: list[str] = []
    for c in (32, 96):
        cases[f"sub 3x3x3 {c}->{c} fwd+bwd"] = conv_case(kmap, c, backward=True)
        cases[f"sub 3x3x3 {c}->{c} fwd only"] = conv_case(kmap, c, backward=False)
        cases[f"dense matmul, same FLOPs as {c}->{c} fwd+bwd"] = dense_case(pairs, c)
        flops[f"sub 3x3x3 {c}->{c} fwd+bwd"] = 6.0 * pairs * c * c
        flops[f"sub 3x3x3 {c}->{c} fwd only"] = 2.0 * pairs * c * c
        flops[f"dense matmul, same FLOPs as {c}->{c} fwd+bwd"] = 6.0 * pairs * c * c
        spconv = spconv_case(coords, c)
        if isinstance(spconv, str):
            notes.append(spconv)
        else:
            cases[f"spconv SubMConv3d {c}->{c} fwd+bwd (1 thread)"] = spconv
            flops[f"spconv SubMConv3d {c}->{c} fwd+bwd (1 thread)"] = 6.0 * pairs * c * c

    times: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    shuffle = random.Random(args.seed)
    for repeat in range(args.repeats + 1):
        shuffle.shuffle(order)
        for name in order:
            start = time.perf_counter()
            cases[name]()
            elapsed = time.perf_counter() - start
            if repeat > 0:  # the first round is the warm-up
                times[name].append(elapsed)
    median = {name: statistics.median(t) for name, t in times.items()}

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} cores "
        "(other processes distort multi-threaded timings)"
    )
    print(
        f"room crop: {coords.shape[0]} voxels at {VOXEL * 100:.0f} cm, {pairs} pairs "
        f"({pairs / coords.shape[0]:.1f} neighbours/voxel incl. itself); torch {torch.__version__}, "
        f"{args.threads} threads; {args.repeats} interleaved repeats after 1 warm-up"
    )
    header = f"{'case':<48} {'median s':>9} {'min s':>8} {'GFLOP':>7} {'GFLOP/s':>8}  ratio"
    print(header)
    print("-" * (len(header) + 24))
    for name in cases:
        gflop = flops.get(name, 0.0) / 1e9
        rate = f"{gflop / median[name]:8.1f}" if gflop else f"{'':8}"
        print(
            f"{name:<48} {median[name]:9.4f} {min(times[name]):8.4f} "
            f"{(f'{gflop:7.2f}' if gflop else ''):>7} {rate}  {_ratio(name, median)}"
        )
    for note in dict.fromkeys(notes):
        print(note)


def _ratio(name: str, median: dict[str, float]) -> str:
    if name.startswith("sub") and name.endswith("fwd+bwd"):
        c = name.split()[2]
        dense = median[f"dense matmul, same FLOPs as {c} fwd+bwd"]
        return f"FLOP rate = {dense / median[name]:.2f} x dense matmul"
    if name.startswith("spconv"):
        ours = median[f"sub 3x3x3 {name.split()[2]} fwd+bwd"]
        return f"{median[name] / ours:.2f} x the time of pcal's layer"
    if name.endswith("27-offset search"):
        return f"{median[name] / median['kernel map 3x3x3, 13-offset symmetric']:.2f} x the symmetric build"
    return ""


if __name__ == "__main__":
    main()
