/*
 * probe_fork_pin.c - fork() of pages pinned by io_uring fixed buffers
 * (pin_user_pages FOLL_WRITE|FOLL_LONGTERM).
 *
 * One 4-page private anon mapping, all written; page 1 registered as a fixed
 * buffer; then fork(). Child and parent print pagemap:
 *   a. pinned page 1: child has a different pfn (copied at fork), parent the
 *      same as before, exclusive; unpinned pages shared (same pfn, not
 *      exclusive)
 *   b. parent writes page 1: minor faults taken (0 = its PTE stayed writable)
 *   c. a 2 MiB THP with one pinned subpage: the child's pages are not THP
 *      (AnonHugePages in the child's smaps) while the parent keeps its pfns
 *
 * Build/run (as root):
 *   cc -O0 -o /tmp/probe_fork_pin probe_fork_pin.c && /tmp/probe_fork_pin
 */
#include "probe_common.h"
#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

static int ring_with_buffer(void *addr, size_t len)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	int fd = syscall(__NR_io_uring_setup, 4, &p);
	if (fd < 0)
		DIE("io_uring_setup");
	struct iovec iov = { .iov_base = addr, .iov_len = len };
	if (syscall(__NR_io_uring_register, fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0)
		DIE("IORING_REGISTER_BUFFERS");
	return fd;
}

int main(void)
{
	banner("probe_fork_pin");

	char *m = mmap_guarded(4);
	for (int i = 0; i < 4; i++)
		m[i * PG] = 1;
	int ring = ring_with_buffer(m + PG, PG);
	uint64_t before[4];
	for (int i = 0; i < 4; i++)
		before[i] = pm_pfn(pagemap_entry(m + i * PG));

	char *h = mmap_aligned(HPAGE, HPAGE, PROT_READ | PROT_WRITE);
	madvise(h, HPAGE, MADV_HUGEPAGE);
	memset(h, 2, HPAGE);
	int ring2 = ring_with_buffer(h + 5 * PG, PG);
	show_smaps("parent THP before fork", h, HPAGE, SMAPS_BASIC);

	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		printf("\n--- a. child ---\n");
		for (int i = 0; i < 4; i++) {
			char l[48];
			uint64_t e = show_pm(i == 1 ? "  child page1 (pinned in parent)" : "  child page", m + i * PG);
			snprintf(l, sizeof(l), "page %d", i);
			printf("  %s same pfn as parent had: %s\n", l, pm_pfn(e) == before[i] ? "yes" : "no");
		}
		show_smaps("c. child THP range", h, HPAGE, SMAPS_BASIC);
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	printf("\n--- a. parent (child has exited) ---\n");
	uint64_t e1 = show_pm("  parent page1", m + PG);
	printf("  parent page1 pfn unchanged: %s\n", pm_pfn(e1) == before[1] ? "yes" : "no");
	struct faults f0 = faults_now();
	m[PG] = 3;
	struct faults f1 = faults_now();
	show_faults("b. parent write to pinned page 1", f0, f1);
	show_smaps("c. parent THP range after fork", h, HPAGE, SMAPS_BASIC);
	close(ring);
	close(ring2);
	return 0;
}
