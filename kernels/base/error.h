// The one fatal-error path: prints "[rank r@host] file:line function: message" (+ hint),
// then ends the whole job (MPI_Abort once the distributed layer installs its hook).
#ifndef SD_ERROR_H
#define SD_ERROR_H

#include <stddef.h>

#if defined(__GNUC__)
#define SD_NORETURN __attribute__((noreturn))
#define SD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SD_NORETURN
#define SD_PRINTF(a, b)
#endif

SD_NORETURN void sd_fatal_at(const char *file, int line, const char *func, const char *hint,
                             const char *fmt, ...) SD_PRINTF(5, 6);

// Fatal error naming the call site. Use SD_FATAL_HINT to add a "hint:" line for the user.
#define SD_FATAL(...) sd_fatal_at(__FILE__, __LINE__, __func__, NULL, __VA_ARGS__)
#define SD_FATAL_HINT(hint, ...) sd_fatal_at(__FILE__, __LINE__, __func__, (hint), __VA_ARGS__)

// Installed by the distributed layer: ends every rank (MPI_Abort). Default: exit(code).
void sd_error_set_abort_hook(void (*hook)(int code));
void sd_error_set_rank(int rank);
int sd_error_rank(void);

// For functions that report instead of exiting: formats the message into err (errlen bytes)
// and returns -1, so `return sd_errorf(err, errlen, "...", ...);` ends the function.
int sd_errorf(char *err, size_t errlen, const char *fmt, ...) SD_PRINTF(3, 4);

// Allocation that cannot fail silently.
void *sd_xmalloc(size_t bytes, const char *what);
void *sd_xcalloc(size_t count, size_t size, const char *what);

#endif
