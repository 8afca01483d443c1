/*
 * probe_uffd_remove.c - UFFD_FEATURE_EVENT_REMOVE on the host kernel, the
 * expectations of the event-remove test in test/uffd.test.ts.
 *
 *   An anonymous VMA of 4 pages and a shared one right after it, both
 *   registered. A thread runs MADV_DONTNEED over the last 2 anonymous pages
 *   and the first 2 shared ones. While its first message is unread the
 *   thread waits in madvise and UFFDIO_WRITEPROTECT fails with EAGAIN; the
 *   messages are one UFFD_EVENT_REMOVE per VMA, clipped to it. MADV_REMOVE
 *   of a shared page is one more.
 *
 * Build/run (as root):
 *   cc -O0 -pthread -o /tmp/probe_uffd_remove probe_uffd_remove.c && /tmp/probe_uffd_remove
 */
#include "probe_common.h"
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

static char *base;
static int advice;
static size_t off, len;

static void *advise(void *arg)
{
	(void)arg;
	if (madvise(base + off, len, advice))
		DIE("madvise");
	return NULL;
}

static void read_msgs(int fd, int n)
{
	for (int i = 0; i < n; i++) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		poll(&pfd, 1, 2000);
		struct uffd_msg msg;
		if (read(fd, &msg, sizeof(msg)) != sizeof(msg))
			DIE("read");
		if (msg.event == UFFD_EVENT_REMOVE)
			printf("remove [%lu,%lu)\n", (unsigned long)(msg.arg.remove.start - (uint64_t)base) / PG,
			       (unsigned long)(msg.arg.remove.end - (uint64_t)base) / PG);
		else
			printf("event 0x%x\n", msg.event);
	}
}

int main(void)
{
	banner("probe_uffd_remove");
	int fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	if (fd < 0 || ioctl(fd, UFFDIO_API, &api))
		DIE("userfaultfd");
	base = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mmap(base + 4 * PG, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		DIE("mmap");
	memset(base, 1, 8 * PG);
	struct uffdio_register r1 = { .range = { (uint64_t)base, 4 * PG }, .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_register r2 = { .range = { (uint64_t)base + 4 * PG, 4 * PG }, .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(fd, UFFDIO_REGISTER, &r1) || ioctl(fd, UFFDIO_REGISTER, &r2))
		DIE("UFFDIO_REGISTER");

	pthread_t t;
	advice = MADV_DONTNEED, off = 2 * PG, len = 4 * PG;
	pthread_create(&t, NULL, advise, NULL);
	usleep(200000);
	struct uffdio_writeprotect wp = { .range = { (uint64_t)base, PG }, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	int rc = ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
	printf("writeprotect while unread: %s\n", rc ? strerror(errno) : "ok");
	read_msgs(fd, 2);
	pthread_join(t, NULL);
	rc = ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
	printf("writeprotect after read: %s\n", rc ? strerror(errno) : "ok");

	advice = MADV_REMOVE, off = 7 * PG, len = PG;
	pthread_create(&t, NULL, advise, NULL);
	read_msgs(fd, 1);
	pthread_join(t, NULL);
	return 0;
}
