/*
 * conch-shim: one small supervisor process per container (conch's conmon).
 *
 * The contract (flags, ready line, log format, attach protocol, exit file) is written
 * down in conch/shim/__init__.py; this file implements it. In the order things happen:
 *
 *   1. parse flags; fork, setsid, fork again (the engine's child exits at once, so the
 *      shim is nobody's child but init's/the engine's subreaper's and may outlive it);
 *      become a child subreaper; stdin/stderr -> /dev/null (stderr -> --debug-log).
 *   2. make the container's stdio (pipes, or a console socket that receives the pty
 *      master), run `RUNTIME --root RR create ...` then `start`, with the runtime's
 *      error output captured. (Warm mode, below main's helpers: the runtime was
 *      started ahead of time and gets create's argv and stdio over a socket.)
 *   3. write one JSON line to the original stdout ({"pid","shim_pid"} or {"error"}).
 *   4. one poll(2) loop: container output -> json-file log (+ rotation) and attached
 *      clients; client stdin -> container; SIGCHLD through a signalfd.
 *   5. init exits: drain output, write the exit file atomically, close clients, remove
 *      the socket, exit 0. The container is not deleted: the engine does that.
 *
 * `docker exec` comes in on the same socket ({"type":"exec"}, the process's stdio as
 * SCM_RIGHTS): the shim runs `RUNTIME exec --detach` without waiting for it in the loop,
 * the exec'd process is reparented to the shim (subreaper) when the runtime's
 * intermediate process exits, and the shim reaps it and writes its exit record like
 * the container's (see "exec" below).
 *
 * Single-threaded, no busy loops, every fd non-blocking and close-on-exec. Memory is
 * allocated lazily (line buffers, client queues) so an idle shim stays well under 1 MiB
 * of private memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define LINE_LIMIT (16 * 1024)          /* docker's log copier buffer: longer = partial */
#define CLIENT_QUEUE_LIMIT (1024 * 1024) /* a slower attach client is disconnected */
#define STDIN_LIMIT (1024 * 1024)        /* stop reading clients' stdin beyond this */
#define REQUEST_LIMIT 4096               /* one JSON request line */
#define MAX_CLIENTS 64
#define CAPTURE_LIMIT 8192               /* runtime error output kept for the report */
#define RUNTIME_TIMEOUT_MS (120 * 1000)  /* create/start/delete taking longer is killed */
#define DRAIN_TIMEOUT_MS 2000            /* output still open this long after init exits */
#define FLUSH_TIMEOUT_MS 1000            /* last output to attached clients at exit */
#define READ_CHUNK (32 * 1024)

/* ---- options ---------------------------------------------------------------------- */

static struct {
    char *id, *bundle, *runtime, *runtime_root, *exit_file, *socket_path, *log_path;
    char *debug_log;
    long long log_max_size;
    long log_max_files;
    int tty, open_stdin, no_start;
    char **runtime_args;
    int n_runtime_args;
} opt = {.log_max_size = 10LL * 1024 * 1024, .log_max_files = 3};

static int report_fd = 1; /* the engine's pipe until the ready line is written */
static int debug_on;

static void dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void dbg(const char *fmt, ...)
{
    if (!debug_on)
        return;
    char buf[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int n = snprintf(buf, sizeof buf, "%lld.%06ld conch-shim[%d]: ", (long long)ts.tv_sec,
                     ts.tv_nsec / 1000, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
}

/* ---- small helpers ---------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* RFC3339Nano in UTC with all nine digits: "2026-11-29T02:41:00.123456789Z". */
static void fmt_time(const struct timespec *ts, char out[40])
{
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%09uZ", (unsigned)(ts->tv_nsec % 1000000000));
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid/truncated. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/*
 * JSON string body of src into dst (room for 6*n bytes), as moby's json-file writer
 * does: control characters, '"' and '\\' escaped; <, > and & as \u003c.. (Go's HTML-safe
 * encoding); U+2028/2029 escaped; each invalid UTF-8 byte becomes \ufffd.
 */
static size_t json_escape(char *dst, const unsigned char *src, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *d = dst;
    size_t i = 0;
    while (i < n) {
        unsigned char c = src[i];
        if (c >= 0x80) {
            size_t len = utf8_len(src + i, n - i);
            if (len == 0) {
                memcpy(d, "\\ufffd", 6);
                d += 6;
                i++;
            } else if (len == 3 && c == 0xE2 && src[i + 1] == 0x80 &&
                       (src[i + 2] == 0xA8 || src[i + 2] == 0xA9)) {
                memcpy(d, src[i + 2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
                d += 6;
                i += 3;
            } else {
                memcpy(d, src + i, len);
                d += len;
                i += len;
            }
            continue;
        }
        i++;
        switch (c) {
        case '"': *d++ = '\\'; *d++ = '"'; break;
        case '\\': *d++ = '\\'; *d++ = '\\'; break;
        case '\n': *d++ = '\\'; *d++ = 'n'; break;
        case '\r': *d++ = '\\'; *d++ = 'r'; break;
        case '\t': *d++ = '\\'; *d++ = 't'; break;
        default:
            if (c < 0x20 || c == '<' || c == '>' || c == '&') {
                memcpy(d, "\\u00", 4);
                d[4] = hex[c >> 4];
                d[5] = hex[c & 15];
                d += 6;
            } else
                *d++ = (char)c;
        }
    }
    return (size_t)(d - dst);
}

/* ---- readiness report (before the poll loop) -------------------------------------- */

static void report(const char *line)
{
    if (report_fd < 0)
        return;
    write_all(report_fd, line, strlen(line));
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) { /* close the engine's pipe: it reads to EOF */
        dup2(null, report_fd);
        close(null);
    }
    report_fd = -1;
}

static void report_error(const char *msg)
{
    size_t n = strlen(msg);
    char *buf = malloc(n * 6 + 32);
    if (!buf) {
        report("{\"error\": \"out of memory\"}\n");
        return;
    }
    memcpy(buf, "{\"error\": \"", 11);
    size_t k = 11 + json_escape(buf + 11, (const unsigned char *)msg, n);
    memcpy(buf + k, "\"}\n", 4);
    report(buf);
    free(buf);
}

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dbg("fatal: %s", msg);
    report_error(msg);
    exit(1);
}

/* ---- children and exits ----------------------------------------------------------- */

static int sig_fd = -1;
static pid_t container_pid;
static int container_exited, container_status;
static struct timespec container_exit_time;
/* Children reaped before their pid was known (init killed between create and start). */
static struct { pid_t pid; int status; struct timespec when; } early[8];
static int n_early;
static pid_t runtime_pid;
static int runtime_done, runtime_status;
/* Other children reaped lately whose pid nobody claimed yet: an exec'd process that
 * exits before its runtime's pid file is read (see "exec"). A ring: only the last few
 * matter, the window is the runtime's exit. */
#define ORPHAN_RING 32
static struct { pid_t pid; int status; struct timespec when; } orphans[ORPHAN_RING];
static unsigned n_orphans;
static int exec_reaped(pid_t pid, int status, const struct timespec *when);

static void reap_children(void)
{
    struct signalfd_siginfo si;
    while (read(sig_fd, &si, sizeof si) == sizeof si)
        ; /* coalesced: we reap everything below anyway */
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0)
            break;
        struct timespec when;
        clock_gettime(CLOCK_REALTIME, &when);
        if (pid == runtime_pid) {
            runtime_done = 1;
            runtime_status = st;
        } else if (container_pid > 0 && pid == container_pid) {
            container_exited = 1;
            container_status = st;
            container_exit_time = when;
            dbg("container init %d exited (status 0x%x)", pid, st);
        } else if (exec_reaped(pid, st, &when)) {
            ; /* an exec's runtime or process */
        } else if (container_pid == 0 && n_early < 8) {
            early[n_early].pid = pid;
            early[n_early].status = st;
            early[n_early].when = when;
            n_early++;
        } else {
            unsigned k = n_orphans++ % ORPHAN_RING;
            orphans[k].pid = pid;
            orphans[k].status = st;
            orphans[k].when = when;
            dbg("reaped orphan %d", pid);
        }
    }
}

/* fork+exec `RUNTIME [runtime-args] --root RR <args...>` with the given stdio. */
static pid_t spawn_runtime(int in, int out, int err, char *const *args)
{
    char *argv[64 + 16];
    int n = 0;
    argv[n++] = opt.runtime;
    for (int i = 0; i < opt.n_runtime_args && n < 64; i++)
        argv[n++] = opt.runtime_args[i];
    argv[n++] = "--root";
    argv[n++] = opt.runtime_root;
    for (int i = 0; args[i] && n < 64 + 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;

    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* child: a clean signal state for the runtime and, through it, the container */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(127);
    /* dup2 onto the same number leaves FD_CLOEXEC set: clear it explicitly */
    for (int fd = 0; fd < 3; fd++)
        fcntl(fd, F_SETFD, 0);
    for (int fd = 0; fd < 3; fd++) { /* the container's stdio must block */
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK))
            fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    execv(opt.runtime, argv);
    dprintf(2, "conch-shim: exec %s: %s\n", opt.runtime, strerror(errno));
    _exit(127);
}

/* Captured runtime output (its error message when it fails). */
static char capture[CAPTURE_LIMIT + 1];
static size_t capture_len;

static void capture_from(int fd)
{
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0)
        return;
    size_t k = (size_t)n;
    if (k > CAPTURE_LIMIT - capture_len)
        k = CAPTURE_LIMIT - capture_len;
    memcpy(capture + capture_len, buf, k);
    capture_len += k;
    capture[capture_len] = 0;
}

/* Console: accepted connection on the console socket and the pty master it carries. */
static int console_listen = -1, console_conn = -1, pty_master = -1;

static void console_receive(void)
{
    char data[256];
    char ctrl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl,
                         .msg_controllen = sizeof ctrl};
    ssize_t n = recvmsg(console_conn, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); n >= 0 && c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int fd;
            memcpy(&fd, CMSG_DATA(c), sizeof fd);
            if (pty_master >= 0)
                close(pty_master);
            pty_master = fd;
            dbg("received pty master fd %d", fd);
        }
    }
    close(console_conn);
    console_conn = -1;
}

/*
 * Run the runtime with `args` and wait for it, capturing `cap1`/`cap2` (may be -1) and
 * serving the console socket meanwhile. Returns the wait status (or -1 on timeout).
 */
static int wait_runtime(int cap1, int cap2, const char *what);

static int run_runtime(int in, int out, int err, int cap1, int cap2, char *const *args)
{
    capture_len = 0;
    capture[0] = 0;
    runtime_done = 0;
    runtime_pid = spawn_runtime(in, out, err, args);
    if (runtime_pid < 0)
        fail("fork: %s", strerror(errno));
    dbg("runtime %s: pid %d", args[0], runtime_pid);
    return wait_runtime(cap1, cap2, args[0]);
}

/* Wait for runtime_pid (already running), capturing and serving as run_runtime says. */
static int wait_runtime(int cap1, int cap2, const char *what)
{
    long long deadline = now_ms() + RUNTIME_TIMEOUT_MS;
    for (;;) {
        reap_children();
        if (runtime_done)
            break;
        struct pollfd p[5];
        int n = 0;
        p[n++] = (struct pollfd){.fd = sig_fd, .events = POLLIN};
        if (cap1 >= 0)
            p[n++] = (struct pollfd){.fd = cap1, .events = POLLIN};
        if (cap2 >= 0)
            p[n++] = (struct pollfd){.fd = cap2, .events = POLLIN};
        if (console_listen >= 0 && console_conn < 0)
            p[n++] = (struct pollfd){.fd = console_listen, .events = POLLIN};
        if (console_conn >= 0)
            p[n++] = (struct pollfd){.fd = console_conn, .events = POLLIN};
        long long left = deadline - now_ms();
        if (left <= 0) {
            dbg("runtime %s timed out", what);
            kill(runtime_pid, SIGKILL);
            while (waitpid(runtime_pid, NULL, 0) < 0 && errno == EINTR)
                ;
            runtime_pid = 0;
            return -1;
        }
        int r = poll(p, (nfds_t)n, (int)left);
        if (r < 0 && errno != EINTR)
            fail("poll: %s", strerror(errno));
        for (int i = 1; r > 0 && i < n; i++) {
            if (!p[i].revents)
                continue;
            if (p[i].fd == console_listen) {
                console_conn = accept4(console_listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            } else if (p[i].fd == console_conn) {
                console_receive();
            } else if (p[i].revents & POLLIN) {
                capture_from(p[i].fd);
            } else if (p[i].fd == cap1) {
                cap1 = -1; /* POLLHUP: writer gone */
            } else {
                cap2 = -1;
            }
        }
    }
    /* whatever is still buffered (the pipes may be shared with the container) */
    int caps[2] = {cap1, cap2};
    for (int i = 0; i < 2; i++) {
        if (caps[i] < 0)
            continue;
        struct pollfd p = {.fd = caps[i], .events = POLLIN};
        while (poll(&p, 1, 0) > 0 && (p.revents & POLLIN) && capture_len < CAPTURE_LIMIT) {
            size_t before = capture_len;
            capture_from(caps[i]);
            if (capture_len == before)
                break;
        }
    }
    runtime_pid = 0;
    return runtime_status;
}

static int devnull_rd = -1, devnull_wr = -1;

/* `delete --force`: on a failed create/start, before the error is reported. */
static void runtime_delete_force(void)
{
    char *args[] = {"delete", "--force", opt.id, NULL};
    run_runtime(devnull_rd, devnull_wr, devnull_wr, -1, -1, args);
}

static const char *trimmed_capture(const char *fallback)
{
    char *s = capture;
    while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == '\t'))
        s[--n] = 0;
    return n ? s : fallback;
}

/* ---- logging (json-file) ---------------------------------------------------------- */

static int log_fd = -1;
static long long log_size;
static char *log_line;    /* one encoded entry; sized for the worst case, lazily */

static void log_open(void)
{
    log_fd = open(opt.log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (log_fd < 0) {
        dbg("open %s: %s", opt.log_path, strerror(errno));
        return;
    }
    struct stat st;
    log_size = fstat(log_fd, &st) == 0 ? st.st_size : 0;
}

/* docker's json-file rotation: log.(n-2) -> log.(n-1) ... log -> log.1, fresh log. */
static void log_rotate(void)
{
    if (opt.log_max_files <= 1) {
        if (ftruncate(log_fd, 0) == 0)
            log_size = 0;
        return;
    }
    char from[PATH_MAX + 32], to[PATH_MAX + 32];
    for (long i = opt.log_max_files - 1; i >= 2; i--) {
        snprintf(from, sizeof from, "%s.%ld", opt.log_path, i - 1);
        snprintf(to, sizeof to, "%s.%ld", opt.log_path, i);
        if (rename(from, to) < 0 && errno != ENOENT)
            dbg("rename %s: %s", from, strerror(errno));
    }
    snprintf(to, sizeof to, "%s.1", opt.log_path);
    if (rename(opt.log_path, to) < 0)
        dbg("rename %s: %s", opt.log_path, strerror(errno));
    close(log_fd);
    log_fd = -1;
    log_size = 0;
    log_open();
}

static void log_entry(const char *stream, const unsigned char *p, size_t n, const char *ts)
{
    if (log_fd < 0)
        return;
    if (!log_line && !(log_line = malloc(LINE_LIMIT * 6 + 128)))
        return;
    char *d = log_line;
    memcpy(d, "{\"log\":\"", 8);
    d += 8;
    d += json_escape(d, p, n);
    d += sprintf(d, "\",\"stream\":\"%s\",\"time\":\"%s\"}\n", stream, ts);
    size_t len = (size_t)(d - log_line);
    if (opt.log_max_size > 0 && log_size > 0 && log_size + (long long)len > opt.log_max_size)
        log_rotate();
    if (log_fd < 0)
        return;
    /* one write(2) of the whole line with O_APPEND: readers never see half of it */
    if (write_all(log_fd, log_line, len) < 0)
        dbg("write %s: %s", opt.log_path, strerror(errno));
    else
        log_size += (long long)len;
}

/* ---- container output streams ----------------------------------------------------- */

struct stream {
    int fd;
    int id;            /* 1 stdout, 2 stderr: the attach frame's stream byte */
    const char *name;
    unsigned char *buf; /* partial line, LINE_LIMIT bytes, allocated on first use */
    size_t len;
    int eof;
};
static struct stream out_stream = {.fd = -1, .id = 1, .name = "stdout"};
static struct stream err_stream = {.fd = -1, .id = 2, .name = "stderr"};

static void stream_log(struct stream *s, const unsigned char *data, size_t n, const char *ts)
{
    while (n > 0) {
        if (!s->buf && !(s->buf = malloc(LINE_LIMIT)))
            return;
        size_t room = LINE_LIMIT - s->len;
        const unsigned char *nl = memchr(data, '\n', n < room ? n : room);
        if (nl) {
            size_t k = (size_t)(nl - data) + 1;
            if (s->len == 0)
                log_entry(s->name, data, k, ts);
            else {
                memcpy(s->buf + s->len, data, k);
                log_entry(s->name, s->buf, s->len + k, ts);
                s->len = 0;
            }
            data += k;
            n -= k;
            continue;
        }
        size_t k = n < room ? n : room;
        memcpy(s->buf + s->len, data, k);
        s->len += k;
        data += k;
        n -= k;
        if (s->len == LINE_LIMIT) { /* no newline in 16 KiB: a partial entry */
            log_entry(s->name, s->buf, s->len, ts);
            s->len = 0;
        }
    }
}

static void stream_flush(struct stream *s)
{
    if (s->len == 0)
        return;
    struct timespec now;
    char ts[40];
    clock_gettime(CLOCK_REALTIME, &now);
    fmt_time(&now, ts);
    log_entry(s->name, s->buf, s->len, ts);
    s->len = 0;
}

/* ---- attach clients --------------------------------------------------------------- */

enum { C_REQUEST, C_ATTACHED, C_EXEC };

struct client {
    int fd;
    int state;
    int fds[6];       /* passed with the request (SCM_RIGHTS): an exec's stdio (+ kept) */
    int n_fds;
    int dead;
    int want_in, want_out, want_err, stdin_once, in_eof;
    char req[REQUEST_LIMIT];
    size_t req_len;
    unsigned char *q; /* pending output */
    size_t q_off, q_len, q_cap;
};
static struct client *clients[MAX_CLIENTS];
static int n_clients;
static int listen_fd = -1;

/* container stdin: pipe write end (non-tty) or the pty master (tty) */
static int stdin_fd = -1;
static unsigned char *stdin_buf;
static size_t stdin_len, stdin_cap;
static int stdin_close_pending;

static void client_queue(struct client *c, const void *data, size_t n)
{
    if (c->dead || n == 0)
        return;
    if (c->q_len == 0) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            c->dead = 1;
            return;
        }
        if (w > 0) {
            data = (const unsigned char *)data + w;
            n -= (size_t)w;
        }
        if (n == 0)
            return;
    }
    if (c->q_len + n > CLIENT_QUEUE_LIMIT) {
        dbg("client fd %d: more than %d bytes behind, disconnecting", c->fd, CLIENT_QUEUE_LIMIT);
        c->dead = 1;
        return;
    }
    if (c->q_off + c->q_len + n > c->q_cap) {
        if (c->q_off) {
            memmove(c->q, c->q + c->q_off, c->q_len);
            c->q_off = 0;
        }
        if (c->q_len + n > c->q_cap) {
            size_t cap = c->q_cap ? c->q_cap : 16384;
            while (cap < c->q_len + n)
                cap *= 2;
            unsigned char *q = realloc(c->q, cap);
            if (!q) {
                c->dead = 1;
                return;
            }
            c->q = q;
            c->q_cap = cap;
        }
    }
    memcpy(c->q + c->q_off + c->q_len, data, n);
    c->q_len += n;
}

static void client_flush(struct client *c)
{
    while (c->q_len > 0 && !c->dead) {
        ssize_t w = send(c->fd, c->q + c->q_off, c->q_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                c->dead = 1;
            return;
        }
        c->q_off += (size_t)w;
        c->q_len -= (size_t)w;
    }
    if (c->q_len == 0) {
        c->q_off = 0;
        if (c->q_cap > 65536) { /* give a burst's memory back */
            free(c->q);
            c->q = NULL;
            c->q_cap = 0;
        }
    }
}

static void broadcast(int stream_id, const unsigned char *data, size_t n)
{
    for (int i = 0; i < n_clients; i++) {
        struct client *c = clients[i];
        if (c->state != C_ATTACHED || c->dead)
            continue;
        if (opt.tty) {
            if (c->want_out || c->want_err)
                client_queue(c, data, n);
            continue;
        }
        if (!(stream_id == 1 ? c->want_out : c->want_err))
            continue;
        /* docker's multiplexed stream: [stream, 0, 0, 0, size (big endian u32)] payload */
        unsigned char hdr[8] = {(unsigned char)stream_id, 0, 0, 0, (unsigned char)(n >> 24),
                                (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                                (unsigned char)n};
        client_queue(c, hdr, 8);
        client_queue(c, data, n);
    }
}

static void stdin_close(void)
{
    if (stdin_fd >= 0 && !opt.tty) {
        dbg("closing container stdin");
        close(stdin_fd);
    }
    if (!opt.tty)
        stdin_fd = -1;
    stdin_len = 0;
    stdin_close_pending = 0;
}

static void stdin_flush(void)
{
    while (stdin_len > 0 && stdin_fd >= 0) {
        ssize_t w = write(stdin_fd, stdin_buf, stdin_len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            dbg("write container stdin: %s", strerror(errno));
            stdin_len = 0; /* the reader is gone: nothing will read it */
            if (!opt.tty)
                stdin_close();
            return;
        }
        memmove(stdin_buf, stdin_buf + w, stdin_len - (size_t)w);
        stdin_len -= (size_t)w;
    }
    if (stdin_len == 0 && stdin_cap > 65536) {
        free(stdin_buf);
        stdin_buf = NULL;
        stdin_cap = 0;
    }
    if (stdin_len == 0 && stdin_close_pending)
        stdin_close();
}

static void stdin_feed(const unsigned char *data, size_t n)
{
    if (stdin_fd < 0 || n == 0)
        return;
    if (stdin_len + n > stdin_cap) {
        size_t cap = stdin_cap ? stdin_cap : 16384;
        while (cap < stdin_len + n)
            cap *= 2;
        unsigned char *b = realloc(stdin_buf, cap);
        if (!b)
            return;
        stdin_buf = b;
        stdin_cap = cap;
    }
    memcpy(stdin_buf + stdin_len, data, n);
    stdin_len += n;
    stdin_flush();
}

/* ---- the request line: a flat JSON object ----------------------------------------- */

struct request {
    char type[16];
    int in, out, err, once;
    long long pid;
    int has_pid;
    long long height, width;
    int has_height, has_width;
    /* exec: paths chosen by the engine ("" when absent) */
    char process[REQUEST_LIMIT], pid_file[REQUEST_LIMIT], exit_file[REQUEST_LIMIT];
    char console_socket[REQUEST_LIMIT];
};

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return p;
}

/* A JSON string at p (after the opening quote) copied to out (truncated); NULL if bad. */
static const char *parse_string(const char *p, char *out, size_t cap)
{
    size_t n = 0;
    while (*p && *p != '"') {
        char ch = *p++;
        if (ch == '\\') {
            ch = *p++;
            if (!ch)
                return NULL;
            if (ch == 'u') {
                for (int i = 0; i < 4; i++)
                    if (!*p++)
                        return NULL;
                ch = '?';
            }
        } else if ((unsigned char)ch < 0x20)
            return NULL;
        if (n + 1 < cap)
            out[n++] = ch;
    }
    if (*p != '"')
        return NULL;
    if (cap)
        out[n] = 0;
    return p + 1;
}

static int parse_request(const char *p, struct request *r)
{
    /* only the small fields and each string's first byte: the 16 KiB of path buffers
     * are touched as far as they are written, so a request costs the shim no memory */
    memset(r, 0, offsetof(struct request, process));
    r->process[0] = r->pid_file[0] = r->exit_file[0] = r->console_socket[0] = 0;
    p = skip_ws(p);
    if (*p++ != '{')
        return -1;
    p = skip_ws(p);
    if (*p == '}')
        return 0;
    for (;;) {
        char key[32], sval[REQUEST_LIMIT];
        p = skip_ws(p);
        if (*p++ != '"' || !(p = parse_string(p, key, sizeof key)))
            return -1;
        p = skip_ws(p);
        if (*p++ != ':')
            return -1;
        p = skip_ws(p);
        int bval = -1;
        long long nval = 0;
        int is_num = 0;
        sval[0] = 0;
        if (*p == '"') {
            if (!(p = parse_string(p + 1, sval, sizeof sval)))
                return -1;
        } else if (!strncmp(p, "true", 4)) {
            bval = 1;
            p += 4;
        } else if (!strncmp(p, "false", 5)) {
            bval = 0;
            p += 5;
        } else if (!strncmp(p, "null", 4)) {
            p += 4;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            char *end;
            errno = 0;
            double v = strtod(p, &end);
            if (end == p || errno)
                return -1;
            nval = v > 1e12 ? (long long)1e12 : v < -1e12 ? (long long)-1e12 : (long long)v;
            is_num = 1;
            p = end;
        } else
            return -1; /* nested objects/arrays are not part of the protocol */
        if (!strcmp(key, "type"))
            snprintf(r->type, sizeof r->type, "%s", sval);
        else if (!strcmp(key, "process"))
            memcpy(r->process, sval, strlen(sval) + 1);
        else if (!strcmp(key, "pid_file"))
            memcpy(r->pid_file, sval, strlen(sval) + 1);
        else if (!strcmp(key, "exit_file"))
            memcpy(r->exit_file, sval, strlen(sval) + 1);
        else if (!strcmp(key, "console_socket"))
            memcpy(r->console_socket, sval, strlen(sval) + 1);
        else if (!strcmp(key, "stdin"))
            r->in = bval == 1;
        else if (!strcmp(key, "stdout"))
            r->out = bval == 1;
        else if (!strcmp(key, "stderr"))
            r->err = bval == 1;
        else if (!strcmp(key, "stdin_once"))
            r->once = bval == 1;
        else if (!strcmp(key, "height") && is_num) {
            r->height = nval;
            r->has_height = 1;
        } else if (!strcmp(key, "width") && is_num) {
            r->width = nval;
            r->has_width = 1;
        } else if (!strcmp(key, "pid") && is_num) {
            r->pid = nval;
            r->has_pid = 1;
        }
        p = skip_ws(p);
        if (*p == '}')
            return *skip_ws(p + 1) ? -1 : 0;
        if (*p++ != ',')
            return -1;
    }
}

static void reply_and_close(struct client *c, const char *line)
{
    send(c->fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
    c->dead = 1;
}

static void exec_start(struct client *c, const struct request *r);
static void exec_keep(struct client *c, const struct request *r);
static void exec_forget_client(struct client *c);
static long read_pid_file(const char *path);

/* A complete request line arrived; `rest` is what followed it (stdin for attach). */
static void client_request(struct client *c, const char *rest, size_t rest_len)
{
    struct request r;
    char reply[128];
    if (parse_request(c->req, &r) < 0) {
        reply_and_close(c, "{\"error\":\"bad request: want one JSON object per line\"}\n");
        return;
    }
    if (!strcmp(r.type, "attach")) {
        c->state = C_ATTACHED;
        c->want_in = r.in;
        c->want_out = r.out;
        c->want_err = r.err;
        c->stdin_once = r.once;
        dbg("client fd %d attached (in %d out %d err %d once %d)", c->fd, r.in, r.out, r.err,
            r.once);
        if (c->want_in)
            stdin_feed((const unsigned char *)rest, rest_len);
    } else if (!strcmp(r.type, "resize")) {
        if (!r.has_height || !r.has_width || r.height < 0 || r.height > 65535 || r.width < 0 ||
            r.width > 65535) {
            reply_and_close(c, "{\"ok\":false,"
                               "\"error\":\"resize wants height and width in 0..65535\"}\n");
            return;
        }
        if (pty_master < 0) {
            reply_and_close(c, "{\"ok\":false,\"error\":\"the container has no tty\"}\n");
            return;
        }
        struct winsize ws = {.ws_row = (unsigned short)r.height, .ws_col = (unsigned short)r.width};
        if (ioctl(pty_master, TIOCSWINSZ, &ws) < 0) {
            snprintf(reply, sizeof reply, "{\"ok\":false,\"error\":\"TIOCSWINSZ: %s\"}\n",
                     strerror(errno));
            reply_and_close(c, reply);
            return;
        }
        reply_and_close(c, "{\"ok\":true}\n");
    } else if (!strcmp(r.type, "exec")) {
        exec_start(c, &r);
    } else if (!strcmp(r.type, "keep")) {
        exec_keep(c, &r);
    } else if (!strcmp(r.type, "status")) {
        snprintf(reply, sizeof reply, "{\"pid\":%d,\"running\":%s}\n", (int)container_pid,
                 container_pid > 0 && !container_exited ? "true" : "false");
        reply_and_close(c, reply);
    } else {
        reply_and_close(c, "{\"error\":\"unknown request type\"}\n");
    }
}

/* recv() that keeps the descriptors passed with the data (an exec's stdio and the
 * engine's ends of its output): up to 6 are kept, any more are closed. */
static ssize_t recv_with_fds(struct client *c, void *buf, size_t len)
{
    union {
        struct cmsghdr align;
        char data[CMSG_SPACE(6 * sizeof(int))];
    } u;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.data,
                         .msg_controllen = sizeof u.data};
    ssize_t n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return n;
    for (struct cmsghdr *m = CMSG_FIRSTHDR(&msg); m; m = CMSG_NXTHDR(&msg, m)) {
        if (m->cmsg_level != SOL_SOCKET || m->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (m->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t j = 0; j < k; j++) {
            int fd;
            memcpy(&fd, CMSG_DATA(m) + j * sizeof(int), sizeof fd);
            if (c->n_fds < 6)
                c->fds[c->n_fds++] = fd;
            else
                close(fd);
        }
    }
    return n;
}

static void client_readable(struct client *c)
{
    if (c->state == C_EXEC) { /* nothing more is expected from it: only its hangup */
        char buf[256];
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            c->dead = 1;
        return;
    }
    if (c->state == C_REQUEST) {
        ssize_t n = recv_with_fds(c, c->req + c->req_len, sizeof c->req - 1 - c->req_len);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                c->dead = 1;
            return;
        }
        if (n == 0) {
            c->dead = 1;
            return;
        }
        c->req_len += (size_t)n;
        c->req[c->req_len] = 0;
        char *nl = memchr(c->req, '\n', c->req_len);
        if (!nl) {
            if (c->req_len >= sizeof c->req - 1)
                reply_and_close(c, "{\"error\":\"request line too long\"}\n");
            return;
        }
        *nl = 0;
        size_t rest_len = c->req_len - (size_t)(nl + 1 - c->req);
        client_request(c, nl + 1, rest_len);
        return;
    }
    unsigned char buf[READ_CHUNK];
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            c->dead = 1;
        return;
    }
    if (n == 0) {
        c->in_eof = 1;
        if (c->want_in && c->stdin_once) { /* docker's StdinOnce: EOF closes stdin */
            stdin_close_pending = 1;
            stdin_flush();
        }
        return;
    }
    if (c->want_in)
        stdin_feed(buf, (size_t)n);
}

static void client_accept(void)
{
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    struct client *c = n_clients < MAX_CLIENTS ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        const char *msg = "{\"error\":\"too many clients\"}\n";
        send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        return;
    }
    c->fd = fd;
    clients[n_clients++] = c;
}

static void clients_sweep(void)
{
    int j = 0;
    for (int i = 0; i < n_clients; i++) {
        struct client *c = clients[i];
        if (c->dead) {
            close(c->fd);
            for (int k = 0; k < c->n_fds; k++)
                close(c->fds[k]);
            exec_forget_client(c);
            free(c->q);
            free(c);
        } else
            clients[j++] = c;
    }
    n_clients = j;
}

/* ---- the main loop ---------------------------------------------------------------- */

static void stream_readable(struct stream *s)
{
    unsigned char buf[READ_CHUNK];
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* EOF, or EIO on a pty master whose slave is closed everywhere */
        s->eof = 1;
        stream_flush(s);
        return;
    }
    struct timespec now;
    char ts[40];
    clock_gettime(CLOCK_REALTIME, &now);
    fmt_time(&now, ts);
    broadcast(s->id, buf, (size_t)n);
    stream_log(s, buf, (size_t)n, ts);
}

/* The exit record is reserved at start (the temp file, padded to EXIT_RECORD_SIZE, its
 * pages allocated while there is room) and overwritten in place at exit: a full disk
 * (ENOSPC) then cannot cost the exit code. Written as temp + fsync + rename; a record
 * that could not be written completely is never renamed into place (no empty exit file:
 * the engine then says "exit status unknown"). JSON allows the trailing spaces. */
#define EXIT_RECORD_SIZE 160
static int exit_fd = -1;

static void exit_tmp_path(char *tmp, size_t size)
{
    snprintf(tmp, size, "%s.tmp", opt.exit_file);
}

static void reserve_exit_file(void)
{
    char tmp[PATH_MAX + 16], pad[EXIT_RECORD_SIZE];
    exit_tmp_path(tmp, sizeof tmp);
    unlink(tmp);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        dbg("reserve %s: %s", tmp, strerror(errno));
        return;
    }
    memset(pad, ' ', sizeof pad);
    pad[sizeof pad - 1] = '\n';
    if (write_all(fd, pad, sizeof pad) < 0) {
        dbg("reserve %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return;
    }
    exit_fd = fd;
}

/* {"exit_code": N, "signal": S|null, "exited_at": "..."} (no newline); its length. */
static int exit_line(char *line, size_t size, int code, int sig, const struct timespec *when)
{
    char ts[40], sigbuf[16];
    fmt_time(when, ts);
    if (sig)
        snprintf(sigbuf, sizeof sigbuf, "%d", sig);
    else
        strcpy(sigbuf, "null");
    int n = snprintf(line, size, "{\"exit_code\": %d, \"signal\": %s, \"exited_at\": \"%s\"}",
                     code, sigbuf, ts);
    return n < (int)size ? n : (int)size - 1;
}

/* `len` bytes at `path`, durably and atomically: `<path>.tmp` (`fd` if it is already
 * open, reserved; else created), fsync, rename, fsync of the directory. A record that
 * could not be written completely is never renamed into place. 0 on success. */
static int write_record(const char *path, int fd, const char *line, size_t len)
{
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (fd < 0) /* not reserved at start: a fresh file */
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        dbg("open %s: %s", tmp, strerror(errno));
        return -1;
    }
    int failed = pwrite(fd, line, len, 0) != (ssize_t)len || fsync(fd) < 0;
    int saved = errno;
    if (close(fd) < 0 && !failed) {
        failed = 1;
        saved = errno;
    }
    if (failed) {
        dbg("write %s: %s", tmp, strerror(saved));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) < 0) {
        dbg("rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *(slash == dir ? slash + 1 : slash) = 0;
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return 0;
}

static void write_exit_file(void)
{
    int st = container_status;
    int code = 0, sig = 0;
    if (WIFSIGNALED(st)) {
        sig = WTERMSIG(st);
        code = 128 + sig;
    } else
        code = WEXITSTATUS(st);
    char line[EXIT_RECORD_SIZE];
    int n = exit_line(line, sizeof line, code, sig, &container_exit_time);
    memset(line + n, ' ', sizeof line - (size_t)n); /* the whole reserved record */
    line[sizeof line - 1] = '\n';
    int fd = exit_fd;
    exit_fd = -1;
    if (write_record(opt.exit_file, fd, line, sizeof line) == 0)
        dbg("exit file written: exit_code %d signal %d", code, sig);
}

/* ---- exec --------------------------------------------------------------------------
 *
 * {"type":"exec","process":P,"pid_file":F,"exit_file":E[,"console_socket":S]} with the
 * process's stdin, stdout and stderr passed as SCM_RIGHTS on the request: the shim runs
 * `RUNTIME exec --detach --pid-file F --process P [--console-socket S] ID` with those
 * three as its stdio and closes its copies at once. The engine keeps the other ends of
 * its pipes (or gets the pty master on its own console socket, as before): the shim
 * never relays an exec's bytes, so it stays small and the streams stay exactly the ones
 * the engine pumped when it ran the runtime itself.
 *
 * The runtime is not waited for in line (the container's output keeps flowing): it is
 * one more child reaped from the signalfd. It exits as soon as the process has been
 * exec'd; the process, whose parent (the runtime's intermediate) has exited, is
 * reparented to us, the nearest child subreaper. Replies on the asking connection:
 * {"pid":N} once it runs, then one exit line (the container's exit-file format plus
 * "pid"), then the shim closes it. A runtime that fails (e.g. 127: no such command, its
 * message on the process's stderr) gives the exit line at once with its exit status.
 * Either way the exit line is first written to E atomically (temp + fsync + rename), so
 * it survives the engine: if the connection is gone, the record is all there is.
 *
 * Up to three more fds after the stdio are the engine's own ends of the process's output
 * pipes: kept, untouched while the asker is connected; once it has gone (the engine was
 * killed) they are read and what comes is dropped, so a process that goes on writing
 * neither dies of EPIPE nor blocks on a full pipe. Closed when the exec ends. The pty
 * master of a tty exec, which the engine gets only later (the runtime sends it to the
 * engine's console socket), comes the same way on a request of its own:
 * {"type":"keep","pid":N} + the fd; reply {"ok":true} (the process gets no SIGHUP when
 * the engine dies: the master stays open).
 */
#define MAX_EXECS 64

struct exec_proc {
    pid_t runtime;        /* the runtime's `exec --detach`, while it runs */
    pid_t pid;            /* the exec'd process, once known */
    long long deadline;   /* the runtime is killed after RUNTIME_TIMEOUT_MS */
    struct client *c;     /* the connection that asked; NULL once it has gone */
    char *pid_file, *exit_file;
    int keep[3];          /* the engine's ends of its output, drained once c is gone */
    int n_keep;
};
static struct exec_proc *execs[MAX_EXECS];

static void exec_free(int i)
{
    struct exec_proc *e = execs[i];
    execs[i] = NULL;
    if (e->c)
        e->c->dead = 1; /* its exit line was the last thing to say */
    for (int k = 0; k < e->n_keep; k++)
        if (e->keep[k] >= 0)
            close(e->keep[k]);
    free(e->pid_file);
    free(e->exit_file);
    free(e);
}

/* The exec ended: (exit code, signal) recorded at exit_file, then told to the asker. */
static void exec_finish(int i, int code, int sig, const struct timespec *when)
{
    struct exec_proc *e = execs[i];
    char line[EXIT_RECORD_SIZE + 32];
    int n = exit_line(line, sizeof line - 24, code, sig, when);
    n--; /* drop the closing brace: the pid goes last */
    n += snprintf(line + n, sizeof line - (size_t)n, ", \"pid\": %d}\n", (int)e->pid);
    write_record(e->exit_file, -1, line, (size_t)n);
    dbg("exec %d: exit_code %d signal %d", (int)e->pid, code, sig);
    if (e->c)
        send(e->c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    exec_free(i);
}

static void exec_finish_status(int i, int st, const struct timespec *when)
{
    if (WIFSIGNALED(st))
        exec_finish(i, 128 + WTERMSIG(st), WTERMSIG(st), when);
    else
        exec_finish(i, WEXITSTATUS(st), 0, when);
}

/* The runtime exited: the process runs (pid file), or the runtime's status is the exec's. */
static void exec_runtime_done(int i, int st, const struct timespec *when)
{
    struct exec_proc *e = execs[i];
    e->runtime = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        dbg("exec: runtime failed (status 0x%x)", st);
        exec_finish_status(i, st, when);
        return;
    }
    long pid = read_pid_file(e->pid_file);
    unlink(e->pid_file);
    if (pid <= 0) {
        dbg("exec: the runtime wrote no pid file at %s", e->pid_file);
        exec_finish(i, 255, 0, when);
        return;
    }
    e->pid = (pid_t)pid;
    /* it may have exited (and been reaped) before the runtime did */
    for (unsigned k = 0; k < ORPHAN_RING && k < n_orphans; k++)
        if (orphans[k].pid == e->pid) {
            orphans[k].pid = 0;
            exec_finish_status(i, orphans[k].status, &orphans[k].when);
            return;
        }
    dbg("exec: process %d running", (int)e->pid);
    if (e->c) {
        char reply[32];
        int n = snprintf(reply, sizeof reply, "{\"pid\":%d}\n", (int)e->pid);
        send(e->c->fd, reply, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
}

static int exec_reaped(pid_t pid, int status, const struct timespec *when)
{
    for (int i = 0; i < MAX_EXECS; i++) {
        struct exec_proc *e = execs[i];
        if (!e)
            continue;
        if (e->runtime == pid) {
            exec_runtime_done(i, status, when);
            return 1;
        }
        if (e->pid == pid) {
            exec_finish_status(i, status, when);
            return 1;
        }
    }
    return 0;
}

static void exec_start(struct client *c, const struct request *r)
{
    if (c->n_fds < 3) {
        reply_and_close(c, "{\"error\":\"exec wants the process's stdin, stdout and stderr "
                           "as SCM_RIGHTS on the request\"}\n");
        return;
    }
    if (!r->process[0] || !r->pid_file[0] || !r->exit_file[0]) {
        reply_and_close(c, "{\"error\":\"exec wants process, pid_file and exit_file\"}\n");
        return;
    }
    if (container_pid <= 0 || container_exited) {
        reply_and_close(c, "{\"error\":\"the container is not running\"}\n");
        return;
    }
    int i = 0;
    while (i < MAX_EXECS && execs[i])
        i++;
    struct exec_proc *e = i < MAX_EXECS ? calloc(1, sizeof *e) : NULL;
    if (e) {
        e->pid_file = strdup(r->pid_file);
        e->exit_file = strdup(r->exit_file);
    }
    if (!e || !e->pid_file || !e->exit_file) {
        if (e) {
            free(e->pid_file);
            free(e->exit_file);
            free(e);
        }
        reply_and_close(c, "{\"error\":\"too many execs running\"}\n");
        return;
    }
    char *args[12];
    int n = 0;
    args[n++] = "exec";
    args[n++] = "--detach";
    args[n++] = "--pid-file";
    args[n++] = e->pid_file;
    args[n++] = "--process";
    args[n++] = (char *)r->process;
    if (r->console_socket[0]) {
        args[n++] = "--console-socket";
        args[n++] = (char *)r->console_socket;
    }
    args[n++] = opt.id;
    args[n] = NULL;
    unlink(e->pid_file);
    pid_t pid = spawn_runtime(c->fds[0], c->fds[1], c->fds[2], args);
    for (int k = 0; k < 3; k++) /* the runtime has them now, and then the process */
        close(c->fds[k]);
    for (int k = 3; k < c->n_fds; k++) { /* the engine's ends: kept (see above) */
        set_nonblock(c->fds[k]);
        e->keep[e->n_keep++] = c->fds[k];
    }
    c->n_fds = 0;
    if (pid < 0) {
        char reply[128];
        snprintf(reply, sizeof reply, "{\"error\":\"fork: %s\"}\n", strerror(errno));
        for (int k = 0; k < e->n_keep; k++)
            close(e->keep[k]);
        free(e->pid_file);
        free(e->exit_file);
        free(e);
        reply_and_close(c, reply);
        return;
    }
    e->runtime = pid;
    e->deadline = now_ms() + RUNTIME_TIMEOUT_MS;
    e->c = c;
    c->state = C_EXEC;
    execs[i] = e;
    dbg("exec: runtime %d for %s", (int)pid, r->process);
}

/* A runtime past its deadline is killed; its reaping then records the failure. The
 * poll timeout (ms, -1 for none) that wakes us for the next deadline. */
static int exec_deadlines(void)
{
    long long now = now_ms(), next = -1;
    for (int i = 0; i < MAX_EXECS; i++) {
        struct exec_proc *e = execs[i];
        if (!e || e->runtime <= 0)
            continue;
        if (e->deadline <= now) {
            dbg("exec: runtime %d timed out", (int)e->runtime);
            kill(e->runtime, SIGKILL);
            e->deadline = now + 1000; /* reaped shortly; not again every turn */
        } else if (next < 0 || e->deadline - now < next)
            next = e->deadline - now;
    }
    return next > INT_MAX ? INT_MAX : (int)next;
}

/* A connection is being freed: whatever it asked for goes on without it. */
static void exec_forget_client(struct client *c)
{
    for (int i = 0; i < MAX_EXECS; i++)
        if (execs[i] && execs[i]->c == c)
            execs[i]->c = NULL;
}

static void exec_keep(struct client *c, const struct request *r)
{
    struct exec_proc *e = NULL;
    for (int i = 0; i < MAX_EXECS && r->has_pid && r->pid > 0; i++)
        if (execs[i] && execs[i]->pid == (pid_t)r->pid)
            e = execs[i];
    if (!e || c->n_fds < 1 || e->n_keep + c->n_fds > 3) {
        reply_and_close(c, "{\"ok\":false,\"error\":\"keep wants the pid of a running exec "
                           "and its fds (at most 3 in all)\"}\n");
        return; /* the sweep closes the fds */
    }
    for (int k = 0; k < c->n_fds; k++) {
        set_nonblock(c->fds[k]);
        e->keep[e->n_keep++] = c->fds[k];
    }
    c->n_fds = 0;
    reply_and_close(c, "{\"ok\":true}\n");
}

/* The kept output ends of execs whose asker has gone, for poll; and reading them. */
static int exec_drain_fds(struct pollfd *p, int max)
{
    int n = 0;
    for (int i = 0; i < MAX_EXECS; i++) {
        struct exec_proc *e = execs[i];
        if (!e || e->c)
            continue;
        for (int k = 0; k < e->n_keep && n < max; k++)
            if (e->keep[k] >= 0)
                p[n++] = (struct pollfd){.fd = e->keep[k], .events = POLLIN};
    }
    return n;
}

static void exec_drain(int fd)
{
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    for (int i = 0; i < MAX_EXECS; i++) /* EOF: every writer has gone */
        for (int k = 0; execs[i] && k < execs[i]->n_keep; k++)
            if (execs[i]->keep[k] == fd) {
                close(fd);
                execs[i]->keep[k] = -1;
            }
}

/* At the shim's exit: a runtime still at work is stopped (the container is gone, it
 * would fail anyway). A process still running (only possible without a pid namespace
 * of the container's own) is left alone and has no record. */
static void exec_shutdown(void)
{
    for (int i = 0; i < MAX_EXECS; i++) {
        struct exec_proc *e = execs[i];
        if (!e)
            continue;
        if (e->runtime > 0) {
            kill(e->runtime, SIGKILL);
            int st;
            while (waitpid(e->runtime, &st, 0) < 0 && errno == EINTR)
                ;
        }
        e->c = NULL;
        exec_free(i);
    }
}

static void finish(void)
{
    stream_flush(&out_stream);
    stream_flush(&err_stream);
    write_exit_file();
    exec_shutdown();
    /* give attached clients their last output, briefly, then hang up */
    long long deadline = now_ms() + FLUSH_TIMEOUT_MS;
    for (;;) {
        struct pollfd p[MAX_CLIENTS];
        int n = 0;
        for (int i = 0; i < n_clients; i++) {
            client_flush(clients[i]);
            if (!clients[i]->dead && clients[i]->q_len > 0)
                p[n++] = (struct pollfd){.fd = clients[i]->fd, .events = POLLOUT};
        }
        long long left = deadline - now_ms();
        if (n == 0 || left <= 0)
            break;
        if (poll(p, (nfds_t)n, (int)left) < 0 && errno != EINTR)
            break;
    }
    for (int i = 0; i < n_clients; i++)
        clients[i]->dead = 1;
    clients_sweep();
    close(listen_fd);
    unlink(opt.socket_path);
    dbg("done");
    exit(0);
}

static void main_loop(void)
{
    long long drain_deadline = 0;
    for (;;) {
        reap_children();
        clients_sweep(); /* an exec's asker is hung up on once its exit line is sent */
        if (container_exited && !drain_deadline)
            drain_deadline = now_ms() + DRAIN_TIMEOUT_MS;
        int outputs_open = (out_stream.fd >= 0 && !out_stream.eof) ||
                           (err_stream.fd >= 0 && !err_stream.eof);
        if (container_exited && (!outputs_open || now_ms() >= drain_deadline))
            finish();

        struct pollfd p[5 + MAX_CLIENTS + 3 * MAX_EXECS];
        struct client *owner[5 + MAX_CLIENTS + 3 * MAX_EXECS];
        int n = 0;
        int stdin_room = stdin_len < STDIN_LIMIT;
        p[n] = (struct pollfd){.fd = sig_fd, .events = POLLIN};
        owner[n++] = NULL;
        p[n] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        owner[n++] = NULL;
        int i_out = -1, i_err = -1, i_in = -1;
        if (out_stream.fd >= 0 && !out_stream.eof) {
            i_out = n;
            p[n] = (struct pollfd){.fd = out_stream.fd, .events = POLLIN};
            if (opt.tty && stdin_len > 0)
                p[n].events |= POLLOUT;
            owner[n++] = NULL;
        }
        if (err_stream.fd >= 0 && !err_stream.eof) {
            i_err = n;
            p[n] = (struct pollfd){.fd = err_stream.fd, .events = POLLIN};
            owner[n++] = NULL;
        }
        if (!opt.tty && stdin_fd >= 0 && stdin_len > 0) {
            i_in = n;
            p[n] = (struct pollfd){.fd = stdin_fd, .events = POLLOUT};
            owner[n++] = NULL;
        }
        for (int i = 0; i < n_clients; i++) {
            struct client *c = clients[i];
            short ev = 0;
            if (c->state == C_REQUEST || c->state == C_EXEC || (!c->in_eof && stdin_room))
                ev |= POLLIN;
            if (c->q_len > 0)
                ev |= POLLOUT;
            p[n] = (struct pollfd){.fd = c->fd, .events = ev};
            owner[n++] = c;
        }
        int i_drain = n;
        n += exec_drain_fds(p + n, 3 * MAX_EXECS);
        for (int i = i_drain; i < n; i++)
            owner[i] = NULL;
        int timeout = exec_deadlines();
        if (drain_deadline) {
            long long left = drain_deadline - now_ms();
            if (left < 0)
                left = 0;
            if (timeout < 0 || left < timeout)
                timeout = (int)left;
        }
        int r = poll(p, (nfds_t)n, timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            dbg("poll: %s", strerror(errno));
            continue;
        }
        if (r == 0)
            continue;
        if (p[1].revents & POLLIN)
            client_accept();
        if (i_out >= 0 && (p[i_out].revents & POLLOUT))
            stdin_flush();
        if (i_out >= 0 && (p[i_out].revents & (POLLIN | POLLHUP | POLLERR)))
            stream_readable(&out_stream);
        if (i_err >= 0 && p[i_err].revents)
            stream_readable(&err_stream);
        if (i_in >= 0 && p[i_in].revents)
            stdin_flush();
        for (int i = i_drain; i < n; i++)
            if (p[i].revents)
                exec_drain(p[i].fd);
        for (int i = 0; i < n; i++) {
            struct client *c = owner[i];
            if (!c || c->dead || !p[i].revents)
                continue;
            if (p[i].revents & POLLOUT)
                client_flush(c);
            /* POLLHUP without POLLIN asked for: read anyway, so data and the EOF
             * (stdin_once) still count; once the EOF is seen, a hangup ends the client */
            if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                if (c->in_eof)
                    c->dead = 1;
                else
                    client_readable(c);
            }
        }
        clients_sweep();
    }
}

/* ---- setup ------------------------------------------------------------------------ */

static char *absolute(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return strdup(path);
    char *out;
    if (asprintf(&out, "%s/%s", cwd, path) < 0)
        return strdup(path);
    return out;
}

static void usage_fail(const char *msg)
{
    report_error(msg);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    enum { O_ID = 256, O_BUNDLE, O_RUNTIME, O_RROOT, O_EXIT, O_SOCKET, O_LOG, O_LOGSIZE,
           O_LOGFILES, O_TTY, O_STDIN, O_RARG, O_DEBUG, O_NOSTART };
    static const struct option longopts[] = {
        {"id", required_argument, 0, O_ID},
        {"bundle", required_argument, 0, O_BUNDLE},
        {"runtime", required_argument, 0, O_RUNTIME},
        {"runtime-root", required_argument, 0, O_RROOT},
        {"exit-file", required_argument, 0, O_EXIT},
        {"socket", required_argument, 0, O_SOCKET},
        {"log-path", required_argument, 0, O_LOG},
        {"log-max-size", required_argument, 0, O_LOGSIZE},
        {"log-max-files", required_argument, 0, O_LOGFILES},
        {"tty", no_argument, 0, O_TTY},
        {"stdin", no_argument, 0, O_STDIN},
        {"runtime-arg", required_argument, 0, O_RARG},
        {"debug-log", required_argument, 0, O_DEBUG},
        {"no-start", no_argument, 0, O_NOSTART},
        {0, 0, 0, 0},
    };
    opt.runtime_args = calloc((size_t)argc + 1, sizeof(char *));
    opterr = 0;
    int ch;
    char *end;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case O_ID: opt.id = optarg; break;
        case O_BUNDLE: opt.bundle = absolute(optarg); break;
        case O_RUNTIME: opt.runtime = absolute(optarg); break;
        case O_RROOT: opt.runtime_root = absolute(optarg); break;
        case O_EXIT: opt.exit_file = absolute(optarg); break;
        case O_SOCKET: opt.socket_path = absolute(optarg); break;
        case O_LOG: opt.log_path = absolute(optarg); break;
        case O_DEBUG: opt.debug_log = absolute(optarg); break;
        case O_TTY: opt.tty = 1; break;
        case O_STDIN: opt.open_stdin = 1; break;
        case O_NOSTART: opt.no_start = 1; break;
        case O_RARG:
            if (opt.n_runtime_args >= 32)
                usage_fail("too many --runtime-arg flags (at most 32)");
            opt.runtime_args[opt.n_runtime_args++] = optarg;
            break;
        case O_LOGSIZE:
            errno = 0;
            opt.log_max_size = strtoll(optarg, &end, 10);
            if (errno || *end || opt.log_max_size < 0)
                usage_fail("--log-max-size wants a number of bytes (0: unbounded)");
            break;
        case O_LOGFILES:
            errno = 0;
            opt.log_max_files = strtol(optarg, &end, 10);
            if (errno || *end || opt.log_max_files < 1)
                usage_fail("--log-max-files wants a count >= 1");
            break;
        default:
            usage_fail("usage: conch-shim --id ID --bundle DIR --runtime PATH --runtime-root DIR "
                       "--exit-file FILE --socket PATH --log-path FILE [--log-max-size BYTES] "
                       "[--log-max-files N] [--tty] [--stdin] [--no-start] [--runtime-arg ARG]... "
                       "[--debug-log FILE]");
        }
    }
    if (optind < argc)
        usage_fail("unexpected positional argument");
    const char *missing = !opt.id ? "--id" : !opt.bundle ? "--bundle" : !opt.runtime ? "--runtime"
        : !opt.runtime_root ? "--runtime-root" : !opt.exit_file ? "--exit-file"
        : !opt.socket_path ? "--socket" : !opt.log_path ? "--log-path" : NULL;
    if (missing) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s is required", missing);
        usage_fail(msg);
    }
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        fail("socket path too long (max %zu bytes): %s", sizeof sa.sun_path - 1, path);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        fail("socket: %s", strerror(errno));
    unlink(path);
    mode_t old = umask(0077); /* the socket file is created 0600 */
    int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (r < 0)
        fail("bind %s: %s", path, strerror(errno));
    chmod(path, 0600);
    if (listen(fd, 64) < 0)
        fail("listen %s: %s", path, strerror(errno));
    return fd;
}

/* fork, setsid, fork: the engine's child exits once the grandchild exists. */
static void daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0)
        fail("fork: %s", strerror(errno));
    if (pid > 0) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
    }
    if (setsid() < 0)
        _exit(1);
    pid = fork();
    if (pid < 0)
        fail("fork: %s", strerror(errno));
    if (pid > 0)
        _exit(0);
    /* the grandchild: not a session leader, so it can never get a controlling tty */
}

static long read_pid_file(const char *path)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    long pid = strtol(buf, NULL, 10);
    return pid > 0 ? pid : -1;
}

/* ---- warm mode ----------------------------------------------------------------------
 *
 * `conch-shim --warm --runtime PATH --runtime-root DIR`, stdout = one end of a SOCK_SEQPACKET socketpair
 * held by the engine. The shim daemonizes as usual, then forks `PATH warm 3` at once
 * (conch-runtime pays its interpreter start-up and imports now, then waits on fd 3) and
 * waits for one message on stdout: the options of a normal start, NUL-separated. From
 * there it is an ordinary shim, except that `create` goes to the waiting runtime (its
 * argv and the container's stdio as SCM_RIGHTS) instead of a fresh exec; the ready line
 * goes back on the same socket. EOF instead of a message (the engine discarded the warm
 * shim, stopped, or died) ends both processes. This takes ~20 ms of Python start-up off
 * every container start, and the container's ancestry is unchanged: its init is still
 * this shim's descendant, reparented to it (subreaper) when the runtime exits.
 */
static int warm_rt = -1; /* our end of the waiting runtime's socket */
#define WARM_NICE 10     /* the waiting runtime's nice value until activation */

/* `--runtime-root` is not used before activation; it names the engine the warm shim
 * belongs to in `ps` (and to tests telling one engine's processes from another's). */
static void warm_parse(int argc, char **argv)
{
    if (argc != 6 || strcmp(argv[2], "--runtime") || strcmp(argv[4], "--runtime-root"))
        usage_fail("usage: conch-shim --warm --runtime PATH --runtime-root DIR");
    opt.runtime = absolute(argv[3]);
    opt.runtime_root = absolute(argv[5]);
}

static void warm_wait(void)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        fail("socketpair: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        fail("fork: %s", strerror(errno));
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(devnull_rd, 0) < 0 || dup2(devnull_wr, 1) < 0 || dup2(devnull_wr, 2) < 0 ||
            dup2(sp[1], 3) < 0)
            _exit(127);
        for (int fd = 0; fd < 3; fd++)
            fcntl(fd, F_SETFD, 0);
        /* warming up must not steal the CPU from the containers starting meanwhile
         * (the engine refills right after a start): niced until activation */
        setpriority(PRIO_PROCESS, 0, WARM_NICE);
        char *args[] = {opt.runtime, "warm", "3", NULL};
        execv(opt.runtime, args);
        _exit(127);
    }
    close(sp[1]);
    runtime_pid = pid;
    warm_rt = sp[0];
    for (;;) {
        struct pollfd p[2] = {{.fd = 1, .events = POLLIN}, {.fd = sig_fd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fail("poll: %s", strerror(errno));
        }
        if (p[1].revents) {
            reap_children();
            if (runtime_done)
                fail("the waiting runtime exited (wait status 0x%x)", runtime_status);
        }
        if (p[0].revents)
            break;
    }
    static char buf[16384];
    ssize_t n = recv(1, buf, sizeof buf - 1, 0);
    if (n <= 0) { /* discarded */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        exit(0);
    }
    buf[n] = 0;
    static char *av[96];
    int ac = 0;
    av[ac++] = "conch-shim";
    for (char *q = buf; q < buf + n && ac < 95; q += strlen(q) + 1)
        av[ac++] = q;
    av[ac] = NULL;
    optind = 0; /* glibc: full re-initialisation of getopt */
    free(opt.runtime_args);
    parse_args(ac, av);
}

/* `create` through the waiting runtime: argv (NUL-separated) + stdio as SCM_RIGHTS. */
static int warm_create(int in, int out, int err, int cap1, int cap2, char *const *args)
{
    static char buf[16384];
    size_t len = 0;
    char *parts[64 + 16];
    int n = 0;
    for (int i = 0; i < opt.n_runtime_args && n < 64; i++)
        parts[n++] = opt.runtime_args[i];
    parts[n++] = "--root";
    parts[n++] = opt.runtime_root;
    for (int i = 0; args[i] && n < 64 + 15; i++)
        parts[n++] = args[i];
    for (int i = 0; i < n; i++) {
        size_t k = strlen(parts[i]) + 1;
        if (len + k > sizeof buf)
            fail("runtime arguments too long");
        memcpy(buf + len, parts[i], k);
        len += k;
    }
    int fds[3] = {in, out, err};
    union {
        struct cmsghdr align;
        char data[CMSG_SPACE(sizeof fds)];
    } u;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.data,
                         .msg_controllen = sizeof u.data};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    capture_len = 0;
    capture[0] = 0;
    /* back to our own priority before it creates the container (which inherits it);
     * without CAP_SYS_NICE that is refused: then a cold runtime does the create */
    errno = 0;
    int own = getpriority(PRIO_PROCESS, 0);
    if (errno != 0 || setpriority(PRIO_PROCESS, (id_t)runtime_pid, own) < 0) {
        dbg("cannot restore the waiting runtime's priority (%s): cold create", strerror(errno));
        kill(runtime_pid, SIGKILL);
        while (waitpid(runtime_pid, NULL, 0) < 0 && errno == EINTR)
            ;
        runtime_pid = 0;
        close(warm_rt);
        warm_rt = -1;
        return run_runtime(in, out, err, cap1, cap2, args);
    }
    if (sendmsg(warm_rt, &msg, MSG_NOSIGNAL) < 0)
        fail("handing create to the waiting runtime: %s", strerror(errno));
    close(warm_rt);
    warm_rt = -1;
    dbg("runtime create (warm): pid %d", runtime_pid);
    return wait_runtime(cap1, cap2, "create");
}

int main(int argc, char **argv)
{
    /* nothing inherited but stdio: the engine's other fds are not ours to keep open */
    syscall(SYS_close_range, 3U, ~0U, 0U);
    int warm = argc >= 2 && !strcmp(argv[1], "--warm");
    if (warm)
        warm_parse(argc, argv);
    else
        parse_args(argc, argv);
    daemonize();

    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    devnull_rd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    devnull_wr = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull_rd < 0 || devnull_wr < 0)
        fail("open /dev/null: %s", strerror(errno));
    dup2(devnull_rd, 0);
    dup2(devnull_wr, 2);
    if (chdir("/") < 0)
        fail("chdir /: %s", strerror(errno));

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sig_fd < 0)
        fail("signalfd: %s", strerror(errno));
    if (warm)
        warm_wait(); /* returns with the options of the container to start */
    if (opt.debug_log) {
        int fd = open(opt.debug_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
            debug_on = 1;
        }
    }
    dbg("starting container %s (tty %d, stdin %d)", opt.id, opt.tty, opt.open_stdin);

    log_open();
    if (log_fd < 0)
        fail("open log %s: %s", opt.log_path, strerror(errno));
    reserve_exit_file();
    listen_fd = listen_unix(opt.socket_path);

    /* the container's stdio; the runtime runs with it, and init inherits it */
    int c_in = devnull_rd, c_out = devnull_wr, c_err = devnull_wr;
    int cap1 = -1, cap2 = -1, cap_wr = -1;
    char console_path[PATH_MAX + 16];
    if (opt.tty) {
        snprintf(console_path, sizeof console_path, "%s.console", opt.socket_path);
        console_listen = listen_unix(console_path);
        int cp[2];
        if (pipe2(cp, O_CLOEXEC) < 0)
            fail("pipe: %s", strerror(errno));
        cap1 = cp[0];
        cap_wr = cp[1];
        c_out = c_err = cap_wr; /* only the runtime's own messages: init gets the pty */
    } else {
        int po[2], pe[2];
        if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0)
            fail("pipe: %s", strerror(errno));
        out_stream.fd = po[0];
        err_stream.fd = pe[0];
        c_out = po[1];
        c_err = pe[1];
        cap1 = po[0]; /* before start, only the runtime writes here */
        cap2 = pe[0];
        if (opt.open_stdin) {
            int pi[2];
            if (pipe2(pi, O_CLOEXEC) < 0)
                fail("pipe: %s", strerror(errno));
            c_in = pi[0];
            stdin_fd = pi[1];
        }
    }

    char pid_file[PATH_MAX + 16];
    snprintf(pid_file, sizeof pid_file, "%s/init.pid", opt.bundle);
    unlink(pid_file);
    char *create_args[9] = {"create", "--bundle", opt.bundle, "--pid-file", pid_file};
    int na = 5;
    if (opt.tty) {
        create_args[na++] = "--console-socket";
        create_args[na++] = console_path;
    }
    create_args[na++] = opt.id;
    create_args[na] = NULL;
    if (opt.tty)
        set_nonblock(cap1);
    else {
        set_nonblock(out_stream.fd);
        set_nonblock(err_stream.fd);
    }
    int st = warm_rt >= 0 ? warm_create(c_in, c_out, c_err, cap1, cap2, create_args)
                          : run_runtime(c_in, c_out, c_err, cap1, cap2, create_args);

    /* the runtime is done with them: init holds its own copies now */
    if (c_in != devnull_rd)
        close(c_in);
    if (c_out != devnull_wr)
        close(c_out);
    if (c_err != devnull_wr && c_err != c_out)
        close(c_err);
    if (opt.tty) {
        /* a connection made just before create exited may not be accepted yet */
        if (pty_master < 0 && console_conn < 0)
            console_conn = accept4(console_listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (console_conn >= 0)
            console_receive(); /* the fd is queued on the socket by now */
        close(console_listen);
        console_listen = -1;
        unlink(console_path);
    }
    if (st != 0) {
        char fallback[96];
        if (st < 0)
            snprintf(fallback, sizeof fallback, "runtime create timed out after %d s",
                     RUNTIME_TIMEOUT_MS / 1000);
        else
            snprintf(fallback, sizeof fallback, "runtime create failed (wait status 0x%x)", st);
        char *msg = strdup(trimmed_capture(fallback));
        runtime_delete_force();
        unlink(opt.socket_path);
        fail("%s", msg);
    }
    if (capture_len)
        dbg("runtime create said: %s", capture);
    long pid = read_pid_file(pid_file);
    if (pid <= 0) {
        runtime_delete_force();
        unlink(opt.socket_path);
        fail("runtime create succeeded but wrote no pid file at %s", pid_file);
    }
    container_pid = (pid_t)pid;
    for (int i = 0; i < n_early; i++)
        if (early[i].pid == container_pid) {
            container_exited = 1;
            container_status = early[i].status;
            container_exit_time = early[i].when;
        }
    if (opt.tty) {
        if (pty_master < 0) {
            runtime_delete_force();
            unlink(opt.socket_path);
            fail("runtime create did not send the pty master on the console socket");
        }
        set_nonblock(pty_master);
        out_stream.fd = pty_master;
        if (opt.open_stdin)
            stdin_fd = pty_master;
    }
    if (stdin_fd >= 0)
        set_nonblock(stdin_fd);

    /* --no-start: the engine runs `RUNTIME start` itself once it has connected the
     * attach clients that must see the container's first byte (docker run). */
    if (!opt.no_start) {
        int sp[2];
        if (pipe2(sp, O_CLOEXEC) < 0)
            fail("pipe: %s", strerror(errno));
        set_nonblock(sp[0]);
        char *start_args[] = {"start", opt.id, NULL};
        st = run_runtime(devnull_rd, sp[1], sp[1], sp[0], -1, start_args);
        close(sp[1]);
        close(sp[0]);
        if (st != 0) {
            char *msg = strdup(trimmed_capture("runtime start failed"));
            runtime_delete_force();
            unlink(opt.socket_path);
            fail("%s", msg);
        }
    }
    if (cap_wr >= 0)
        close(cap_wr);
    if (cap1 >= 0 && opt.tty)
        close(cap1);

    char ready[96];
    snprintf(ready, sizeof ready, "{\"pid\": %d, \"shim_pid\": %d}\n", (int)container_pid,
             (int)getpid());
    report(ready);
    dbg("container %s running as pid %d", opt.id, (int)container_pid);
    main_loop();
    return 0;
}
