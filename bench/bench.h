// bench/bench.h: the benchmark commands behind `sparse24 bench ...` (CUDA builds only).
#pragma once

#include <string>

namespace sparse24::bench {

// `sparse24 bench transforms [--quick]`: every transform kernel at GPT-2 and LLaMA-7B shapes,
// as time, TB/s and share of a device-to-device copy measured in the same run.
int transforms(int argc, char** argv);

// `sparse24 bench gemm [--quick] [--all-kernels] [--dtype fp16|bf16]`: cuBLAS dense, cuSPARSELt
// (default and searched) and the native kernels at GPT-2 and LLaMA-7B training shapes.
int gemm(int argc, char** argv);

// `sparse24 bench ffn [--quick] [--dtype fp16|bf16] [--width D] [--accum A] [--mode NAME]
// [--timeline]`:
// an FFN block (Linear, GELU, Linear) trained
// dense, FST and S-STE at GPT-2 widths with 16384 tokens, gradient accumulation 1 and 8.
int ffn(int argc, char** argv);

// "SM clock <when>: 1980 MHz (100% of its 1980 MHz peak; ...)", measured with a one-SM spin
// kernel, plus a warning below 80% of the peak (a throttled GPU; bench/sm_clock.cu). Every
// `sparse24 bench` suite prints it before and after its tables.
std::string sm_clock_report(const char* when);

}  // namespace sparse24::bench
