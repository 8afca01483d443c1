/*
 * probe_swap.c - MADV_PAGEOUT (21) of private anonymous pages and swap-in.
 *
 * Scenario 7:
 *   7a. write page 0, MADV_PAGEOUT: pagemap bits (swapped, type, offset,
 *       exclusive?, soft-dirty?), mincore (still in swap cache?), smaps
 *   7b. read page 0: content intact? bits after swap-in, pfn vs before
 *   7c. write page 0: any change?
 *   7d. forced round trip through the swap device: page 1 is paged out,
 *       read back (swap-cache hit), paged out again (now a clean swap-cache
 *       folio, freed at once), then read: content, bits, pfn (fresh
 *       pages are faulted in first so the freed frame cannot simply be
 *       handed back)
 *
 * Needs swap. If none is enabled, a 256 MiB swap file is created at
 * /var/tmp/ptemu-probe.swap, swapped on, and swapped off + deleted at exit.
 *
 * Build/run (as root):
 *   cc -O0 -o /tmp/probe_swap probe_swap.c && /tmp/probe_swap
 */
#include "probe_common.h"

static void fill(char *p, unsigned char seed)
{
	for (size_t i = 0; i < PG; i++)
		p[i] = (char)(seed + i * 7);
}

static int check(const char *p, unsigned char seed)
{
	for (size_t i = 0; i < PG; i++)
		if (p[i] != (char)(seed + i * 7))
			return 0;
	return 1;
}

/* SwapFree drops by 4 kB for every swap slot still allocated. */
static void meminfo_swap(void)
{
	print_cmd("  meminfo", "grep -E '^SwapFree' /proc/meminfo");
}

static void pageout(char *p)
{
	int r = madvise(p, PG, MADV_PAGEOUT);

	printf("  madvise(MADV_PAGEOUT) -> %d%s%s\n", r,
	       r ? " errno=" : "", r ? strerror(errno) : "");
}

int main(void)
{
	banner("probe_swap");
	swap_setup();

	char *m = mmap_guarded(4);
	meminfo_swap();

	printf("\n--- 7a. write page 0, MADV_PAGEOUT ---\n");
	fill(m, 0x11);
	uint64_t before = show_pm("page0 written", m);
	pageout(m);
	show_pm("page0 after PAGEOUT", m);
	printf("  mincore(page0) after PAGEOUT: %d (1 = folio still in swap cache)\n",
	       mincore_byte(m));
	show_smaps("after PAGEOUT", m, 4 * PG, SMAPS_BASIC);
	meminfo_swap();

	printf("\n--- 7b. read page 0 ---\n");
	struct faults f0 = faults_now();
	int ok = check(m, 0x11);
	struct faults f1 = faults_now();
	printf("  content intact: %s\n", ok ? "yes" : "NO");
	show_faults("read", f0, f1);
	uint64_t after = show_pm("page0 after read (swap-in)", m);
	printf("  pfn same as before pageout: %s\n",
	       pm_pfn(before) == pm_pfn(after) ? "yes" : "no");
	show_smaps("after read", m, 4 * PG, SMAPS_BASIC);
	meminfo_swap();

	printf("\n--- 7c. write page 0 ---\n");
	f0 = faults_now();
	m[0] = 0x42;
	f1 = faults_now();
	show_faults("write", f0, f1);
	uint64_t afterw = show_pm("page0 after write", m);
	printf("  pfn same as after swap-in read: %s\n",
	       pm_pfn(after) == pm_pfn(afterw) ? "yes" : "no");
	show_smaps("after write", m, 4 * PG, SMAPS_BASIC);
	meminfo_swap();

	printf("\n--- 7d. forced swap-device round trip, page 1 ---\n");
	fill(m + PG, 0x77);
	uint64_t b1 = show_pm("page1 written", m + PG);
	pageout(m + PG);
	uint64_t s1 = show_pm("page1 after PAGEOUT #1", m + PG);
	sleep(1); /* let writeback finish */
	printf("  mincore(page1) 1s after PAGEOUT #1: %d\n", mincore_byte(m + PG));
	f0 = faults_now();
	volatile char c = m[PG];
	(void)c;
	f1 = faults_now();
	show_faults("read", f0, f1);
	uint64_t r1 = show_pm("page1 read (swap-cache hit?)", m + PG);
	printf("  pfn same as before PAGEOUT #1: %s\n",
	       pm_pfn(b1) == pm_pfn(r1) ? "yes" : "no");
	pageout(m + PG);
	uint64_t s2 = show_pm("page1 after PAGEOUT #2", m + PG);
	printf("  same swap entry as PAGEOUT #1: %s\n", s1 == s2 ? "yes" : "no");
	printf("  mincore(page1) after PAGEOUT #2: %d\n", mincore_byte(m + PG));
	meminfo_swap();
	churn_frames(64); /* take the freed frame, so swap-in must use another */
	f0 = faults_now();
	ok = check(m + PG, 0x77);
	f1 = faults_now();
	printf("  content intact: %s\n", ok ? "yes" : "NO");
	show_faults("read", f0, f1);
	uint64_t r2 = show_pm("page1 after read from device", m + PG);
	printf("  pfn same as original: %s\n",
	       pm_pfn(b1) == pm_pfn(r2) ? "yes" : "no");
	f0 = faults_now();
	m[PG] = 0x42;
	f1 = faults_now();
	show_faults("write", f0, f1);
	show_pm("page1 after write", m + PG);
	show_smaps("end", m, 4 * PG, SMAPS_BASIC);
	meminfo_swap();

	munmap(m, 4 * PG);
	swap_teardown();
	return 0;
}
