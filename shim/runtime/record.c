/* Small pieces every verb of conch-runtime's front needs to read a container's record:
 * see record.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "record.h"

int front_valid_id(const char *id)
{
	if (!*id || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
		return 0;
	for (const char *c = id; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		      strchr("_+-.", *c)))
			return 0;
	return 1;
}

char *front_slurp(const char *path, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	char *buf = malloc(max + 1);
	size_t n = 0;
	ssize_t r;
	while (buf && n < max && (r = read(fd, buf + n, max - n)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			free(buf);
			buf = NULL;
			break;
		}
		n += (size_t)r;
	}
	close(fd);
	if (buf && n == max) { /* larger than expected: not ours to judge */
		free(buf);
		return NULL;
	}
	if (buf) {
		buf[n] = '\0';
		*len = n;
	}
	return buf;
}

long long front_process_start(long long pid)
{
	char path[64], *stat;
	size_t len;
	snprintf(path, sizeof path, "/proc/%lld/stat", pid);
	if (!(stat = front_slurp(path, 4096, &len)))
		return -1;
	char *p = strrchr(stat, ')');
	long long start = -1;
	if (p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X') {
		p += 2; /* field 3, the state; the start time is field 22 */
		for (int field = 3; field < 22 && p; field++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (p)
			start = strtoll(p, NULL, 10);
	}
	free(stat);
	return start;
}

int front_same_process(long long pid, long long start)
{
	long long now = front_process_start(pid);
	return now >= 0 && now == start;
}

void front_log_error(const char *log, const char *format, const char *msg)
{
	fprintf(stderr, "conch-runtime: %s\n", msg);
	if (!log || !*log)
		return;
	FILE *f = fopen(log, "ae");
	if (!f)
		return;
	struct timespec now;
	struct tm tm;
	char stamp[64];
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	size_t k = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + k, sizeof stamp - k, ".%09ldZ", now.tv_nsec);
	if (format && strcmp(format, "json") == 0) {
		size_t need = json_quote(NULL, 0, msg, strlen(msg)) + 1;
		char *quoted = malloc(need);
		if (quoted) {
			json_quote(quoted, need, msg, strlen(msg));
			fprintf(f, "{\"level\": \"error\", \"msg\": %s, \"time\": \"%s\"}\n", quoted, stamp);
			free(quoted);
		}
	} else {
		fprintf(f, "time=\"%s\" level=error msg=\"%s\"\n", stamp, msg);
	}
	fclose(f);
}
