// Building the model's option structs from a run configuration (see sddit_config.h).
#include "objective/sddit_config.h"

#include <string.h>

void sd_sddit_opts_from_config(const sd_config *c, sd_sddit_opts *o) {
  memset(o, 0, sizeof *o);
  o->encoder_depth = c->encoder_depth;
  o->visible_tokens = sd_config_visible_tokens(c);
  o->gen_visible_only = strcmp(c->gen_loss_tokens, "visible") == 0;
  o->sigma_data = c->sigma_data;
  o->lambda_dis = c->lambda_dis;
  o->tau_s = c->tau_s;
  o->tau_t_start = c->tau_t_start;
  o->tau_t_end = c->tau_t_end;
  o->teacher_temp_warmup = c->teacher_temp_warmup;
  o->center_momentum = c->center_momentum;
  o->teacher_momentum = c->teacher_momentum;
  o->total_steps = c->steps;
  o->lr = c->lr;
  o->warmup_steps = c->warmup_steps;
  o->lr_cosine = strcmp(c->lr_schedule, "cosine") == 0;
  o->lr_min = c->lr_min;
  o->beta1 = c->beta1;
  o->beta2 = c->beta2;
  o->adam_eps = c->eps;
  o->weight_decay = c->weight_decay;
  o->grad_clip = c->grad_clip;
  o->ema_decay = c->ema_decay;
}

void sd_head_config_from_config(const sd_config *c, sd_head_config *h) {
  *h = (sd_head_config){.in_dim = c->model.hidden, .hidden = c->head_hidden,
                        .bottleneck = c->head_bottleneck, .prototypes = c->head_prototypes};
}

void sd_random_opts_from_config(const sd_config *c, sd_random_opts *o) {
  memset(o, 0, sizeof *o);
  o->seed = c->seed;
  o->p_mean = c->p_mean;
  o->p_std = c->p_std;
  o->teacher_log_uniform = strcmp(c->teacher_sigma_mode, "log_uniform") == 0;
  o->teacher_sigma = c->teacher_sigma;
  o->sigma_min = c->sigma_min;
  o->label_dropout = c->label_dropout;
  o->num_classes = c->model.num_classes;
  o->tokens = sd_dit_tokens(&c->model);
  o->visible_tokens = sd_config_visible_tokens(c);
  o->elements = c->model.in_channels * c->model.input_size * c->model.input_size;
}
