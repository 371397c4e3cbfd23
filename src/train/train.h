// `sddit train`: the SD-DiT training loop on the synthetic source or an HDF5 dataset, one rank
// or data-parallel over MPI ranks, with checkpoints, resume, the progress line and metrics.
#ifndef SD_TRAIN_H
#define SD_TRAIN_H

int sd_cmd_train(int argc, char **argv);

#endif
