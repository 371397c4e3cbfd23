// PyTorch parity of the DiT: loads the fixture written by tests/reference/make_dit_fixture.py
// (float64 PyTorch, perturbed initialisation), runs our forward and backward on the CPU
// backend, and compares the output, the loss and every parameter gradient. Then, for each op,
// perturbs that op alone and checks that the comparison fails, so the test can fail.
#include "check.h"
#include "error.h"
#include "fixture.h"
#include "perturb.h"
#include "tolerances.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double rel_err(const float *a, const float *ref, size_t n) {
  double maxref = 0, maxdiff = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i])) return INFINITY;
    maxref = fmax(maxref, fabs((double)ref[i]));
    maxdiff = fmax(maxdiff, fabs((double)a[i] - ref[i]));
  }
  return maxref > 0 ? maxdiff / maxref : maxdiff;
}

// Runs both cases on backend be. Returns the worst err/tol ratio over every compared tensor;
// with verbose, records one check per tensor and prints the figures.
static double run_parity(sd_backend *be, const fixture *fx, int verbose) {
  sd_dit m;
  sd_dit_create(&m, &fx->cfg, be);
  memcpy(m.params, fx->params, sizeof(float) * m.table.total);
  const sd_dit_config *c = &fx->cfg;
  const int T = sd_dit_tokens(c), D = c->hidden;
  double worst = 0;
  if (verbose) check_close("pos_embed", m.pos, fx->pos, (size_t)T * D, PARITY_OUT_RTOL, NULL);
  double max_out = 0, max_grad = 0;
  for (int k = 0; k < 2; k++) {
    const fixture_case *fc = &fx->cases[k];
    const int B = fc->B;
    const size_t nout = (size_t)B * c->out_channels * c->input_size * c->input_size;
    sd_dit_acts a;
    sd_dit_acts_create(&a, &m, B, T);
    const int32_t *idx = strcmp(fc->name, "masked") == 0 ? fc->keep_idx : NULL;
    sd_dit_forward(&m, &a, B, fc->x, fc->c_noise, fc->y, idx, fc->Tk);
    char what[128];
    double e;
    if (fc->t_features) {
      e = rel_err(a.tfeat, fc->t_features, (size_t)B * c->freq_dim);
      worst = fmax(worst, e / PARITY_OUT_RTOL);
      if (verbose) check_close("full/t_features", a.tfeat, fc->t_features, (size_t)B * c->freq_dim, PARITY_OUT_RTOL, NULL);
      e = rel_err(a.c, fc->c, (size_t)B * D);
      worst = fmax(worst, e / PARITY_OUT_RTOL);
      if (verbose) check_close("full/c", a.c, fc->c, (size_t)B * D, PARITY_OUT_RTOL, NULL);
    }
    e = rel_err(a.out, fc->out, nout);
    worst = fmax(worst, e / PARITY_OUT_RTOL);
    max_out = fmax(max_out, e);
    snprintf(what, sizeof what, "%s/out", fc->name);
    if (verbose) check_close(what, a.out, fc->out, nout, PARITY_OUT_RTOL, NULL);
    float loss;
    be->ops->mse_fwd(be, &loss, a.out, fc->target, nout);
    double le = fabs(loss - fc->loss) / fabs(fc->loss);
    worst = fmax(worst, le / PARITY_LOSS_RTOL);
    if (verbose)
      check_true(le <= PARITY_LOSS_RTOL, "%s/loss got %.9g want %.9g rel_err %.3e (tol %.0e)",
                 fc->name, loss, fc->loss, le, PARITY_LOSS_RTOL);
    float *dout = sd_xmalloc(sizeof(float) * nout, "dout");
    be->ops->mse_bwd(be, dout, a.out, fc->target, nout, 1.0f);
    memset(m.grads, 0, sizeof(float) * m.table.total);
    sd_dit_backward(&m, &a, B, fc->y, dout);
    double case_grad = 0;
    for (int i = 0; i < m.table.count; i++) {
      const sd_param_info *p = &m.table.items[i];
      e = rel_err(m.grads + p->offset, fc->grads + p->offset, p->numel);
      worst = fmax(worst, e / PARITY_GRAD_RTOL);
      case_grad = fmax(case_grad, e);
      snprintf(what, sizeof what, "%s/grad %s", fc->name, p->name);
      if (verbose)
        check_close(what, m.grads + p->offset, fc->grads + p->offset, p->numel,
                    PARITY_GRAD_RTOL, NULL);
    }
    max_grad = fmax(max_grad, case_grad);
    if (verbose)
      printf("# %s: output rel_err %.3e, loss rel_err %.3e, worst gradient rel_err %.3e\n",
             fc->name, e, le, case_grad);
    free(dout);
    sd_dit_acts_destroy(&a, &m);
  }
  if (verbose)
    printf("# parity summary: max output rel_err %.3e (tol %.0e), max gradient rel_err %.3e "
           "(tol %.0e)\n", max_out, PARITY_OUT_RTOL, max_grad, PARITY_GRAD_RTOL);
  sd_dit_destroy(&m);
  return worst;
}

int main(int argc, char **argv) {
  char path[512];
  if (argc > 1) snprintf(path, sizeof path, "%s", argv[1]);
  else fixture_path("dit_tiny.h5", path, sizeof path);
  fixture fx;
  fixture_load(&fx, path);
  printf("# fixture %s: hidden %d, depth %d, heads %d, tokens %d, batch %d\n", path,
         fx.cfg.hidden, fx.cfg.depth, fx.cfg.heads, sd_dit_tokens(&fx.cfg), fx.cases[0].B);
  sd_backend be;
  sd_backend_cpu_init(&be, 0);
  run_parity(&be, &fx, 1);
  // Each op perturbed alone (output scaled by 1 + 1e-2) must break parity.
  for (int k = 0; k < perturb_count(); k++) {
    sd_backend pb;
    perturb_backend(&pb, k);
    double w = run_parity(&pb, &fx, 0);
    check_true(w > 1.0, "perturbing %-20s is detected (worst err/tol %.3g)", perturb_name(k), w);
  }
  return check_exit("test_dit_parity");
}
