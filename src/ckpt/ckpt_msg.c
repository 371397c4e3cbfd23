// Messages and HDF5 errors for the checkpoint module (see ckpt_msg.h).
#include "ckpt/ckpt_msg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sd_ckpt_set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

void sd_ckpt_quiet_begin(sd_ckpt_quiet *q) {
  H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void sd_ckpt_quiet_end(const sd_ckpt_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

typedef struct h5_detail {
  int err_no;          // from an "errno = N" in the stack, else 0
  char desc[200];      // the most specific description
} h5_detail;

static herr_t detail_cb(unsigned n, const H5E_error2_t *e, void *data) {
  h5_detail *d = data;
  if (!e->desc) return 0;
  const char *p = strstr(e->desc, "errno = ");
  if (p && !d->err_no) d->err_no = atoi(p + 8);
  if (n == 0) snprintf(d->desc, sizeof d->desc, "%s", e->desc);
  return 0;
}

void sd_ckpt_h5_reason(char *buf, size_t len, int saved_errno) {
  h5_detail d = {0, ""};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, detail_cb, &d);
  if (d.err_no) snprintf(buf, len, "%s", strerror(d.err_no));
  else if (d.desc[0]) snprintf(buf, len, "HDF5: %s", d.desc);
  else if (saved_errno) snprintf(buf, len, "%s", strerror(saved_errno));
  else snprintf(buf, len, "unknown HDF5 error");
}
