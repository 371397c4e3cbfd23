// CUDA patch and token ops: patchify / unpatchify (with an optional token index for masked
// sequences), label-table rows (gather with a label check, deterministic scatter-add), token
// gather / scatter-add, and the decoder-input merge. Each op has the semantics of the CPU op of
// the same name (kernels/cpu/patch.c, embed.c, tokens.c, head.c). These are all copies or
// single adds, so the results equal the CPU's bit for bit.
//
// Kernels (vec8.cuh's row ops: the row from the grid, 32-bit offsets inside a row; 16-byte
// accesses of 8 fp32 when D % 8 == 0 and the pointers are 16-byte aligned, else one element
// per thread). Bytes per element moved through device memory:
//   patchify, unpatchify_fwd/bwd   read 4, write 4 (scalar: the pixel order is in runs of p;
//                                  unpatchify_fwd with idx also clears img: + 4 per pixel)
//   embed_rows_fwd                 read out 4 + table row 4, write out 4   (12)
//   embed_rows_bwd                 per table row used: read + write 8, + dout 4 per sample
//   gather_tokens                  read x 4, write out 4 (the Tk rows)     (8)
//   scatter_add_tokens             read x 4 + sub 4, write x 4 (Tk rows)   (12)
//   merge_tokens_fwd               copy base (8 per element of (B, T, D)) unless in place,
//                                  then write the Tk rows of sub: read 4, write 4
//   merge_tokens_bwd               dsub: read 4, write 4 (Tk rows); dbase: read dout 4 +
//                                  dbase 4, write 4 on the T - Tk unlisted rows, + 1 byte per
//                                  row for the listed marks
//
// Token indices are trusted as on the CPU (the callers validate them), except that an index
// outside [0, T) never reads or writes out of bounds here: its row is skipped (left as it was).
#include "cuda_internal.h"
#include "vec8.cuh"

extern "C" {
#include "cpu_ops.h"
#include "error.h"
}

#include <cmath>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

namespace {

constexpr int kThreads = 256;  // threads per block of the grid-stride kernels

// patches (B, T, C*p*p) from x (B, C, H, W): row (b, t) of F = C p p, one thread per element
// (writes coalesced, reads in runs of p).
struct PatchifyOp {
  float *patches;
  const float *x;
  unsigned C, H, W, p, T, F;
  __device__ void elem(unsigned b, unsigned t, unsigned f) const {
    const unsigned gw = W / p, pp = p * p, gy = t / gw, gx = t - gy * gw;
    const unsigned c = f / pp, py = (f - c * pp) / p, px = f % p;
    patches[((size_t)b * T + t) * F + f] =
        x[(((size_t)b * C + c) * H + gy * p + py) * W + gx * p + px];
  }
  __device__ void group(unsigned, unsigned, unsigned) const {}  // (scalar only)
};

// Row (b, k) of tok (B, Tk, p*p*C), f = (py*p + px)*C + c, one thread per element: to_image
// copies it to its pixel, else copies the pixel into it.
struct UnpatchifyOp {
  float *img, *tok;
  const int32_t *idx;
  unsigned Tk, C, H, W, p, T, F;
  int to_image;
  __device__ void elem(unsigned b, unsigned k, unsigned f) const {
    const size_t bk = (size_t)b * Tk + k;
    const int t = idx ? idx[bk] : (int)k;
    if (t < 0 || t >= (int)T) return;  // validated by the caller (as the CPU)
    const unsigned gw = W / p, gy = (unsigned)t / gw, gx = (unsigned)t - gy * gw;
    const unsigned q = f / C, c = f - q * C, py = q / p, px = q - py * p;
    const size_t pix = (((size_t)b * C + c) * H + gy * p + py) * W + gx * p + px;
    if (to_image) img[pix] = tok[bk * F + f];
    else tok[bk * F + f] = img[pix];
  }
  __device__ void group(unsigned, unsigned, unsigned) const {}  // (scalar only)
};

// out (B, D) += table[y[b]]: rows (0, b) (labels clamped on the device, label_check.cu).
struct EmbedRowsOp {
  float *out;
  const float *table;
  const int32_t *y;
  unsigned D;
  __device__ void elem(unsigned, unsigned b, unsigned d) const {
    out[(size_t)b * D + d] += table[(size_t)y[b] * D + d];
  }
  __device__ void group(unsigned, unsigned b, unsigned d) const {
    float *o = out + (size_t)b * D + d;
    V8 v = ld8(o);
    const V8 t = ld8(table + (size_t)y[b] * D + d);
#pragma unroll
    for (int k = 0; k < 8; k++) v.v[k] += t.v[k];
    st8(o, v);
  }
};

// dtable[y[b]] += dout[b] in sample order, without atomics: one block per sample b; the block
// of the first sample with a label adds, for each column (threads stride over D), the rows of
// every sample with that label in sample order, starting from the table's value (the CPU's
// order exactly). Blocks of later samples with the same label do nothing.
__global__ void embed_rows_bwd_kernel(float *dtable, const float *dout, const int32_t *y,
                                      int B, int D) {
  int b = blockIdx.x;
  int lab = y[b];
  if (lab < 0) return;  // never valid (the forward rejects it)
  for (int j = 0; j < b; j++)
    if (y[j] == lab) return;  // uniform across the block
  float *row = dtable + (size_t)lab * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = row[d];
    for (int j = b; j < B; j++)
      if (y[j] == lab) acc += dout[(size_t)j * D + d];
    row[d] = acc;
  }
}

// The row ops over (B, Tk, D): row (b, k) of sub, and the row of sample b at token idx[b, k]
// on the (B, T, D) side (big):
//   mode 0: sub = big row  (gather; merge backward's dsub)
//   mode 1: big row += sub (scatter-add; idx distinct within a sample, so no conflicts)
//   mode 2: big row = sub  (merge forward)
// An index outside [0, T) skips the row.
struct TokenRowsOp {
  float *big, *sub;
  const int32_t *idx;
  unsigned T, Tk, D;
  int mode;
  __device__ void elem(unsigned b, unsigned k, unsigned d) const {
    const size_t bk = (size_t)b * Tk + k;
    const int t = idx[bk];
    if (t < 0 || t >= (int)T) return;
    float *g = big + ((size_t)b * T + t) * D + d, *s = sub + bk * D + d;
    if (mode == 0) *s = *g;
    else if (mode == 1) *g += *s;
    else *g = *s;
  }
  __device__ void group(unsigned b, unsigned k, unsigned d) const {
    const size_t bk = (size_t)b * Tk + k;
    const int t = idx[bk];
    if (t < 0 || t >= (int)T) return;
    float *g = big + ((size_t)b * T + t) * D + d, *s = sub + bk * D + d;
    if (mode == 0) {
      st8(s, ld8(g));
    } else if (mode == 1) {
      V8 v = ld8(g);
      const V8 a = ld8(s);
#pragma unroll
      for (int j = 0; j < 8; j++) v.v[j] += a.v[j];
      st8(g, v);
    } else {
      st8(g, ld8(s));
    }
  }
};

// listed (B, T) = 1 at the rows idx: row (0, b) of Tk indices (duplicates store the same
// byte).
struct MarkListedOp {
  unsigned char *listed;
  const int32_t *idx;
  unsigned T, Tk;
  __device__ void elem(unsigned, unsigned b, unsigned k) const {
    const int t = idx[(size_t)b * Tk + k];
    if (t >= 0 && t < (int)T) listed[(size_t)b * T + t] = 1;
  }
  __device__ void group(unsigned, unsigned, unsigned) const {}  // (scalar only)
};

// dbase (B, T, D) += dout on the rows not listed: rows (0, r), r = b T + t.
struct AddUnlistedOp {
  float *dbase;
  const float *dout;
  const unsigned char *listed;
  unsigned D;
  __device__ void elem(unsigned, unsigned r, unsigned d) const {
    if (!listed[r]) dbase[(size_t)r * D + d] += dout[(size_t)r * D + d];
  }
  __device__ void group(unsigned, unsigned r, unsigned d) const {
    if (listed[r]) return;
    float *o = dbase + (size_t)r * D + d;
    V8 v = ld8(o);
    const V8 g = ld8(dout + (size_t)r * D + d);
#pragma unroll
    for (int k = 0; k < 8; k++) v.v[k] += g.v[k];
    st8(o, v);
  }
};

}  // namespace

// ---- the ops ---------------------------------------------------------------------------------

void sd_cuda_patchify(sd_backend *be, float *patches, const float *x, int B, int C, int H,
                      int W, int p) {
  const int T = (H / p) * (W / p), F = C * p * p;
  const PatchifyOp op{patches, x, (unsigned)C, (unsigned)H, (unsigned)W, (unsigned)p,
                      (unsigned)T, (unsigned)F};
  launch_rows(sd_cuda_st(be)->stream, op, (size_t)B, (size_t)T, (size_t)F, false, "patchify");
}

void sd_cuda_unpatchify_fwd(sd_backend *be, float *img, const float *tok, const int32_t *idx,
                            int Tk, int B, int C, int H, int W, int p) {
  const int T = (H / p) * (W / p), F = C * p * p;
  cudaStream_t st = sd_cuda_st(be)->stream;
  // positions not listed are 0: clear, then scatter (with idx NULL every position is written)
  if (idx)
    SD_CUDA_CHECK(cudaMemsetAsync(img, 0, (size_t)B * C * H * W * sizeof(float), st));
  const UnpatchifyOp op{img, (float *)tok, idx, (unsigned)Tk, (unsigned)C, (unsigned)H,
                        (unsigned)W, (unsigned)p, (unsigned)T, (unsigned)F, 1};
  launch_rows(st, op, (size_t)B, (size_t)Tk, (size_t)F, false, "unpatchify_fwd");
}

void sd_cuda_unpatchify_bwd(sd_backend *be, float *dtok, const float *dimg, const int32_t *idx,
                            int Tk, int B, int C, int H, int W, int p) {
  const int T = (H / p) * (W / p), F = C * p * p;
  const UnpatchifyOp op{(float *)dimg, dtok, idx, (unsigned)Tk, (unsigned)C, (unsigned)H,
                        (unsigned)W, (unsigned)p, (unsigned)T, (unsigned)F, 0};
  launch_rows(sd_cuda_st(be)->stream, op, (size_t)B, (size_t)Tk, (size_t)F, false,
              "unpatchify_bwd");
}

void sd_cuda_embed_rows_fwd(sd_backend *be, float *out, const float *table, const int32_t *y,
                            int B, int D, int rows) {
  if (B <= 0) return;
  // Labels are checked on the device (label_check.cu): the lookup reads them clamped, and a
  // bad one stops the program at the next synchronisation, with no read back here.
  y = sd_cuda_checked_labels(be, y, B, rows);
  if (D <= 0) return;
  launch_rows(sd_cuda_st(be)->stream, EmbedRowsOp{out, table, y, (unsigned)D}, 1, (size_t)B,
              (size_t)D, is_aligned16(out) && is_aligned16(table), "embed_rows_fwd");
}

void sd_cuda_embed_rows_bwd(sd_backend *be, float *dtable, const float *dout, const int32_t *y,
                            int B, int D) {
  if (B <= 0 || D <= 0) return;
  embed_rows_bwd_kernel<<<(unsigned)B, kThreads, 0, sd_cuda_st(be)->stream>>>(dtable, dout, y,
                                                                              B, D);
  SD_CUDA_LAUNCHED("embed_rows_bwd_kernel");
}

namespace {
// big (B, T, D), sub (B, Tk, D): 16-byte groups when D % 8 == 0 and both are aligned.
void token_rows(cudaStream_t st, float *big, float *sub, const int32_t *idx, int B, int T,
                int Tk, int D, int mode, const char *name) {
  if (B <= 0 || Tk <= 0 || D <= 0) return;
  const TokenRowsOp op{big, sub, idx, (unsigned)T, (unsigned)Tk, (unsigned)D, mode};
  launch_rows(st, op, (size_t)B, (size_t)Tk, (size_t)D, is_aligned16(big) && is_aligned16(sub), name);
}
}  // namespace

void sd_cuda_gather_tokens(sd_backend *be, float *out, const float *x, const int32_t *idx,
                           int B, int T, int Tk, int D) {
  token_rows(sd_cuda_st(be)->stream, (float *)x, out, idx, B, T, Tk, D, 0, "gather_tokens");
}

void sd_cuda_scatter_add_tokens(sd_backend *be, float *x, const float *sub, const int32_t *idx,
                                int B, int T, int Tk, int D) {
  token_rows(sd_cuda_st(be)->stream, x, (float *)sub, idx, B, T, Tk, D, 1,
             "scatter_add_tokens");
}

void sd_cuda_merge_tokens_fwd(sd_backend *be, float *out, const float *base, const float *sub,
                              const int32_t *idx, int B, int T, int Tk, int D) {
  cudaStream_t st = sd_cuda_st(be)->stream;
  if (out != base)
    SD_CUDA_CHECK(cudaMemcpyAsync(out, base, (size_t)B * T * D * sizeof(float),
                                  cudaMemcpyDeviceToDevice, st));
  token_rows(st, out, (float *)sub, idx, B, T, Tk, D, 2, "merge_tokens_fwd");
}

void sd_cuda_merge_tokens_bwd(sd_backend *be, float *dbase, float *dsub, const float *dout,
                              const int32_t *idx, int B, int T, int Tk, int D) {
  cudaStream_t st = sd_cuda_st(be)->stream;
  size_t nsub = (size_t)B * Tk * D, nbase = (size_t)B * T * D;
  if (dsub && nsub) token_rows(st, (float *)dout, dsub, idx, B, T, Tk, D, 0, "merge_tokens_bwd");
  if (dbase && nbase) {
    size_t rows = (size_t)B * T;
    unsigned char *listed = (unsigned char *)sd_cuda_scratch(be, rows);
    SD_CUDA_CHECK(cudaMemsetAsync(listed, 0, rows, st));
    if (Tk > 0)
      launch_rows(st, MarkListedOp{listed, idx, (unsigned)T, (unsigned)Tk}, 1, (size_t)B,
                  (size_t)Tk, false, "merge_tokens_bwd(mark)");
    launch_rows(st, AddUnlistedOp{dbase, dout, listed, (unsigned)D}, 1, rows, (size_t)D,
                is_aligned16(dbase) && is_aligned16(dout), "merge_tokens_bwd(dbase)");
  }
}

// ---- self-test: every op above against the CPU op on random inputs ----------------------------

#include "selftest_util.h"

extern "C" int sd_cuda_tokens_selftest(sd_backend *be, char *err, size_t len) {
  sd_backend cpu;
  if (sd_backend_cpu_init(&cpu, 0) != 0) {
    snprintf(err, len, "CPU backend did not start");
    return -1;
  }
  cudaStream_t st = sd_cuda_st(be)->stream;
  Worst w;
  Rng rng(777);
  {
    DevPool pool(st);
    // patchify / unpatchify (non-square image, C not a power of 2)
    {
      int B = 2, C = 3, H = 12, W = 8, p = 2, T = (H / p) * (W / p), F = C * p * p, Tk = 10;
      size_t nimg = (size_t)B * C * H * W;
      auto x = rng.vec(nimg, -1.0f, 1.0f);
      std::vector<float> pat((size_t)B * T * F);
      float *gx = pool.up(x), *gpat = pool.up(pat);
      sd_cpu_patchify(&cpu, pat.data(), x.data(), B, C, H, W, p);
      sd_cuda_patchify(be, gpat, gx, B, C, H, W, p);
      w.compare("patchify", pool.down(gpat, pat.size()), pat);

      auto tok = rng.vec((size_t)B * T * F, -1.0f, 1.0f);
      auto junk = rng.vec(nimg, 5.0f, 6.0f);  // whatever the image held before
      auto idx = rng.subset(B, T, Tk);
      float *gtok = pool.up(tok);
      int32_t *gidx = pool.up(idx);
      for (int masked = 0; masked < 2; masked++) {
        int tk = masked ? Tk : T;
        std::vector<float> img = junk;
        float *gimg = pool.up(junk);
        sd_cpu_unpatchify_fwd(&cpu, img.data(), tok.data(), masked ? idx.data() : NULL, tk, B,
                              C, H, W, p);
        sd_cuda_unpatchify_fwd(be, gimg, gtok, masked ? gidx : NULL, tk, B, C, H, W, p);
        w.compare(masked ? "unpatchify_fwd(idx)" : "unpatchify_fwd", pool.down(gimg, nimg),
                  img);
        auto dtok0 = rng.vec((size_t)B * tk * F, 5.0f, 6.0f);
        std::vector<float> dtok = dtok0;
        float *gdtok = pool.up(dtok0);
        sd_cpu_unpatchify_bwd(&cpu, dtok.data(), x.data(), masked ? idx.data() : NULL, tk, B,
                              C, H, W, p);
        sd_cuda_unpatchify_bwd(be, gdtok, gx, masked ? gidx : NULL, tk, B, C, H, W, p);
        w.compare(masked ? "unpatchify_bwd(idx)" : "unpatchify_bwd",
                  pool.down(gdtok, dtok.size()), dtok);
      }
    }
    // label-table rows, with repeated labels
    {
      int B = 9, D = 130, rows = 5;
      std::vector<int32_t> y(B);
      for (int b = 0; b < B; b++) y[b] = (int32_t)(rng.next() % (uint32_t)rows);
      y[0] = y[4] = y[8] = 2;
      auto table = rng.vec((size_t)rows * D, -1.0f, 1.0f);
      auto out = rng.vec((size_t)B * D, -1.0f, 1.0f), dout = rng.vec((size_t)B * D, -1.0f, 1.0f);
      auto dtable = rng.vec((size_t)rows * D, -1.0f, 1.0f);
      float *gtable = pool.up(table), *gout = pool.up(out), *gdout = pool.up(dout),
            *gdtable = pool.up(dtable);
      int32_t *gy = pool.up(y);
      sd_cpu_embed_rows_fwd(&cpu, out.data(), table.data(), y.data(), B, D, rows);
      sd_cuda_embed_rows_fwd(be, gout, gtable, gy, B, D, rows);
      w.compare("embed_rows_fwd", pool.down(gout, out.size()), out);
      sd_cpu_embed_rows_bwd(&cpu, dtable.data(), dout.data(), y.data(), B, D);
      sd_cuda_embed_rows_bwd(be, gdtable, gdout, gy, B, D);
      w.compare("embed_rows_bwd", pool.down(gdtable, dtable.size()), dtable);
    }
    // token gather / scatter-add / merge
    {
      int B = 3, T = 40, Tk = 13, D = 72;
      size_t nb = (size_t)B * T * D, ns = (size_t)B * Tk * D;
      auto idx = rng.subset(B, T, Tk);
      auto x = rng.vec(nb, -1.0f, 1.0f), sub = rng.vec(ns, -1.0f, 1.0f);
      int32_t *gidx = pool.up(idx);
      float *gx = pool.up(x), *gsub = pool.up(sub);
      std::vector<float> out(ns);
      float *gout = pool.up(out);
      sd_cpu_gather_tokens(&cpu, out.data(), x.data(), idx.data(), B, T, Tk, D);
      sd_cuda_gather_tokens(be, gout, gx, gidx, B, T, Tk, D);
      w.compare("gather_tokens", pool.down(gout, ns), out);

      std::vector<float> xs = x;
      float *gxs = pool.up(x);
      sd_cpu_scatter_add_tokens(&cpu, xs.data(), sub.data(), idx.data(), B, T, Tk, D);
      sd_cuda_scatter_add_tokens(be, gxs, gsub, gidx, B, T, Tk, D);
      w.compare("scatter_add_tokens", pool.down(gxs, nb), xs);

      std::vector<float> merged(nb);
      float *gmerged = pool.up(merged);
      sd_cpu_merge_tokens_fwd(&cpu, merged.data(), x.data(), sub.data(), idx.data(), B, T, Tk,
                              D);
      sd_cuda_merge_tokens_fwd(be, gmerged, gx, gsub, gidx, B, T, Tk, D);
      w.compare("merge_tokens_fwd", pool.down(gmerged, nb), merged);
      float *gbase = pool.up(x);
      sd_cuda_merge_tokens_fwd(be, gbase, gbase, gsub, gidx, B, T, Tk, D);
      w.compare("merge_tokens_fwd(in place)", pool.down(gbase, nb), merged);

      auto dout = rng.vec(nb, -1.0f, 1.0f), dbase0 = rng.vec(nb, -1.0f, 1.0f);
      auto dsub0 = rng.vec(ns, -1.0f, 1.0f);
      std::vector<float> dbase = dbase0, dsub = dsub0;
      float *gdout = pool.up(dout), *gdbase = pool.up(dbase0), *gdsub = pool.up(dsub0);
      sd_cpu_merge_tokens_bwd(&cpu, dbase.data(), dsub.data(), dout.data(), idx.data(), B, T,
                              Tk, D);
      sd_cuda_merge_tokens_bwd(be, gdbase, gdsub, gdout, gidx, B, T, Tk, D);
      w.compare("merge_tokens_bwd.dbase", pool.down(gdbase, nb), dbase);
      w.compare("merge_tokens_bwd.dsub", pool.down(gdsub, ns), dsub);
      std::vector<float> dbase2 = dbase0;
      float *gdbase2 = pool.up(dbase0);
      sd_cpu_merge_tokens_bwd(&cpu, dbase2.data(), NULL, dout.data(), idx.data(), B, T, Tk, D);
      sd_cuda_merge_tokens_bwd(be, gdbase2, NULL, gdout, gidx, B, T, Tk, D);
      w.compare("merge_tokens_bwd.dbase(no dsub)", pool.down(gdbase2, nb), dbase2);
    }
    SD_CUDA_CHECK(cudaStreamSynchronize(st));
  }
  sd_backend_cpu_destroy(&cpu);
  const double tol = 1e-5;
  snprintf(err, len, "%s: worst %s", w.err <= tol ? "ok" : "FAILED", w.what);
  return w.err <= tol ? 0 : -1;
}
