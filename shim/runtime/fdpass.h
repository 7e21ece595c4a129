/* One file descriptor over a unix socket with SCM_RIGHTS (fdpass.c): the pty master to
 * --console-socket (as console.send_fd sends it), and the console socket's connection
 * from the front to its init. */
#ifndef CONCH_FDPASS_H
#define CONCH_FDPASS_H

#include <stddef.h>
#include <sys/types.h>

/* Send body[0..len) with fd attached (MSG_NOSIGNAL, EINTR retried): bytes sent or -1. */
ssize_t front_send_fd(int sock, const void *body, size_t len, int fd);

/* Receive up to size bytes into body and the one fd attached (close-on-exec) into *fd:
 * bytes received, with *fd -1 when none came, or -1 with errno. */
ssize_t front_recv_fd(int sock, void *body, size_t size, int *fd);

#endif
