// The DiT network F(x; c_noise, y), written once against the op interface: creation with
// flat parameter and gradient buffers, DiT's initialisation, and forward/backward in
// segments (conditioning, patch embedding, a range of blocks, final layer) so the SD-DiT
// encoder and decoder can run blocks on any subset of tokens.
#ifndef SD_DIT_H
#define SD_DIT_H

#include "model/dit_config.h"
#include "model/dit_params.h"
#include "ops.h"

#include <stdint.h>

typedef struct sd_dit {
  sd_dit_config cfg;
  sd_backend *be;
  sd_param_table table;
  float *params;       // flat parameters (table.total floats), backend memory
  float *grads;        // flat gradients, same layout
  sd_dit_weights w;    // views into params
  sd_dit_weights g;    // views into grads
  float *pos;          // (T, D) fixed 2-D sin-cos position table, backend memory
  int owns_buffers;    // params/grads allocated by sd_dit_create (not given by the caller)
} sd_dit;

// Per-block saved activations for Tk tokens. The void * buffers are stored as the arena's
// activation type (sd_dit_acts.act: fp32, or bf16 on a bf16 GPU backend); the rest are fp32.
typedef struct sd_block_acts {
  float *mod;               // (B, 6D) shift_a, scale_a, gate_a, shift_m, scale_m, gate_m
  void *h1;                 // (B, Tk, D) LN1 output
  float *mean1, *rstd1;     // (B, Tk), (B, Tk)
  void *qkv;                // (B, Tk, 3D)
  void *att;                // (B, Tk, D) attention output
  float *lse;               // (B, NH, Tk)
  void *ao;                 // (B, Tk, D) attention projection output
  float *x2;                // (B, Tk, D) residual after attention
  void *h2;                 // (B, Tk, D) LN2 output
  float *mean2, *rstd2;     // (B, Tk), (B, Tk)
  void *f1, *gl;            // (B, Tk, M) fc1 output, GELU output
  void *f2;                 // (B, Tk, D) fc2 output
} sd_block_acts;

// Activations of one pass of the network over a batch (capacity B samples, Tcap tokens).
typedef struct sd_dit_acts {
  int B, Tcap;            // capacity
  int Tk;                 // tokens through the blocks in the current pass
  float *patches;         // (B, T, C*p*p)
  float *tok;             // (B, T, D) patch embedding + positions
  float *tfeat;           // (B, F) timestep features
  float *th, *th_act;     // (B, D) t-MLP hidden before / after SiLU
  float *c, *silu_c;      // (B, D) conditioning and SiLU(c)
  float **x;              // depth+1 residual streams, each (B, Tcap, D); x[0] = block input
  sd_block_acts *blk;     // depth entries
  float *fmod;            // (B, 2D) final shift, scale
  void *hf;               // (B, Tcap, D) final LN output, stored as act
  float *meanf, *rstdf;   // (B, Tcap), (B, Tcap)
  float *out_tok;         // (B, Tcap, p*p*Cout)
  float *out;             // (B, Cout, H, W) network output F
  int32_t *idx;           // (B, Tcap) token indices of the pass (backend memory)
  int has_idx;            // 0: all tokens in order
  // backward scratch
  float *dres;            // (B, Tcap, D) gradient of the residual stream
  float *dbuf_d;          // (B, Tcap, D)
  float *dbuf_3d;         // (B, Tcap, 3D)
  float *dbuf_m;          // (B, Tcap, M) fp32-sized: d att (fp32); the MLP gradient (as act)
  float *dmod;            // (B, 6D)
  float *dsilu_c;         // (B, D) accumulates over all blocks and the final layer
  float *dc, *dth;        // (B, D)
  float *dtok;            // (B, T, D)
  float *dout_tok;        // (B, Tcap, p*p*Cout)
  void *arena;            // the single allocation behind all of the above
  sd_dtype act;           // storage type of the void * activations (the backend's act_dtype)
  int inference;          // forward only (sd_dit_acts_create_inference): no backward
} sd_dit_acts;

// Creates the model on a backend: parameter/gradient buffers (zeroed) and position table.
void sd_dit_create(sd_dit *m, const sd_dit_config *cfg, sd_backend *be);
// The same on caller-owned flat buffers (table.total floats each; grads may be NULL).
void sd_dit_create_in(sd_dit *m, const sd_dit_config *cfg, sd_backend *be, float *params,
                      float *grads);
void sd_dit_destroy(sd_dit *m);
// DiT's initialisation, keyed by seed: xavier-uniform linears (patch embed as a linear),
// N(0, 0.02) label table and t-MLP weights, zeros for biases, adaLN outputs, final linear.
void sd_dit_init_weights(sd_dit *m, uint64_t seed);
// Fills pos (T, D) on the host with DiT's 2-D sin-cos table.
void sd_dit_pos_table(const sd_dit_config *cfg, float *pos);

// The arena's activation storage type is the backend's act_dtype at creation.
void sd_dit_acts_create(sd_dit_acts *a, const sd_dit *m, int B, int Tcap);
// Forward-only activations (the sampler's denoiser, the SD-DiT teacher): the residual streams
// alternate between two buffers and every block shares one set of block buffers, so the arena
// does not grow with depth (DiT-XL/2: ~20x smaller); x[l] holds block l's input only until
// block l+1 has run. The backward segments refuse them.
void sd_dit_acts_create_inference(sd_dit_acts *a, const sd_dit *m, int B, int Tcap);
// Bytes of the arena for capacity (B, Tcap), training or inference layout, activations
// stored as act.
size_t sd_dit_acts_bytes(const sd_dit_config *c, int B, int Tcap, int inference,
                         sd_dtype act);
void sd_dit_acts_destroy(sd_dit_acts *a, const sd_dit *m);

// ---- forward segments -------------------------------------------------------------------
// c, silu_c from c_noise (B) and labels y (B), backend memory.
void sd_dit_cond_forward(const sd_dit *m, sd_dit_acts *a, int B, const float *c_noise,
                         const int32_t *y);
// tok (B, T, D) = patch_embed(x) + pos, x (B, C, H, W) backend memory.
void sd_dit_embed_forward(const sd_dit *m, sd_dit_acts *a, int B, const float *x);
// x[0] (B, Tk, D) = tok gathered at idx (B, Tk) (backend memory), or all tokens if idx NULL.
void sd_dit_select_tokens(const sd_dit *m, sd_dit_acts *a, int B, const int32_t *idx, int Tk);
// Blocks l0 .. l1-1: x[l0] -> x[l1], on a->Tk tokens.
void sd_dit_blocks_forward(const sd_dit *m, sd_dit_acts *a, int B, int l0, int l1);
// Final layer on x[l] -> out (B, Cout, H, W); tokens not in the pass are 0.
void sd_dit_final_forward(const sd_dit *m, sd_dit_acts *a, int B, int l);
// The whole network: out = F(x; c_noise, y) on tokens idx (NULL: all).
void sd_dit_forward(const sd_dit *m, sd_dit_acts *a, int B, const float *x,
                    const float *c_noise, const int32_t *y, const int32_t *idx, int Tk);

// ---- backward segments (parameter gradients accumulate into m->grads) -----------------
// From dout (B, Cout, H, W): dres = d x[l]; dsilu_c is reset and gets the final layer's part.
void sd_dit_final_backward(sd_dit *m, sd_dit_acts *a, int B, int l, const float *dout);
// Blocks l1-1 .. l0: dres = d x[l1] -> d x[l0]; dsilu_c accumulates.
void sd_dit_blocks_backward(sd_dit *m, sd_dit_acts *a, int B, int l0, int l1);
// dtok (B, T, D), the gradient of the embedded tokens -> patch-embedding gradients.
void sd_dit_embed_backward(sd_dit *m, sd_dit_acts *a, int B, const float *dtok);
// dsilu_c -> t-MLP and label-table gradients.
void sd_dit_cond_backward(sd_dit *m, sd_dit_acts *a, int B, const int32_t *y);
// The whole network's backward for dout (B, Cout, H, W) after sd_dit_forward.
void sd_dit_backward(sd_dit *m, sd_dit_acts *a, int B, const int32_t *y, const float *dout);

#endif
