// tests/gpu/gpu_test.h: the fixture of every GPU test. Without a GPU the test reports itself
// skipped; with one, every new Tensor starts poisoned (0xFF bytes), so an element a kernel
// forgets to write shows.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "sparse24/sparse24.h"

namespace sparse24::test {

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (list_gpus(&why).empty()) GTEST_SKIP() << "no GPU: " << why;
    set_alloc_poison(true);
  }
  void TearDown() override { set_alloc_poison(false); }
};

}  // namespace sparse24::test
