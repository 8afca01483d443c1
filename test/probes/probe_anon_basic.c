/*
 * probe_anon_basic.c - pagemap bits of private anonymous 4 KiB pages.
 *
 * Scenarios (one fresh 16-page MAP_PRIVATE|MAP_ANONYMOUS mapping):
 *   1. untouched page: is soft-dirty (bit 55) set on a never-touched page?
 *   2. read fault: present? pfn? same pfn for two read-faulted pages (shared
 *      zero page)? exclusive bit?
 *   3. write fault: exclusive? soft-dirty?
 *   4. MADV_DONTNEED of a written page, then read it again
 *   5. mprotect(PROT_NONE) on a written page (present? pfn?), back to RW and
 *      read: same pfn?
 *   6. echo 4 > /proc/self/clear_refs (clear soft-dirty): bit 55 on written
 *      and untouched pages, then write again
 *
 * Build/run (as root, so pfns are visible):
 *   cc -O0 -o /tmp/probe_anon_basic probe_anon_basic.c && /tmp/probe_anon_basic
 */
#include "probe_common.h"

static volatile char sink;

static void clear_soft_dirty(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY);

	if (fd < 0)
		DIE("open clear_refs");
	ssize_t r = write(fd, "4", 1);
	printf("  write(\"4\") to /proc/self/clear_refs -> %zd%s%s\n", r,
	       r < 0 ? " errno=" : "", r < 0 ? strerror(errno) : "");
	close(fd);
}

int main(void)
{
	banner("probe_anon_basic");

	char *m = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		DIE("mmap");
	printf("mapping: %p, 16 pages\n", (void *)m);

	printf("\n--- 1. fresh mapping, never touched ---\n");
	show_pm("page0 untouched", m);
	show_pm("page15 untouched", m + 15 * PG);

	printf("\n--- 2. read fault pages 0 and 2 ---\n");
	sink = m[0];
	sink = m[2 * PG];
	uint64_t e0 = show_pm("page0 after read", m);
	uint64_t e2 = show_pm("page2 after read", m + 2 * PG);
	printf("  same pfn for page0 and page2: %s\n",
	       pm_pfn(e0) == pm_pfn(e2) ? "yes (shared zero page)" : "no");

	printf("\n--- 3. write page 1 ---\n");
	m[PG] = 1;
	uint64_t e1 = show_pm("page1 after write", m + PG);
	printf("  page1 pfn differs from zero-page pfn: %s\n",
	       pm_pfn(e1) != pm_pfn(e0) ? "yes" : "no");

	printf("\n--- 4. MADV_DONTNEED page 1, then read ---\n");
	if (madvise(m + PG, PG, MADV_DONTNEED))
		DIE("madvise DONTNEED");
	show_pm("page1 after DONTNEED", m + PG);
	printf("  page1 value after DONTNEED read: %d\n", m[PG]);
	uint64_t e1b = show_pm("page1 after re-read", m + PG);
	printf("  page1 re-read pfn == zero-page pfn: %s\n",
	       pm_pfn(e1b) == pm_pfn(e0) ? "yes" : "no");

	printf("\n--- 5. mprotect(PROT_NONE) on written page 3 ---\n");
	m[3 * PG] = 0x55;
	uint64_t e3 = show_pm("page3 after write", m + 3 * PG);
	if (mprotect(m + 3 * PG, PG, PROT_NONE))
		DIE("mprotect NONE");
	show_pm("page3 PROT_NONE", m + 3 * PG);
	printf("  mincore(page3) while PROT_NONE: %d\n", mincore_byte(m + 3 * PG));
	if (mprotect(m + 3 * PG, PG, PROT_READ | PROT_WRITE))
		DIE("mprotect RW");
	show_pm("page3 back to RW (no access)", m + 3 * PG);
	printf("  page3 value: 0x%x\n", (unsigned char)m[3 * PG]);
	uint64_t e3b = show_pm("page3 back to RW, after read", m + 3 * PG);
	printf("  page3 pfn unchanged across PROT_NONE round trip: %s\n",
	       pm_pfn(e3) == pm_pfn(e3b) ? "yes" : "no");

	printf("\n--- 6. clear_refs 4 (clear soft-dirty) ---\n");
	m[4 * PG] = 1;
	show_pm("page4 written, before clear", m + 4 * PG);
	show_pm("page5 untouched, before clear", m + 5 * PG);
	clear_soft_dirty();
	show_pm("page4 written, after clear", m + 4 * PG);
	show_pm("page5 untouched, after clear", m + 5 * PG);
	show_pm("page0 zero-page, after clear", m);
	m[4 * PG] = 2;
	show_pm("page4 written again", m + 4 * PG);
	sink = m[5 * PG];
	show_pm("page5 read after clear", m + 5 * PG);
	m[6 * PG] = 1;
	show_pm("page6 first write after clear", m + 6 * PG);

	munmap(m, 16 * PG);
	return 0;
}
