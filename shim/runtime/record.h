/* Small pieces every verb of conch-runtime's front needs to read a container's record
 * (record.c), as conch/runtime/state.py reads it. */
#ifndef CONCH_RECORD_H
#define CONCH_RECORD_H

#include <stddef.h>

/* state.valid_id: letters, digits and _ + - . ; not "." or ".." (it names a directory). */
int front_valid_id(const char *id);

/* The whole of a small file (NUL-terminated, its length in *len), or NULL when it is
 * missing, unreadable or max bytes or more long (not ours to judge). */
char *front_slurp(const char *path, size_t max, size_t *len);

/* state.process_start: the process's start time (field 22 of /proc/PID/stat), -1 when
 * there is no such live process (zombies are dead). */
long long front_process_start(long long pid);

/* state.process_start(pid) == start, for a live (not zombie) process. */
int front_same_process(long long pid, long long start);

/* conch.runtime.main._log_error: "conch-runtime: MSG" on stderr and, with a log file,
 * runc's line in it (format "json": {"level","msg","time"}, else logfmt text). */
void front_log_error(const char *log, const char *format, const char *msg);

#endif
