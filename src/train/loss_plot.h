// The training losses as a picture: the history of the progress lines (step, L_gen, L_dis)
// drawn as two line charts side by side, with the axes' ranges written on them, as a PNG.
#ifndef SD_LOSS_PLOT_H
#define SD_LOSS_PLOT_H

#include <stddef.h>

typedef struct sd_loss_history {
  long *step;           // (count) 1-based steps of the progress lines, increasing
  float *gen, *dis;     // (count) L_gen, L_dis there
  size_t count, cap;
} sd_loss_history;

void sd_loss_history_add(sd_loss_history *h, long step, float gen, float dis);
// Adds the lines of a metrics file (train.metrics, the JSON lines the trainer writes) with
// step <= up_to: a resumed run's plot keeps what came before. A missing file adds nothing;
// lines that do not parse are skipped. Returns the number of points added.
size_t sd_loss_history_load(sd_loss_history *h, const char *metrics_path, long up_to);
void sd_loss_history_free(sd_loss_history *h);

// Writes the plot to path (atomically). Returns 0, or -1 with a message.
int sd_loss_plot_write(const sd_loss_history *h, const char *path, char *err, size_t errlen);

#endif
