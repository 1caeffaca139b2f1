// sparse24/sparse24.h: the whole public API.
#pragma once

#include "sparse24/build_info.h"
#include "sparse24/dtype.h"
#include "sparse24/error.h"
#include "sparse24/format.h"
#include "sparse24/gemm.h"
#include "sparse24/layers.h"
#include "sparse24/nn.h"
#include "sparse24/npy.h"
#include "sparse24/optim.h"
#include "sparse24/philox.h"
#include "sparse24/tensor.h"
#include "sparse24/transforms.h"
