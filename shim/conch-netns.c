/*
 * conch-netns: hand conchd a NETLINK_ROUTE socket that lives in a network namespace.
 *
 *   conch-netns new  PATH FD   unshare a new network namespace, bind it at PATH (an
 *                              existing empty file, as `ip netns add` does), bring its
 *                              `lo` up, and send a netlink socket made there over FD
 *   conch-netns join PATH FD   the same for the namespace already bound at PATH
 *
 * FD is an AF_UNIX socket inherited from the caller; the netlink socket goes back as
 * SCM_RIGHTS and this process exits. A socket stays in the namespace it was made in, so
 * every request conchd sends on it acts there, while conchd itself never enters a
 * namespace (DESIGN.md). This is conch.network.netlink's fast path: one exec of a tiny
 * C program (~1 ms) instead of `unshare` + `nsenter python` (~40 ms).
 *
 * Exit status: 0 on success; 1 with a one-line message on stderr naming the step.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netlink.h>

static int fail(const char *step, const char *what)
{
	fprintf(stderr, "conch-netns: %s %s: %s\n", step, what, strerror(errno));
	return 1;
}

/* `ip link set lo up`, with the classic ioctl: no netlink message to build. */
static int loopback_up(void)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		goto err;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		goto err;
	close(s);
	return 0;
err:
	close(s);
	return -1;
}

static int send_fd(int channel, int fd)
{
	char byte = 'n';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(channel, &msg, 0) < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[1], "new") && strcmp(argv[1], "join"))) {
		fprintf(stderr, "usage: conch-netns new|join PATH FD\n");
		return 2;
	}
	const char *path = argv[2];
	int channel = atoi(argv[3]);

	if (!strcmp(argv[1], "new")) {
		if (unshare(CLONE_NEWNET) < 0)
			return fail("unshare", "CLONE_NEWNET");
		if (mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) < 0)
			return fail("bind-mounting the namespace at", path);
		if (loopback_up() < 0) {
			int saved = errno;
			umount2(path, MNT_DETACH);
			errno = saved;
			return fail("bringing up", "lo");
		}
	} else {
		int ns = open(path, O_RDONLY | O_CLOEXEC);
		if (ns < 0)
			return fail("opening", path);
		if (setns(ns, CLONE_NEWNET) < 0)
			return fail("entering", path);
		close(ns);
	}
	int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (nl < 0)
		return fail("socket", "NETLINK_ROUTE");
	if (send_fd(channel, nl) < 0)
		return fail("sending the socket over fd", argv[3]);
	return 0;
}
