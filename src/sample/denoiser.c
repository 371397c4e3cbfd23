// The EDM denoiser of a trained model (see denoiser.h).
#include "sample/denoiser.h"
#include "ckpt/ckpt.h"
#include "error.h"
#include "util/h5io.h"
#include "sample/sampler.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- the configuration from text -------------------------------------------------------------

int sd_config_from_text(sd_config *c, const char *text, char *err, size_t errlen) {
  // The config parser reads files (two passes, line numbers in messages): hand it one.
  const char *dir = getenv("TMPDIR");
  char path[600];
  snprintf(path, sizeof path, "%s/sddit-config-XXXXXX", dir && *dir ? dir : "/tmp");
  int fd = mkstemp(path);
  if (fd < 0)
    return sd_errorf(err, errlen, "cannot create a temporary file in %s (set TMPDIR): %s",
                     dir && *dir ? dir : "/tmp", strerror(errno));
  size_t len = strlen(text), done = 0;
  while (done < len) {
    ssize_t k = write(fd, text + done, len - done);
    if (k <= 0) {
      int e = errno;
      close(fd);
      unlink(path);
      return sd_errorf(err, errlen, "cannot write the temporary file %s: %s", path,
                       strerror(e));
    }
    done += (size_t)k;
  }
  close(fd);
  sd_config work;
  sd_config_defaults(&work, NULL);
  char msg[768];
  int rc = sd_config_load_ini(&work, path, msg, sizeof msg);
  unlink(path);
  if (rc != 0) {
    // the message starts with the temporary file's name; keep only "line: key: problem"
    const char *p = strncmp(msg, path, strlen(path)) == 0 ? msg + strlen(path) + 1 : msg;
    return sd_errorf(err, errlen, "line %s", p);
  }
  if (sd_config_validate(&work, msg, sizeof msg) != 0) return sd_errorf(err, errlen, "%s", msg);
  *c = work;
  return 0;
}

// ---- reading a checkpoint's DiT weights ------------------------------------------------------

// Reads count elements [0, count) of a 1-D dataset converted to mtype into dst.
static int read_prefix(hid_t f, const char *name, hid_t mtype, size_t count, void *dst) {
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
  if (ds < 0) return -1;
  hid_t fsp = H5Dget_space(ds);
  hsize_t dims[2] = {0, 0}, start[1] = {0}, cnt[1] = {count};
  int rc = -1;
  if (H5Sget_simple_extent_ndims(fsp) == 1 && H5Sget_simple_extent_dims(fsp, dims, NULL) == 1 &&
      dims[0] >= count) {
    hid_t msp = H5Screate_simple(1, cnt, NULL);
    if (H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0 &&
        H5Dread(ds, mtype, msp, fsp, H5P_DEFAULT, dst) >= 0)
      rc = 0;
    H5Sclose(msp);
  }
  H5Sclose(fsp);
  H5Dclose(ds);
  return rc;
}

// The checkpoint's tensor table must begin with this build's DiT table (names, offsets,
// element counts): the DiT part of its flat buffers then has our layout.
static int check_table(hid_t f, const sd_param_table *t, char *err, size_t errlen) {
  const size_t k = (size_t)t->count;
  char *names = calloc(k, 64);
  unsigned long long *offs = calloc(k, sizeof *offs), *numel = calloc(k, sizeof *numel);
  hid_t nt = H5Tcopy(H5T_C_S1);
  H5Tset_size(nt, 64);
  H5Tset_strpad(nt, H5T_STR_NULLPAD);
  int rc = 0;
  if (!names || !offs || !numel) {
    rc = sd_errorf(err, errlen, "out of memory reading the tensor table");
  } else if (read_prefix(f, "/tensors/names", nt, k, names) != 0 ||
             read_prefix(f, "/tensors/offsets", H5T_NATIVE_ULLONG, k, offs) != 0 ||
             read_prefix(f, "/tensors/numel", H5T_NATIVE_ULLONG, k, numel) != 0) {
    rc = sd_errorf(err, errlen, "its tensor table has fewer than the %zu DiT tensors that its "
                   "configuration implies", k);
  } else {
    for (size_t i = 0; i < k && rc == 0; i++) {
      char nm[65];
      memcpy(nm, names + 64 * i, 64);
      nm[64] = '\0';
      const sd_param_info *p = &t->items[i];
      if (strcmp(nm, p->name) != 0 || offs[i] != p->offset || numel[i] != p->numel)
        rc = sd_errorf(err, errlen, "tensor %zu is %s (offset %llu, %llu values) but this "
                       "build's DiT for its configuration has %s (offset %zu, %zu values)",
                       i, nm, offs[i], numel[i], p->name, p->offset, p->numel);
    }
  }
  H5Tclose(nt);
  free(names);
  free(offs);
  free(numel);
  return rc;
}

int sd_dn_weights_read(sd_dn_weights *w, const char *path, int raw, char *err, size_t errlen) {
  memset(w, 0, sizeof *w);
  snprintf(w->path, sizeof w->path, "%s", path);
  w->raw = raw;
  char msg[1024];
  if (sd_ckpt_verify(path, msg, sizeof msg) != 0) return sd_errorf(err, errlen, "%s", msg);
  H5E_auto2_t efunc;
  void *edata;
  H5Eget_auto2(H5E_DEFAULT, &efunc, &edata);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  int rc = 0;
  sd_param_table t = {0};
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  long long step = 0, dit_total = 0;
  if (f < 0) {
    rc = sd_errorf(err, errlen, "%s: cannot open (it verified a moment ago)", path);
    goto out;
  }
  w->config_text = sd_h5_attr_string_dup(f, "config");
  if (!w->config_text || sd_h5_attr_num(f, "step", H5T_NATIVE_LLONG, &step) != 0 ||
      sd_h5_attr_num(f, "dit_total", H5T_NATIVE_LLONG, &dit_total) != 0) {
    rc = sd_errorf(err, errlen, "%s: attribute config, step or dit_total is unreadable", path);
    goto out;
  }
  w->step = (long)step;
  if (sd_config_from_text(&w->cfg, w->config_text, msg, sizeof msg) != 0) {
    rc = sd_errorf(err, errlen, "%s: its configuration does not load in this build: %s", path,
                   msg);
    goto out;
  }
  sd_dit_param_table(&w->cfg.model, &t);
  if ((unsigned long long)dit_total != t.total) {
    rc = sd_errorf(err, errlen, "%s: dit_total is %lld but its configuration's DiT has %zu "
                   "parameters in this build", path, dit_total, t.total);
    goto out;
  }
  if (check_table(f, &t, msg, sizeof msg) != 0) {
    rc = sd_errorf(err, errlen, "%s: %s", path, msg);
    goto out;
  }
  w->count = t.total;
  w->params = malloc(sizeof(float) * (w->count ? w->count : 1));
  if (!w->params) {
    rc = sd_errorf(err, errlen, "%s: cannot allocate %zu bytes for the weights", path,
                   sizeof(float) * w->count);
    goto out;
  }
  const char *ds = raw ? "/student/params" : "/ema";
  if (read_prefix(f, ds, H5T_NATIVE_FLOAT, w->count, w->params) != 0) {
    rc = sd_errorf(err, errlen, "%s: cannot read the first %zu values of %s", path, w->count,
                   ds);
    goto out;
  }
out:
  if (f >= 0) H5Fclose(f);
  sd_param_table_free(&t);
  H5Eset_auto2(H5E_DEFAULT, efunc, edata);
  if (rc != 0) sd_dn_weights_free(w);
  return rc;
}

void sd_dn_weights_free(sd_dn_weights *w) {
  free(w->config_text);
  free(w->params);
  w->config_text = NULL;
  w->params = NULL;
  w->count = 0;
}

// ---- the denoiser ----------------------------------------------------------------------------

size_t sd_denoiser_floats_per_sample(const sd_dit_config *c) {
  // the forward-only arena of one sample at T tokens (an upper bound per sample: it includes
  // the alignment padding; fp32 storage, the larger), plus x, xin and D
  return (sd_dit_acts_bytes(c, 1, sd_dit_tokens(c), 1, SD_F32) + sizeof(float) - 1) /
             sizeof(float) +
         3 * (size_t)c->in_channels * c->input_size * c->input_size;
}

void sd_denoiser_create(sd_denoiser *d, const sd_dit_config *cfg, double sigma_data,
                        const float *params_host, int capacity, sd_backend *be) {
  memset(d, 0, sizeof *d);
  if (cfg->out_channels != cfg->in_channels)
    SD_FATAL("the EDM denoiser needs model.out_channels (%d) == model.in_channels (%d)",
             cfg->out_channels, cfg->in_channels);
  if (capacity < 1) SD_FATAL("denoiser capacity %d must be positive", capacity);
  if (!(sigma_data > 0)) SD_FATAL("sigma_data %g must be positive", sigma_data);
  d->be = be;
  d->cfg = *cfg;
  d->sigma_data = sigma_data;
  d->cap = capacity;
  d->n = (size_t)cfg->in_channels * cfg->input_size * cfg->input_size;
  sd_param_table t;
  sd_dit_param_table(cfg, &t);
  const size_t total = t.total;
  sd_param_table_free(&t);
  const sd_ops *op = be->ops;
  d->params = op->alloc(be, sizeof(float) * total);
  op->to_device(be, d->params, params_host, sizeof(float) * total);
  sd_dit_create_in(&d->dit, cfg, be, d->params, NULL);
  sd_dit_acts_create_inference(&d->acts, &d->dit, capacity, sd_dit_tokens(cfg));
  const size_t cn = (size_t)capacity * d->n;
  d->x = op->alloc(be, sizeof(float) * cn);
  d->xin = op->alloc(be, sizeof(float) * cn);
  d->D = op->alloc(be, sizeof(float) * cn);
  d->coef = op->alloc(be, sizeof(float) * 5 * (size_t)capacity);
  d->y = op->alloc(be, sizeof(int32_t) * (size_t)capacity);
  d->loss = op->alloc(be, sizeof(float) * 4);
  d->host_coef = sd_xcalloc(5 * (size_t)capacity, sizeof(float), "preconditioning");
}

void sd_denoiser_destroy(sd_denoiser *d) {
  sd_backend *be = d->be;
  if (!be) return;
  sd_dit_acts_destroy(&d->acts, &d->dit);
  sd_dit_destroy(&d->dit);
  void *bufs[] = {d->params, d->x, d->xin, d->D, d->coef, d->y, d->loss};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->ops->free(be, bufs[i]);
  free(d->host_coef);
  memset(d, 0, sizeof *d);
}

void sd_denoiser_eval(sd_denoiser *d, const float *x, const float *sigma, const int32_t *y,
                      int B, float *D_out) {
  sd_backend *be = d->be;
  const sd_ops *op = be->ops;
  const size_t n = d->n;
  const int cap = d->cap, K = d->cfg.num_classes, T = sd_dit_tokens(&d->cfg);
  const double sd = d->sigma_data;
  for (int b = 0; b < B; b++) {
    if (!(sigma[b] > 0.0f) || !isfinite(sigma[b]))
      SD_FATAL("noise level %g of sample %d is not positive and finite", sigma[b], b);
    if (y[b] < 0 || y[b] > K)
      SD_FATAL("label %d of sample %d is outside [0, %d] (%d = the null class)", y[b], b, K, K);
  }
  for (int b0 = 0; b0 < B; b0 += cap) {
    const int nb = B - b0 < cap ? B - b0 : cap;
    float *cs = d->host_coef, *co = cs + cap, *ci = co + cap, *cn = ci + cap, *wt = cn + cap;
    for (int b = 0; b < nb; b++) {
      const sd_edm_coef k = sd_edm_precondition(sigma[b0 + b], sd);  // as training forms D
      cs[b] = k.c_skip;
      co[b] = k.c_out;
      ci[b] = k.c_in;
      cn[b] = k.c_noise;
      wt[b] = 0.0f;  // the loss edm_loss_fwd also computes is not used
    }
    float *dcs = d->coef, *dco = dcs + cap, *dci = dco + cap, *dcn = dci + cap, *dwt = dcn + cap;
    op->to_device(be, d->coef, d->host_coef, sizeof(float) * 5 * (size_t)cap);
    op->to_device(be, d->x, x + (size_t)b0 * n, sizeof(float) * (size_t)nb * n);
    op->to_device(be, d->y, y + b0, sizeof(int32_t) * (size_t)nb);
    op->scale_rows(be, d->xin, d->x, dci, nb, n);                      // c_in x
    sd_dit_forward(&d->dit, &d->acts, nb, d->xin, dcn, d->y, NULL, T);  // F (nb, C, H, W)
    // D = c_skip x + c_out F, by the op the training objective forms D with
    op->edm_loss_fwd(be, d->loss, d->D, d->acts.out, d->x, d->x, dcs, dco, dwt, NULL, nb, n);
    op->to_host(be, D_out + (size_t)b0 * n, d->D, sizeof(float) * (size_t)nb * n);
    d->rows += nb;
  }
}

void sd_denoiser_fn(void *ctx, const float *x, const float *sigma, const int32_t *y, int B,
                    float *D_out) {
  sd_denoiser_eval((sd_denoiser *)ctx, x, sigma, y, B, D_out);
}
