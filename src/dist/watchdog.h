// The watchdog: turns a hung or dead rank into a prompt, named failure instead of a hang.
//
// 1. Deadlines: every collective is bracketed by sd_watchdog_enter / sd_watchdog_leave. A
//    thread checks once a second; if one has been entered for more than the timeout, it prints
//    "[rank r@host] error: <what> at step <s> has not completed after <t> s: ..." and ends the
//    whole job (MPI_Abort with thread-multiple MPI, else _exit) with exit code 3.
// 2. Heartbeats (MPI with thread-multiple and world > 1): each rank's watchdog thread sends a
//    small message (step, what it is doing) to rank 0 every second on the diagnostic
//    communicator, and rank 0 sends one to every rank. Rank 0 names a rank it has not heard
//    from for the timeout (a stopped or dead process); the others name rank 0 likewise.
// Without MPI (world of one) only the deadlines run.
#ifndef SD_WATCHDOG_H
#define SD_WATCHDOG_H

#include "dist/dist.h"

// Starts the thread (timeout_s > 0; 0 disables everything). Call once after sd_dist_init.
void sd_watchdog_start(sd_dist *d, double timeout_s);
// Stops the thread (before sd_dist_finalize). Safe to call when not started.
void sd_watchdog_stop(void);
// Brackets a blocking operation. Up to 4 threads may be inside at once (main, communication,
// loader); enter returns a slot for leave. what must stay valid until leave.
int sd_watchdog_enter(const char *what);
void sd_watchdog_leave(int slot);
// The step the main loop is at (shown in messages and heartbeats).
void sd_watchdog_set_step(long step);

#endif
