"""PyTorch's dense FFN training step, timed like `sparse24 bench ffn` (its baseline).

The same workload: Linear(d, 4d), GELU (tanh), Linear(4d, d) at GPT-2 S/M/L/XL widths, 16384
tokens per micro-step, the input gradient included, fp32 master weights under fp16 (or bf16) autocast, a given loss gradient,
fused AdamW; gradient accumulation 1 and 8; 40 optimizer steps timed after 2 warm-up steps.
Usage: python3 bench/torch_ffn.py [--quick] [--dtype fp16|bf16] [--width D] [--accum A] [--timeline]
"""
import sys

import torch

TOKENS, STEPS = 16384, 40
WIDTHS = [("GPT-2 S", 768), ("GPT-2 M", 1024), ("GPT-2 L", 1280), ("GPT-2 XL", 1600)]


def step_ms(d, accum, dtype, steps):
    dev = torch.device("cuda")
    fc1 = torch.nn.Linear(d, 4 * d, device=dev)
    fc2 = torch.nn.Linear(4 * d, d, device=dev)
    params = list(fc1.parameters()) + list(fc2.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    # x requires its gradient, as the FFN's input does inside a transformer (sparse24 computes it).
    x = (torch.rand(TOKENS, d, device=dev, dtype=dtype) * 2 - 1).requires_grad_()
    dy = torch.rand(TOKENS, d, device=dev, dtype=dtype) * 2 - 1

    def train_step():
        for _ in range(accum):
            with torch.autocast("cuda", dtype=dtype):
                y = fc2(torch.nn.functional.gelu(fc1(x), approximate="tanh"))
            x.grad = None  # handed on to the layer below, not accumulated
            y.backward(dy)
        opt.step()
        opt.zero_grad(set_to_none=False)

    for _ in range(2):
        train_step()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        train_step()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / steps


def timeline(d, dtype):
    """GPU ms of each op of one micro-step (events between them), as `sparse24 bench ffn --timeline`."""
    dev = torch.device("cuda")
    fc1 = torch.nn.Linear(d, 4 * d, device=dev)
    fc2 = torch.nn.Linear(4 * d, d, device=dev)
    x = (torch.rand(TOKENS, d, device=dev, dtype=dtype) * 2 - 1).requires_grad_()
    dy = torch.rand(TOKENS, d, device=dev, dtype=dtype) * 2 - 1
    names = ["fc1 fwd", "gelu", "fc2 fwd", "backward (all)"]
    samples = [[] for _ in names]
    for rep in range(9):
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(len(names) + 1)]
        torch.cuda.synchronize()
        ev[0].record()
        with torch.autocast("cuda", dtype=dtype):
            h = fc1(x)
            ev[1].record()
            a = torch.nn.functional.gelu(h, approximate="tanh")
            ev[2].record()
            y = fc2(a)
            ev[3].record()
        x.grad = None
        y.backward(dy)
        ev[4].record()
        ev[4].synchronize()
        if rep >= 2:
            for k in range(len(names)):
                samples[k].append(ev[k].elapsed_time(ev[k + 1]))
    return "; ".join(f"{n} {sorted(v)[len(v) // 2]:.3f}" for n, v in zip(names, samples))


def main():
    quick = "--quick" in sys.argv
    dtype = torch.bfloat16 if "bf16" in sys.argv else torch.float16
    steps = 8 if quick else STEPS
    print(f"GPU: {torch.cuda.get_device_name()}; PyTorch {torch.__version__}, dense FFN, "
          f"{TOKENS} tokens per micro-step, {str(dtype).split('.')[1]} autocast, fused AdamW; "
          f"{steps} optimizer steps timed; ms per optimizer step\n")
    print("| width | accum | PyTorch dense ms/step | tokens/s |")
    print("|---|---|---|---|")
    width = int(sys.argv[sys.argv.index("--width") + 1]) if "--width" in sys.argv else 0
    only_accum = int(sys.argv[sys.argv.index("--accum") + 1]) if "--accum" in sys.argv else 0
    for name, d in WIDTHS:
        if (quick and d not in (768, 1600)) or (width and d != width):
            continue
        for accum in (1, 8):
            if only_accum and accum != only_accum:
                continue
            ms = step_ms(d, accum, dtype, steps)
            print(f"| {name} ({d}) | {accum} | {ms:.2f} | {TOKENS * accum / ms:.0f}k |", flush=True)
            if "--timeline" in sys.argv:
                print(f"|  | | timeline (ms): {timeline(d, dtype)} | |", flush=True)


if __name__ == "__main__":
    main()
