// src/cuda/check.h: error checking for CUDA calls and kernel launches inside the library.
#pragma once

#include <cuda_runtime.h>

#include "sparse24/error.h"

#define S24_CUDA_CHECK(expr)                                                                \
  do {                                                                                      \
    const cudaError_t s24_err = (expr);                                                     \
    S24_CHECK(s24_err == cudaSuccess, kDevice, #expr, ": ", cudaGetErrorString(s24_err)); \
  } while (0)

// After a launch: a bad configuration shows here, a fault at the next synchronisation.
#define S24_CUDA_CHECK_LAUNCH(name) S24_CUDA_CHECK(cudaGetLastError())
