/*
 * probe_memfd.c - pagemap bits of shmem (memfd) pages, shared and private.
 *
 * Scenario 8 (MAP_SHARED):
 *   8a. memfd_create + ftruncate(16 pages), mmap A MAP_SHARED RW, write
 *       page 0: file bit 61? exclusive?
 *   8b. second MAP_SHARED mapping B of the same memfd, read page 0:
 *       exclusive bit on A and on B?
 *   8c. munmap B, MADV_PAGEOUT on A page 0: bits after pageout, smaps,
 *       then read again: bits, content, pfn
 * Scenario 9 (MAP_PRIVATE of the same memfd, mapping C):
 *   9a. read page 2 (also mapped by A): file=1? pfn == A's? exclusive?
 *       Which other, untouched, pages of C got mapped (fault-around)?
 *   9b. read page 3 (filled via pwrite, never mapped by A): exclusive?
 *   9c. write page 3 through C: file=0? exclusive=1? new pfn? A still sees
 *       the page-cache page unchanged
 *   9d. read page 5 (a hole in the memfd): zero page or a shmem page?
 *
 * Needs swap for 8c. If none is enabled, a 256 MiB swap file is created at
 * /var/tmp/ptemu-probe.swap, swapped on, and swapped off + deleted at exit.
 *
 * Build/run (as root):
 *   cc -O0 -o /tmp/probe_memfd probe_memfd.c && /tmp/probe_memfd
 */
#include "probe_common.h"

static volatile char sink;

static const char *const SMAPS_SHMEM[] = {
	"Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean",
	"Private_Dirty", "Anonymous", "Swap", NULL
};

int main(void)
{
	banner("probe_memfd");
	print_file("shmem_enabled", "/sys/kernel/mm/transparent_hugepage/shmem_enabled");
	swap_setup();

	/* zero-page pfn for reference */
	char *z = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (z == MAP_FAILED)
		DIE("mmap zero");
	sink = z[0];
	uint64_t zpfn = pm_pfn(pagemap_entry(z));
	printf("anon zero-page pfn: 0x%llx\n", (unsigned long long)zpfn);

	int fd = memfd_create("ptemu-probe", 0);
	if (fd < 0)
		DIE("memfd_create");
	if (ftruncate(fd, 16 * PG))
		DIE("ftruncate");

	printf("\n--- 8a. MAP_SHARED mapping A, write page 0 ---\n");
	char *a = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (a == MAP_FAILED)
		DIE("mmap A");
	memset(a, 0x5a, PG);
	uint64_t a0 = show_pm("A page0 after write", a);

	printf("\n--- 8b. second MAP_SHARED mapping B, read page 0 ---\n");
	char *b = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (b == MAP_FAILED)
		DIE("mmap B");
	sink = b[0];
	show_pm("A page0", a);
	uint64_t b0 = show_pm("B page0 after read", b);
	printf("  A and B map the same pfn: %s\n", pm_pfn(a0) == pm_pfn(b0) ? "yes" : "no");

	printf("\n--- 8c. munmap B, MADV_PAGEOUT A page 0 ---\n");
	munmap(b, 16 * PG);
	show_pm("A page0 after munmap B", a);
	int r = madvise(a, PG, MADV_PAGEOUT);
	printf("  madvise(MADV_PAGEOUT) -> %d%s%s\n", r,
	       r ? " errno=" : "", r ? strerror(errno) : "");
	show_pm("A page0 after PAGEOUT", a);
	printf("  mincore(A page0) after PAGEOUT: %d\n", mincore_byte(a));
	show_smaps("A after PAGEOUT", a, 16 * PG, SMAPS_SHMEM);
	print_cmd("  meminfo", "grep -E '^(SwapFree|Shmem):' /proc/meminfo");
	sleep(1);
	printf("  mincore(A page0) 1s later: %d\n", mincore_byte(a));
	struct faults f0 = faults_now();
	int ok = 1;
	for (size_t i = 0; i < PG; i++)
		ok &= a[i] == 0x5a;
	struct faults f1 = faults_now();
	printf("  content intact: %s\n", ok ? "yes" : "NO");
	show_faults("read", f0, f1);
	uint64_t a0r = show_pm("A page0 after re-read", a);
	printf("  pfn same as before PAGEOUT: %s\n", pm_pfn(a0) == pm_pfn(a0r) ? "yes" : "no");
	show_smaps("A after re-read", a, 16 * PG, SMAPS_SHMEM);

	printf("\n--- 9. MAP_PRIVATE mapping C of the same memfd ---\n");
	memset(a + 2 * PG, 0x22, PG);
	char buf[PG];
	memset(buf, 0x33, PG);
	if (pwrite(fd, buf, PG, 3 * PG) != (ssize_t)PG)
		DIE("pwrite");
	char *c = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (c == MAP_FAILED)
		DIE("mmap C");

	printf("9a. page 2, also mapped shared by A:\n");
	sink = c[2 * PG];
	uint64_t c2 = show_pm("C page2 after read", c + 2 * PG);
	uint64_t a2 = show_pm("A page2", a + 2 * PG);
	printf("  C and A map the same pfn: %s\n", pm_pfn(c2) == pm_pfn(a2) ? "yes" : "no");
	printf("  untouched pages of C after that single read fault:\n");
	show_pm("C page0 (in page cache)", c);
	show_pm("C page1 (hole)", c + PG);
	show_pm("C page3 (in page cache)", c + 3 * PG);
	show_pm("C page4 (hole)", c + 4 * PG);

	printf("9b. page 3, filled by pwrite, never mapped by A:\n");
	struct faults f2 = faults_now();
	sink = c[3 * PG];
	struct faults f3 = faults_now();
	show_faults("read of C page3", f2, f3);
	uint64_t c3 = show_pm("C page3 after read", c + 3 * PG);

	printf("9c. write page 3 through C:\n");
	c[3 * PG] = 0x44;
	uint64_t c3w = show_pm("C page3 after write", c + 3 * PG);
	printf("  pfn changed (COW copy): %s\n", pm_pfn(c3) != pm_pfn(c3w) ? "yes" : "no");
	sink = a[3 * PG];
	uint64_t a3 = show_pm("A page3 (page cache)", a + 3 * PG);
	printf("  A page3 value 0x%x (expect 0x33), pfn == C's pre-write pfn: %s\n",
	       (unsigned char)a[3 * PG], pm_pfn(a3) == pm_pfn(c3) ? "yes" : "no");
	c[2 * PG] = 0x45;
	show_pm("C page2 after write", c + 2 * PG);
	show_pm("A page2 after C's write", a + 2 * PG);

	printf("9d. page 5, a hole in the memfd:\n");
	sink = c[5 * PG];
	uint64_t c5 = show_pm("C page5 after read", c + 5 * PG);
	printf("  pfn == anon zero-page pfn: %s\n", pm_pfn(c5) == zpfn ? "yes" : "no");
	c[5 * PG] = 1;
	show_pm("C page5 after write", c + 5 * PG);
	show_smaps("C", c, 16 * PG, SMAPS_SHMEM);

	munmap(c, 16 * PG);
	munmap(a, 16 * PG);
	close(fd);
	swap_teardown();
	return 0;
}
