// trainer/train.h: `sparse24 train`: GPT-2 pre-training with dense, FST or S-STE linears.
//
// One run: load the token file, split train/validation, build the model, then for each optimizer
// step: begin_step (mask updates, compression), grad_accum micro-batches of forward + backward,
// gradient clipping, AdamW with the masked decay fused, the cosine learning rate with warm-up.
// Evaluation every eval_every steps and at the end; a JSONL metrics log; checkpoints every
// ckpt_every steps and at the end, written atomically; --resume continues bit for bit.
//
// Determinism: the batches of step s are a function of (seed, s) (BatchSampler), the MVUE24
// draws of (seed, step, micro-batch, layer), and every CPU kernel sums in a fixed order, so a
// run's numbers do not depend on the thread count or on where it was interrupted.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/data.h"
#include "trainer/gpt2.h"

namespace sparse24::trainer {

struct TrainConfig {
  GptConfig model;                 // model.vocab 0: from the data (256 for text)
  std::string data;                // token file (text, nanoGPT .bin or llm.c shard)
  TokenFormat format = TokenFormat::kAuto;
  double val_fraction = 0.1;       // the last part of the file is the validation split
  int batch = 8, seq = 64, grad_accum = 1;
  int64_t steps = 500;
  float lr = 1e-3f, min_lr = 1e-4f;
  int64_t warmup = 50;
  float weight_decay = 0.1f, beta1 = 0.9f, beta2 = 0.95f, grad_clip = 1.0f;
  double dense_fraction = 0.0;     // sparse modes: the last fraction of steps runs dense
  int64_t eval_every = 100;
  int eval_batches = 16;
  int64_t ckpt_every = 0;          // 0: a checkpoint at the end only
  std::string out_dir = "out/run";
  uint64_t seed = 1;
  std::string label;               // the run's name in plots (default: the mode)
  // Not part of the run's identity (not in the JSON): stop after this many steps, writing a
  // checkpoint, as an interrupted run would (-1: run to `steps`). Tests use it.
  int64_t stop_after = -1;
};

// The configuration as one flat JSON object (stored in checkpoints and the metrics log), and
// back. Parsing accepts exactly what to_json writes.
std::string to_json(const TrainConfig& c);
TrainConfig config_from_json(const std::string& json);

struct TrainResult {
  int64_t steps = 0;
  double train_loss = 0, val_loss = 0, seconds = 0, tokens_per_second = 0;
};

// Trains (or, with resume, continues the checkpoint in c.out_dir). Progress goes to stderr.
TrainResult train(const TrainConfig& c, bool resume);

// Text from a checkpoint: continues `prompt` (bytes, for byte-level models; ids otherwise) for
// `tokens` tokens with temperature sampling, seeded.
std::string sample(const std::string& checkpoint, const std::string& prompt, int tokens, float temperature,
                   uint64_t seed);

}  // namespace sparse24::trainer
