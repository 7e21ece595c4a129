/*
 * conch-init: the minimal init behind `run --init` (Docker uses tini as docker-init).
 *
 * As pid 1 of a container it must do two things a normal program does not:
 *   - reap every zombie re-parented to it (orphans of the container's processes), and
 *   - forward the signals it receives to the real program, since the kernel drops
 *     signals to pid 1 that have no handler (so `docker stop`'s SIGTERM would be lost).
 * It forks the program (argv after an optional "--"), forwards signals to the child's
 * process group leader, reaps everything, and exits with the child's status (128+signal
 * when the child was killed by a signal, as a shell would report it).
 *
 * Bind-mounted read-only at /sbin/docker-init by the engine; built static so it needs
 * nothing from the image.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int first = 1;
    if (first < argc && strcmp(argv[first], "--") == 0)
        first++;
    if (first >= argc) {
        fprintf(stderr, "usage: conch-init [--] PROGRAM [ARGS...]\n");
        return 2;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t child = fork();
    if (child < 0) {
        perror("conch-init: fork");
        return 1;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        setpgid(0, 0);
        execvp(argv[first], argv + first);
        fprintf(stderr, "conch-init: exec %s: %s\n", argv[first], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    /* also works when not pid 1 (e.g. a test): orphans come to us */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    for (;;) {
        int sig;
        siginfo_t info;
        struct timespec tick = {1, 0};
        sig = sigtimedwait(&all, &info, &tick);
        if (sig > 0 && sig != SIGCHLD) {
            if (kill(child, sig) < 0 && errno == ESRCH)
                kill(-child, sig);
            continue;
        }
        for (;;) {
            int status;
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0)
                break;
            if (pid == child) {
                /* reap what is left quickly, then report the program's status */
                while (waitpid(-1, NULL, WNOHANG) > 0)
                    ;
                if (WIFSIGNALED(status))
                    return 128 + WTERMSIG(status);
                return WEXITSTATUS(status);
            }
        }
    }
}
