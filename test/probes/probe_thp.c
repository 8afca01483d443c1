/*
 * probe_thp.c - PMD-sized transparent huge pages of private anonymous memory.
 *
 * Scenario 10 (write fault first):
 *   4 MiB anonymous mapping aligned to 2 MiB, madvise(MADV_HUGEPAGE), write
 *   one byte in the first 2 MiB: AnonHugePages, pagemap of pages 0, 1, 511
 *   (pfns consecutive? exclusive?), then mprotect(PROT_READ) one 4 KiB page
 *   in the middle: VMAs, AnonHugePages, pfns unchanged? thp_split_* counters
 * Scenario 11 (read fault first):
 *   use_zero_page setting, madvise(MADV_HUGEPAGE), read one byte: pagemap of
 *   pages 0, 1, 511 (huge zero page: consecutive pfns, same in a second
 *   region?), then write one byte: THP (AnonHugePages) or 4 KiB pages?
 *
 * Build/run (as root):
 *   cc -O0 -o /tmp/probe_thp probe_thp.c && /tmp/probe_thp
 */
#include "probe_common.h"

static volatile char sink;

static const char *const SMAPS_THP[] = {
	"Rss", "Anonymous", "AnonHugePages", "THPeligible", NULL
};

static void thp_vmstat(const char *label)
{
	char tag[64];

	snprintf(tag, sizeof(tag), "  vmstat %s", label);
	print_cmd(tag, "grep -E '^thp_(fault_alloc|fault_fallback|zero_page_alloc|"
		  "split_pmd|split_page|deferred_split_page) ' /proc/vmstat | "
		  "tr '\\n' ' '; echo");
}

static char *thp_region(void)
{
	char *p = mmap_aligned(2 * HPAGE, HPAGE, PROT_READ | PROT_WRITE);

	if (madvise(p, 2 * HPAGE, MADV_HUGEPAGE))
		DIE("madvise HUGEPAGE");
	return p;
}

static void show_pages(const char *tag, char *p, const int *idx, int n, uint64_t *pfns)
{
	char label[64];

	for (int i = 0; i < n; i++) {
		snprintf(label, sizeof(label), "%s page%d", tag, idx[i]);
		uint64_t e = show_pm(label, p + (size_t)idx[i] * PG);
		if (pfns)
			pfns[i] = pm_pfn(e);
	}
}

int main(void)
{
	banner("probe_thp");
	print_file("thp defrag", "/sys/kernel/mm/transparent_hugepage/defrag");
	print_file("thp use_zero_page", "/sys/kernel/mm/transparent_hugepage/use_zero_page");
	print_file("thp hpage_pmd_size", "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");

	printf("\n--- 10. THP write fault, then mprotect one 4K page ---\n");
	thp_vmstat("before");
	char *t = thp_region();
	printf("  region %p (2 MiB aligned), 4 MiB, MADV_HUGEPAGE\n", (void *)t);
	t[0] = 1;
	thp_vmstat("after write");
	show_smaps("after write of byte 0", t, 2 * HPAGE, SMAPS_THP);
	static const int idx10[] = { 0, 1, 255, 256, 257, 511, 512 };
	uint64_t pf1[7], pf2[7];
	show_pages("T", t, idx10, 7, pf1);
	int consec = 1;
	for (int i = 1; i < 6; i++)
		consec &= pf1[i] == pf1[0] + (uint64_t)idx10[i];
	printf("  pfns of pages 0..511 consecutive (pfn0 + index): %s, pfn0 2M-aligned: %s\n",
	       consec ? "yes" : "no", (pf1[0] & 511) == 0 ? "yes" : "no");

	if (mprotect(t + 256 * PG, PG, PROT_READ))
		DIE("mprotect");
	printf("  mprotect(page 256, PROT_READ) done\n");
	thp_vmstat("after mprotect");
	show_smaps("after mprotect", t, 2 * HPAGE, SMAPS_THP);
	show_pages("T", t, idx10, 7, pf2);
	int same = 1;
	for (int i = 0; i < 6; i++)
		same &= pf1[i] == pf2[i];
	printf("  pfns of pages 0,1,255,256,257,511 unchanged: %s\n", same ? "yes" : "no");
	t[PG] = 2;
	show_pm("T page1 after write", t + PG);
	thp_vmstat("after write to page 1");

	printf("\n--- 11. THP read fault first ---\n");
	thp_vmstat("before");
	char *u = thp_region();
	char *v = thp_region();
	printf("  regions U %p and V %p, 4 MiB each, MADV_HUGEPAGE\n", (void *)u, (void *)v);
	sink = u[0];
	sink = v[0];
	thp_vmstat("after reads");
	static const int idx11[] = { 0, 1, 511, 512 };
	uint64_t pu[4], pv[4];
	show_pages("U", u, idx11, 4, pu);
	show_pages("V", v, idx11, 4, pv);
	printf("  U pfns consecutive over 0..511: %s, U and V same pfns: %s\n",
	       (pu[1] == pu[0] + 1 && pu[2] == pu[0] + 511) ? "yes" : "no",
	       (pu[0] == pv[0] && pu[2] == pv[2]) ? "yes" : "no");
	show_smaps("U after read", u, 2 * HPAGE, SMAPS_THP);

	u[PG] = 1; /* write to page 1 of the huge zero page */
	thp_vmstat("after write");
	show_smaps("U after write of page 1", u, 2 * HPAGE, SMAPS_THP);
	uint64_t pw[4];
	show_pages("U", u, idx11, 4, pw);
	printf("  U pfns now consecutive over 0..511: %s, differ from zero THP: %s\n",
	       (pw[1] == pw[0] + 1 && pw[2] == pw[0] + 511) ? "yes" : "no",
	       pw[0] != pu[0] ? "yes" : "no");
	show_pages("V", v, idx11, 1, NULL);

	munmap(t, 2 * HPAGE);
	munmap(u, 2 * HPAGE);
	munmap(v, 2 * HPAGE);
	return 0;
}
