/*
 * probe_common.h - shared helpers for the ptemu kernel probes in this folder.
 *
 * Not a probe by itself; every probe_*.c includes it. Helpers:
 *   - pagemap entry lookup and decoding (/proc/self/pagemap, see
 *     Documentation/admin-guide/mm/pagemap.rst)
 *   - printing the /proc/self/smaps block(s) of the VMA(s) overlapping a range
 *   - kernel/THP/config banner
 *   - temporary swap file set-up and tear-down for MADV_PAGEOUT scenarios
 *
 * Pagemap bits (64-bit entry per 4 KiB virtual page):
 *   63 present, 62 swapped, 61 file-page or shared-anon, 57 uffd-wp,
 *   56 exclusively mapped, 55 soft-dirty,
 *   present: bits 0-54 pfn (zero unless CAP_SYS_ADMIN);
 *   swapped: bits 0-4 swap type, bits 5-54 swap offset.
 *
 * Run the probes as root, otherwise the pfn field reads as 0.
 */
#ifndef PTEMU_PROBE_COMMON_H
#define PTEMU_PROBE_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define PG 4096UL
#define HPAGE (2UL << 20)

#define PM_PRESENT   (1ULL << 63)
#define PM_SWAP      (1ULL << 62)
#define PM_FILE      (1ULL << 61)
#define PM_UFFD_WP   (1ULL << 57)
#define PM_EXCL      (1ULL << 56)
#define PM_SOFTDIRTY (1ULL << 55)
#define PM_PFN_MASK  ((1ULL << 55) - 1)

#define DIE(msg) do { perror(msg); exit(1); } while (0)

static inline uint64_t pagemap_entry(const void *addr)
{
	static int fd = -1;
	static pid_t owner;
	uint64_t e;

	/* an fd inherited across fork() still reads the parent's pagemap */
	if (fd >= 0 && owner != getpid()) {
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		owner = getpid();
		fd = open("/proc/self/pagemap", O_RDONLY);
		if (fd < 0)
			DIE("open /proc/self/pagemap");
	}
	off_t off = (off_t)((uintptr_t)addr / PG) * sizeof(e);
	if (pread(fd, &e, sizeof(e), off) != (ssize_t)sizeof(e))
		DIE("pread pagemap");
	return e;
}

static inline uint64_t pm_pfn(uint64_t e)
{
	return (e & PM_PRESENT) ? (e & PM_PFN_MASK) : 0;
}

/* Print one decoded pagemap entry, prefixed by a label. Returns the entry. */
static inline uint64_t show_pm(const char *label, const void *addr)
{
	uint64_t e = pagemap_entry(addr);

	printf("  %-34s raw=0x%016llx present=%d swap=%d file=%d uffdwp=%d excl=%d sd=%d",
	       label, (unsigned long long)e,
	       !!(e & PM_PRESENT), !!(e & PM_SWAP), !!(e & PM_FILE),
	       !!(e & PM_UFFD_WP), !!(e & PM_EXCL), !!(e & PM_SOFTDIRTY));
	if (e & PM_PRESENT)
		printf(" pfn=0x%llx", (unsigned long long)(e & PM_PFN_MASK));
	else if (e & PM_SWAP)
		printf(" swaptype=%llu swapoff=0x%llx",
		       (unsigned long long)(e & 0x1f),
		       (unsigned long long)((e & PM_PFN_MASK) >> 5));
	printf("\n");
	return e;
}

/* Fault counters of this process, to see whether an access faulted. */
struct faults { long min, maj; };

static inline struct faults faults_now(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return (struct faults){ r.ru_minflt, r.ru_majflt };
}

static inline void show_faults(const char *label, struct faults a, struct faults b)
{
	printf("  faults during %s: minor=%ld major=%ld\n", label,
	       b.min - a.min, b.maj - a.maj);
}

/* mincore() status of one page: 1 = resident (incl. in swap cache), 0 = not. */
static inline int mincore_byte(const void *addr)
{
	unsigned char v = 0;
	void *p = (void *)((uintptr_t)addr & ~(PG - 1));

	if (mincore(p, PG, &v))
		DIE("mincore");
	return v & 1;
}

/*
 * Print selected smaps fields of every VMA overlapping [start, start+len).
 * fields: NULL-terminated list of field names ("Rss", "AnonHugePages", ...).
 */
static inline void show_smaps(const char *label, const void *start, size_t len,
		       const char *const *fields)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int in = 0;
	uintptr_t s = (uintptr_t)start, e = s + len;

	if (!f)
		DIE("fopen smaps");
	printf("  smaps %s:\n", label);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char c;

		if (sscanf(line, "%lx-%lx %c", &lo, &hi, &c) == 3 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = lo < e && hi > s;
			if (in) {
				char *nl = strchr(line, '\n');
				if (nl)
					*nl = 0;
				printf("    [vma] %s\n", line);
			}
			continue;
		}
		if (!in)
			continue;
		for (const char *const *fl = fields; *fl; fl++) {
			size_t n = strlen(*fl);
			if (!strncmp(line, *fl, n) && line[n] == ':') {
				printf("      %s", line);
				break;
			}
		}
	}
	fclose(f);
}

static const char *const SMAPS_BASIC[] __attribute__((unused)) = {
	"Rss", "Anonymous", "AnonHugePages", "ShmemPmdMapped", "Swap", NULL
};

static inline void print_file(const char *label, const char *path)
{
	char buf[512];
	FILE *f = fopen(path, "r");

	if (!f) {
		printf("%s: <cannot open %s: %s>\n", label, path, strerror(errno));
		return;
	}
	while (fgets(buf, sizeof(buf), f))
		printf("%s: %s", label, buf);
	fclose(f);
}

static inline void print_cmd(const char *label, const char *cmd)
{
	char buf[512];
	FILE *p = popen(cmd, "r");

	if (!p)
		return;
	while (fgets(buf, sizeof(buf), p))
		printf("%s: %s", label, buf);
	pclose(p);
}

static inline void banner(const char *what)
{
	struct utsname u;

	uname(&u);
	printf("=== %s ===\n", what);
	printf("uname -r: %s (%s)\n", u.release, u.machine);
	print_file("thp enabled", "/sys/kernel/mm/transparent_hugepage/enabled");
	print_cmd("kconfig", "zcat /proc/config.gz 2>/dev/null | "
		  "grep -E '^(# )?CONFIG_(MEM_SOFT_DIRTY|SWAP|ZSWAP|TRANSPARENT_HUGEPAGE)[ =]'");
	if (geteuid() != 0)
		printf("WARNING: not root, pfns will read as 0\n");
}

/* ---- temporary swap file ------------------------------------------------ */

#define PROBE_SWAPFILE "/var/tmp/ptemu-probe.swap"
static int probe_swap_created;

static inline int swap_active(void)
{
	char line[512];
	int n = 0;
	FILE *f = fopen("/proc/swaps", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n++;
	fclose(f);
	return n > 1; /* first line is the header */
}

static inline void swap_setup(void)
{
	if (swap_active()) {
		printf("swap: already enabled, using existing swap\n");
	} else {
		printf("swap: none enabled; creating 256 MiB swap file %s\n",
		       PROBE_SWAPFILE);
		if (system("dd if=/dev/zero of=" PROBE_SWAPFILE " bs=1M count=256 status=none"
			   " && chmod 600 " PROBE_SWAPFILE
			   " && mkswap " PROBE_SWAPFILE " >/dev/null"
			   " && swapon " PROBE_SWAPFILE) != 0) {
			fprintf(stderr, "swap set-up failed\n");
			exit(1);
		}
		probe_swap_created = 1;
	}
	print_file("/proc/swaps", "/proc/swaps");
	print_file("zswap enabled", "/sys/module/zswap/parameters/enabled");
}

static inline void swap_teardown(void)
{
	if (!probe_swap_created)
		return;
	if (system("swapoff " PROBE_SWAPFILE " && rm -f " PROBE_SWAPFILE) != 0)
		fprintf(stderr, "swap tear-down failed, remove %s by hand\n",
			PROBE_SWAPFILE);
	else
		printf("swap: swapoff + removed %s\n", PROBE_SWAPFILE);
	probe_swap_created = 0;
}

/* mmap len bytes aligned to align (power of two), private anonymous. */
static inline char *mmap_aligned(size_t len, size_t align, int prot)
{
	char *raw = mmap(NULL, len + align, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (raw == MAP_FAILED)
		DIE("mmap");
	uintptr_t a = ((uintptr_t)raw + align - 1) & ~(align - 1);
	if (a > (uintptr_t)raw)
		munmap(raw, a - (uintptr_t)raw);
	uintptr_t end = (uintptr_t)raw + len + align;
	if (end > a + len)
		munmap((void *)(a + len), end - (a + len));
	return (char *)a;
}

/*
 * Private anonymous mapping of npages with a PROT_NONE guard page on each
 * side, so the VMA never merges with neighbours and smaps shows it alone.
 */
static inline char *mmap_guarded(size_t npages)
{
	char *raw = mmap(NULL, (npages + 2) * PG, PROT_NONE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (raw == MAP_FAILED)
		DIE("mmap");
	if (mprotect(raw + PG, npages * PG, PROT_READ | PROT_WRITE))
		DIE("mprotect");
	return raw + PG;
}

/* Fault in n fresh pages elsewhere, to soak up just-freed frames. */
static inline void churn_frames(size_t n)
{
	char *c = mmap(NULL, n * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (c == MAP_FAILED)
		DIE("mmap churn");
	/* deliberately leaked: the frames must stay allocated */
}

#endif /* PTEMU_PROBE_COMMON_H */
