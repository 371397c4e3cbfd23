// `sddit selftest`: the device self-test from the command line (see selftest.h).
#ifndef SD_CMD_SELFTEST_H
#define SD_CMD_SELFTEST_H

int sd_cmd_selftest(int argc, char **argv);

#endif
