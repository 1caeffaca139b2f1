// src/gemm/cusparselt_backend.h: one cuSPARSELt product compressed once, for benchmarks.
//
// cusparselt_mm (backends.h) compresses its own copy of S in every call and keeps one searched
// plan per problem kind. A benchmark that times the GEMM alone builds a CusparseltGemm: it
// compresses S once, and run() queues only cusparseLtMatmul, with cuSPARSELt's default algorithm
// or with the one cusparseLtMatmulSearch picked (checked against the default, as cusparselt_mm
// does). Defined in builds with cuSPARSELt only (cusparselt_built()).
#pragma once

#include <memory>
#include <string>

#include "gemm/backends.h"

namespace sparse24::gemm {

class CusparseltGemm {
 public:
  // Checks p as cusparselt_mm does, plans it and compresses p.s into the object's own buffer.
  // With `search`, cusparseLtMatmulSearch picks the algorithm on p's inputs (p.d is not written)
  // and its winner is kept only if its output agrees with the default algorithm's; without, the
  // default algorithm runs.
  static std::unique_ptr<CusparseltGemm> create(const SparseProblem& p, bool search);
  ~CusparseltGemm();
  CusparseltGemm(const CusparseltGemm&) = delete;
  CusparseltGemm& operator=(const CusparseltGemm&) = delete;

  // p.d = p.alpha * scale * S p.b + p.beta * p.d + bias, S being the copy create() compressed
  // (p.s is read for its scale only). p must have create()'s shape, dtypes and layouts; B, D and
  // the bias may be other memory. Queued on the default stream.
  void run(const SparseProblem& p);
  // The plan: "alg 3 (ids 0..11), split-k 1 (data-parallel), workspace 0 B; searched, agrees
  // with the default algorithm (...)", or why the default runs.
  std::string describe() const;

 private:
  struct Impl;
  explicit CusparseltGemm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparse24::gemm
