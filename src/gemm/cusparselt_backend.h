// src/gemm/cusparselt_backend.h: one cuSPARSELt product compressed once (benchmarks), and what
// the library's cuSPARSELt plans run.
//
// cusparselt_mm (backends.h) compresses its own copy of S in every call; each shape's first call
// searches for its algorithm (Plan::search in cusparselt_backend.cpp). A benchmark that times
// the GEMM alone builds a CusparseltGemm: it compresses S once, and run() queues only
// cusparseLtMatmul, with the default algorithm or a searched one. Defined in builds with
// cuSPARSELt only (cusparselt_built()).
#pragma once

#include <memory>
#include <string>

#include "gemm/backends.h"

namespace sparse24::gemm {

class CusparseltGemm {
 public:
  // Checks p as cusparselt_mm does, plans it and compresses p.s into the object's own buffer.
  // With `search`, the plan searches as cusparselt_mm's do on their first call (on p's inputs;
  // p.d is not written; synchronises); without, the default algorithm runs. The object keeps
  // its own plan, workspace and compressed S, apart from the library's.
  static std::unique_ptr<CusparseltGemm> create(const SparseProblem& p, bool search);
  ~CusparseltGemm();
  CusparseltGemm(const CusparseltGemm&) = delete;
  CusparseltGemm& operator=(const CusparseltGemm&) = delete;

  // p.d = p.alpha * scale * S p.b + p.beta * p.d + bias, S being the copy create() compressed
  // (p.s is read for its scale only). p must have create()'s shape, dtypes, layouts and bias
  // address (the bias values may change); B and D may be other memory. Queued on the default
  // stream.
  void run(const SparseProblem& p);
  // The plan: "alg 3 (ids 0..11), split-k 1 (data-parallel); searched, agrees with the default
  // algorithm (...)", or why the default runs.
  std::string describe() const;

 private:
  struct Impl;
  explicit CusparseltGemm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What cusparselt_mm runs for p's shape (as CusparseltGemm::describe says), or "not planned"
// before its first call of that shape on the current GPU.
std::string cusparselt_describe(const SparseProblem& p);

}  // namespace sparse24::gemm
