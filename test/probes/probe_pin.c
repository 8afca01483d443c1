/*
 * probe_pin.c - long-term FOLL_PIN|FOLL_WRITE pins (io_uring fixed buffers).
 *
 * IORING_REGISTER_BUFFERS pins the buffer pages with pin_user_pages(
 * FOLL_WRITE | FOLL_LONGTERM). Scenarios on one 4-page private anon mapping
 * (page 0 read-faulted: zero page; page 1 written; pages 2-3 untouched):
 *   1. after registering all 4 pages: page 0 left the zero page (a write pin
 *      breaks COW), pages 2-3 were faulted in, every page exclusive; page 1
 *      kept its frame
 *   2. MADV_PAGEOUT with swap on: the pinned pages stay present (reclaim
 *      cannot free a page with extra references)
 *   3. after unregistering, MADV_PAGEOUT swaps them out
 *
 * Build/run (as root):
 *   cc -O0 -o /tmp/probe_pin probe_pin.c && /tmp/probe_pin
 */
#include "probe_common.h"
#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <sys/uio.h>

static void show4(const char *label, char *m)
{
	printf("%s\n", label);
	for (int i = 0; i < 4; i++) {
		char l[32];
		snprintf(l, sizeof(l), "  page %d", i);
		show_pm(l, m + i * PG);
	}
}

int main(void)
{
	banner("probe_pin");
	swap_setup();

	char *m = mmap_guarded(4);
	volatile char c = m[0];
	(void)c;
	m[PG] = 1;
	show4("before pinning", m);

	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	int fd = syscall(__NR_io_uring_setup, 4, &p);
	if (fd < 0)
		DIE("io_uring_setup");
	struct iovec iov = { .iov_base = m, .iov_len = 4 * PG };
	if (syscall(__NR_io_uring_register, fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0)
		DIE("IORING_REGISTER_BUFFERS");
	show4("\n--- 1. after IORING_REGISTER_BUFFERS (FOLL_PIN|FOLL_WRITE|FOLL_LONGTERM) ---", m);

	if (madvise(m, 4 * PG, MADV_PAGEOUT))
		perror("MADV_PAGEOUT");
	show4("\n--- 2. MADV_PAGEOUT while pinned ---", m);

	if (syscall(__NR_io_uring_register, fd, IORING_UNREGISTER_BUFFERS, NULL, 0) < 0)
		DIE("IORING_UNREGISTER_BUFFERS");
	if (madvise(m, 4 * PG, MADV_PAGEOUT))
		perror("MADV_PAGEOUT");
	show4("\n--- 3. MADV_PAGEOUT after unregistering ---", m);

	close(fd);
	swap_teardown();
	return 0;
}
