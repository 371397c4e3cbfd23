// `sddit inspect FILE...`: summarises a dataset (layout, per-channel statistics, label
// histogram, first problem) or a checkpoint (attributes, configuration, checksums), chosen by
// the file's format attribute. Exit status 0 when every file is valid, 1 otherwise.
#ifndef SD_INSPECT_H
#define SD_INSPECT_H

int sd_cmd_inspect(int argc, char **argv);

#endif
