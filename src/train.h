// `sddit train`: the single-rank training loop on the synthetic data source (the HDF5
// loader and data parallelism plug in here later).
#ifndef SD_TRAIN_H
#define SD_TRAIN_H

int sd_cmd_train(int argc, char **argv);

#endif
