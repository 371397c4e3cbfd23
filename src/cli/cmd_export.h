// `sddit export` and `sddit import`: the DiT of a checkpoint as a safetensors file under DiT's
// parameter names and PyTorch shapes, and a checkpoint built from such a file.
//
// export --checkpoint FILE|DIR [--weights ema|raw] --out MODEL.safetensors
//   FILE, or the newest checkpoint of DIR that verifies. ema (default): the generation EMA
//   (/ema); raw: the student's DiT (/student/params, without the projection head). Tensors:
//   pos_embed (1, T, D), the fixed 2-D sin-cos table, as DiT registers it (not trained; the
//   metadata says so), then every DiT tensor of the parameter table in its order
//   (x_embedder.proj.weight (D, C, p, p), ..., final_layer.linear.bias), all F32. Metadata:
//   format "sddit-dit", format_version "1", weights "ema"|"raw", train_step, git_rev (of the
//   run that wrote the checkpoint), exported_by ("sddit <rev>"), pos_embed (a note), config
//   (the checkpoint's INI text).
//
// import --in MODEL.safetensors --out CKPT.h5 [--config FILE.ini]
//   The model configuration comes from --config when given, else from the "config" metadata.
//   Every DiT tensor must be present with its shape (F32; F16/BF16 are converted with a
//   warning); pos_embed, if present, must be (1, T, D) (a warning if its values are not the
//   fixed table, which is never imported); any other tensor is listed in a warning and
//   ignored. The checkpoint: student DiT = teacher DiT = generation EMA = the file's weights,
//   the projection head initialised as training does (sd_head_init_host keyed by train.seed of
//   the configuration; the teacher's head is a copy), zero Adam moments and center, step 0,
//   data_cursor 0. It is written atomically to exactly --out (through a temporary directory
//   next to it).
#ifndef SD_CMD_EXPORT_H
#define SD_CMD_EXPORT_H

int sd_cmd_export(int argc, char **argv);
int sd_cmd_import(int argc, char **argv);

#endif
