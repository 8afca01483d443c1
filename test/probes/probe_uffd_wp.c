/*
 * probe_uffd_wp.c - userfaultfd write-protect on the host kernel, the
 * expectations test/uffd.test.ts follows.
 *
 *   a. anon and shmem (UFFD_FEATURE_WP_HUGETLBFS_SHMEM), 4 pages written,
 *      registered MODE_WP, write-protected: pagemap bit 57 on each page.
 *   b. MADV_DONTNEED of both: shmem keeps uffd-wp as a marker (not present,
 *      bits 57 and 62), anon keeps nothing.
 *   c. wp-unpopulated anon: never-touched pages read uffd-wp (and swapped).
 *   d. async (WP_ASYNC | WP_UNPOPULATED), 64 written pages: PAGEMAP_SCAN with
 *      WP_MATCHING | CHECK_WPASYNC, category and return mask WRITTEN: one
 *      region; after writing pages 1,5,6,7,20,63 and reading 2,3,40: regions
 *      [1,2) [5,8) [20,21) [63,64); again: none; max_pages 2: [1,2) [5,6) and
 *      walk_end at page 6.
 *
 * Build/run (as root):
 *   cc -O0 -o /tmp/probe_uffd_wp probe_uffd_wp.c && /tmp/probe_uffd_wp
 */
#include "probe_common.h"
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

/* Newer than this system's headers (Linux 6.7 uapi). */
#ifndef PAGEMAP_SCAN
struct page_region { uint64_t start, end, categories; };
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#define PAGE_IS_WRITTEN (1 << 1)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

static int uffd_open(uint64_t features)
{
	int fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		DIE("userfaultfd");
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	if (ioctl(fd, UFFDIO_API, &api))
		DIE("UFFDIO_API");
	return fd;
}

static void uffd_wp(int fd, char *p, size_t len, int on)
{
	struct uffdio_register reg = { .range = { (uint64_t)p, len }, .mode = UFFDIO_REGISTER_MODE_WP };
	if (on && ioctl(fd, UFFDIO_REGISTER, &reg) && errno != EBUSY)
		DIE("UFFDIO_REGISTER");
	struct uffdio_writeprotect wp = { .range = { (uint64_t)p, len }, .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };
	if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp))
		DIE("UFFDIO_WRITEPROTECT");
}

static void bits(const char *what, char *p, int n)
{
	printf("%-28s", what);
	for (int i = 0; i < n; i++) {
		uint64_t e = pagemap_entry(p + i * PG);
		printf(" [%c%c%c]", e & PM_PRESENT ? 'P' : '-', e & PM_SWAP ? 'S' : '-', e & PM_UFFD_WP ? 'W' : '-');
	}
	printf("\n");
}

static void scan(const char *what, char *p, size_t len, uint64_t flags, uint64_t max_pages)
{
	struct page_region regs[16];
	struct pm_scan_arg arg = {
		.size = sizeof(arg), .flags = flags, .start = (uint64_t)p, .end = (uint64_t)p + len,
		.vec = (uint64_t)regs, .vec_len = 16, .max_pages = max_pages,
		.category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
	};
	int fd = open("/proc/self/pagemap", O_RDONLY);
	int n = ioctl(fd, PAGEMAP_SCAN, &arg);
	close(fd);
	printf("%-28s %d region(s):", what, n);
	for (int i = 0; i < n; i++)
		printf(" [%lu,%lu)", (regs[i].start - (uint64_t)p) / PG, (regs[i].end - (uint64_t)p) / PG);
	printf("  walk_end page %lu\n", (arg.walk_end - (uint64_t)p) / PG);
}

int main(void)
{
	banner("probe_uffd_wp");

	/* a, b */
	int fd = uffd_open(UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
	char *anon = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *shm = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memset(anon, 1, 4 * PG);
	memset(shm, 1, 4 * PG);
	uffd_wp(fd, anon, 4 * PG, 1);
	uffd_wp(fd, shm, 4 * PG, 1);
	bits("a. anon protected", anon, 4);
	bits("a. shmem protected", shm, 4);
	madvise(anon, 4 * PG, MADV_DONTNEED);
	madvise(shm, 4 * PG, MADV_DONTNEED);
	bits("b. anon after DONTNEED", anon, 4);
	bits("b. shmem after DONTNEED", shm, 4);
	printf("b. shmem read after DONTNEED: %d\n", shm[0]);
	bits("b. shmem after the read", shm, 1);
	close(fd);

	/* c */
	fd = uffd_open(UFFD_FEATURE_WP_UNPOPULATED);
	char *un = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	un[0] = 1;
	uffd_wp(fd, un, 4 * PG, 1);
	bits("c. wp-unpopulated", un, 4);
	close(fd);

	/* d */
	fd = uffd_open(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED);
	char *a = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(a, 1, 64 * PG);
	struct uffdio_register reg = { .range = { (uint64_t)a, 64 * PG }, .mode = UFFDIO_REGISTER_MODE_WP };
	if (ioctl(fd, UFFDIO_REGISTER, &reg))
		DIE("UFFDIO_REGISTER async");
	uint64_t wp = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
	scan("d. first scan", a, 64 * PG, wp, 0);
	int written[] = { 1, 5, 6, 7, 20, 63 };
	for (int i = 0; i < 6; i++)
		a[written[i] * PG] = 2;
	volatile char sink = a[2 * PG] + a[3 * PG] + a[40 * PG];
	(void)sink;
	scan("d. max_pages 2, no WP", a, 64 * PG, PM_SCAN_CHECK_WPASYNC, 2);
	scan("d. after the writes", a, 64 * PG, wp, 0);
	scan("d. again", a, 64 * PG, wp, 0);
	return 0;
}
