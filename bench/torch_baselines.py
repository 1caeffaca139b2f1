"""PyTorch's 2:4 sparsification kernels on the GPU, timed like `sparse24 bench transforms`.

Baselines for the transform kernels, measured in the same device session:
  * torch._sparse_semi_structured_tile: PyTorch's greedy 4x4-tile sparsifier (not exact), which
    writes W and W^T compressed (CUTLASS layout);
  * torch._cslt_compress: cuSPARSELt's compression of an already 2:4 matrix.
Bytes are counted as for our kernels: the input read once, compressed values (half the elements)
and 2-bit-per-element metadata written once per output.
"""
import sys

import torch


def time_us(fn, rotate):
    for i in range(2 * rotate):
        fn(i % rotate)
    torch.cuda.synchronize()
    per_sample, samples, times = max(rotate, 10), 15, []
    for _ in range(samples):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(per_sample):
            fn(i % rotate)
        stop.record()
        stop.synchronize()
        times.append(1e3 * start.elapsed_time(stop) / per_sample)
    return sorted(times)[len(times) // 2]


def rotation(nbytes):
    return max(1, min(24, int(256e6 / nbytes) + 1))


def main():
    quick = "--quick" in sys.argv
    dev = torch.device("cuda")
    big = torch.empty(1 << 29, dtype=torch.float16, device=dev).fill_(1.0)  # 1 GiB
    dst = torch.empty_like(big)
    copy_us = time_us(lambda i: dst.copy_(big), 1)
    copy = 2 * big.numel() * 2 / (copy_us * 1e-6) / 1e12
    del big, dst
    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}; device-to-device copy {copy:.2f} TB/s\n")
    print("| kernel | shape | in -> out | us | MB | TB/s | copy |")
    print("|---|---|---|---|---|---|---|")
    weights = [(3072, 768)] if quick else [(768, 3072), (3072, 768), (1600, 6400), (6400, 1600), (4096, 11008)]
    for rows, cols in weights:
        nbytes = rows * cols * (2 + 2 * (0.5 * 2 + 0.125))
        n = rotation(nbytes)
        xs = [torch.randn(rows, cols, device=dev, dtype=torch.float16) for _ in range(n)]
        try:
            us = time_us(lambda i: torch._sparse_semi_structured_tile(xs[i]), n)
            tbs = nbytes / (us * 1e-6) / 1e12
            print(f"| torch _sparse_semi_structured_tile, W+W^T | {rows}x{cols} | fp16 -> fp16 x2 | {us:.1f} | "
                  f"{nbytes / 1e6:.1f} | {tbs:.2f} | {100 * tbs / copy:.0f}% |")
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"| torch _sparse_semi_structured_tile | {rows}x{cols} | unavailable: {type(e).__name__}: {e} |")
        nbytes = rows * cols * (2 + 0.5 * 2 + 0.125)
        pruned = []
        for x in xs:
            idx = x.abs().reshape(rows, cols // 4, 4).topk(2, dim=-1).indices
            mask = torch.zeros_like(x, dtype=torch.bool).reshape(rows, cols // 4, 4).scatter_(-1, idx, True)
            pruned.append(x * mask.reshape(rows, cols))
        try:
            us = time_us(lambda i: torch._cslt_compress(pruned[i]), n)
            tbs = nbytes / (us * 1e-6) / 1e12
            print(f"| cuSPARSELt compress (torch._cslt_compress) | {rows}x{cols} | fp16 -> fp16 | {us:.1f} | "
                  f"{nbytes / 1e6:.1f} | {tbs:.2f} | {100 * tbs / copy:.0f}% |")
        except Exception as e:  # noqa: BLE001
            print(f"| cuSPARSELt compress | {rows}x{cols} | unavailable: {type(e).__name__}: {e} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
