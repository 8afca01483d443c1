/*
 * Native C peer for the ptemu benchmarks.
 *
 * Implements the same memory-management model as the WASM core so that the
 * benchmark compares implementations, not algorithms:
 *
 *   - x86-64 4-level page tables (PML4 -> PDPT -> PD -> PT), 512 x 8-byte
 *     entries per table, 4 KiB pages.
 *   - A physical frame pool with a 16-byte descriptor per frame and a LIFO
 *     free stack. Page-table pages are frames from the same pool; their
 *     contents live in a separate array of 4 KiB blocks, found through the
 *     descriptor's index field. A walk step is therefore
 *     entry -> pfn -> descriptor.index -> table memory, exactly as in the
 *     WASM core (which cannot hand out raw pointers to "physical" memory).
 *   - Operations: per-page fault-in, mprotect (RO/RW), a read-only walk and
 *     MADV_DONTNEED, each over a range of pages.
 *
 * Usage: native <pages> <repeats>
 * Prints one JSON object with the median nanoseconds per page of each op.
 *
 * Deliberately plain C (no intrinsics, no threads) so that it represents
 * what a straightforward -O2 build achieves.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- x86-64 page table entry bits ------------------------------------- */

#define PTE_PRESENT  (1ULL << 0)
#define PTE_RW       (1ULL << 1)
#define PTE_USER     (1ULL << 2)
#define PTE_ACCESSED (1ULL << 5)
#define PTE_DIRTY    (1ULL << 6)
#define PTE_NX       (1ULL << 63)
#define PTE_PFN_MASK 0x000FFFFFFFFFF000ULL

/* Non-leaf entries: what the kernel's _PAGE_TABLE gives a fresh table. */
#define TABLE_ENTRY_FLAGS (PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED)

/* Leaf PTE of a private anonymous page after a write fault. */
#define ANON_WRITE_PTE_FLAGS \
    (PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED | PTE_DIRTY | PTE_NX)

/*
 * Bits that pte_modify() keeps across an mprotect: the pfn plus PWT, PCD,
 * A, D (bits 3-6) and the software bits 9-11. Everything else comes from
 * the new protection.
 */
#define PTE_CHG_MASK (PTE_PFN_MASK | 0xE78ULL)

#define PAGE_READONLY (PTE_PRESENT | PTE_USER | PTE_ACCESSED | PTE_NX)
#define PAGE_RW       (PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED | PTE_NX)

#define PAGE_SHIFT    12
#define PAGE_SIZE     (1ULL << PAGE_SHIFT)
#define TABLE_ENTRIES 512
#define LEVEL_BITS    9
#define PT_LEVELS     4

/* 2 MiB aligned, so the range starts at the beginning of a page table. */
#define RANGE_START 0x7f0000000000ULL
/* Top of the canonical lower half: the range must stay below it. */
#define USER_VA_END 0x800000000000ULL

/* ---- frame descriptors ------------------------------------------------- */

typedef struct {
    uint32_t refcount;
    uint32_t tag;
    uint32_t index; /* page-table frames: slot in table_mem */
    uint32_t info;  /* mapcount in bits 0-17, flags above */
} frame_desc;

#define INFO_MAPCOUNT_MASK ((1u << 18) - 1)
#define INFO_ANON          (1u << 23)
#define INFO_EXCLUSIVE     (1u << 24)

#define TAG_ANON      0u
#define TAG_PAGETABLE 1u /* only to tell table frames apart in dumps */

typedef uint64_t table_t[TABLE_ENTRIES];

static frame_desc *frames;
static uint32_t frame_count;

static uint32_t *free_stack; /* LIFO of free pfns, like a per-CPU list */
static uint32_t free_top;

static table_t *table_mem; /* contents of page-table frames, by slot */
static uint32_t table_slots;
static uint32_t table_slots_used;

static uint32_t root_pfn;

static void die(const char *msg)
{
    fprintf(stderr, "native: %s\n", msg);
    exit(1);
}

static uint32_t alloc_frame(void)
{
    if (free_top == 0)
        die("out of physical frames");
    return free_stack[--free_top];
}

static void free_frame(uint32_t pfn)
{
    /* Reset the descriptor the way the page allocator would on free. */
    frames[pfn].tag = 0;
    frames[pfn].index = 0;
    frames[pfn].info = 0;
    free_stack[free_top++] = pfn;
}

/* Allocate a zeroed page-table page and return its pfn. */
static uint32_t alloc_table(void)
{
    uint32_t pfn = alloc_frame();
    /*
     * Tables are never freed in this model (MADV_DONTNEED keeps them), so a
     * bump allocator for their storage slots is enough.
     */
    if (table_slots_used == table_slots)
        die("out of page-table slots");
    uint32_t slot = table_slots_used++;
    memset(table_mem[slot], 0, sizeof(table_t));
    frames[pfn].refcount = 1;
    frames[pfn].tag = TAG_PAGETABLE;
    frames[pfn].index = slot;
    frames[pfn].info = 0;
    return pfn;
}

/* The one indirection every walk step pays: entry -> pfn -> slot -> table. */
static inline uint64_t *table_of_pfn(uint32_t pfn)
{
    return table_mem[frames[pfn].index];
}

static inline uint64_t *table_of_entry(uint64_t entry)
{
    return table_of_pfn((uint32_t)((entry & PTE_PFN_MASK) >> PAGE_SHIFT));
}

static inline unsigned level_index(uint64_t va, int level)
{
    return (unsigned)(va >> (PAGE_SHIFT + LEVEL_BITS * level)) & (TABLE_ENTRIES - 1);
}

static void mm_init(uint32_t nframes, uint32_t nslots)
{
    frame_count = nframes;
    frames = calloc(nframes, sizeof(*frames));
    free_stack = malloc((size_t)nframes * sizeof(*free_stack));
    table_mem = calloc(nslots, sizeof(table_t));
    if (!frames || !free_stack || !table_mem)
        die("cannot allocate emulated physical memory");
    table_slots = nslots;
    table_slots_used = 0;
    /* Push in descending order so allocation starts from pfn 0. */
    free_top = 0;
    for (uint32_t pfn = nframes; pfn-- > 0;)
        free_stack[free_top++] = pfn;
    root_pfn = alloc_table();
}

/* ---- fault-in ------------------------------------------------------------ */

/*
 * Walk from the root to the PTE slot for va, allocating missing tables on
 * the way, as handle_mm_fault() does.
 */
static uint64_t *walk_alloc(uint64_t va)
{
    uint64_t *table = table_of_pfn(root_pfn);
    for (int level = PT_LEVELS - 1; level > 0; level--) {
        uint64_t *slot = &table[level_index(va, level)];
        if (!(*slot & PTE_PRESENT)) {
            uint32_t pfn = alloc_table();
            *slot = TABLE_ENTRY_FLAGS | ((uint64_t)pfn << PAGE_SHIFT);
        }
        table = table_of_entry(*slot);
    }
    return &table[level_index(va, 0)];
}

/* Anonymous write fault on each page, one full walk per page. */
static uint64_t fault_in(uint64_t start, uint64_t pages)
{
    uint64_t mapped = 0;
    for (uint64_t i = 0; i < pages; i++) {
        uint64_t *pte = walk_alloc(start + i * PAGE_SIZE);
        if (*pte & PTE_PRESENT)
            continue; /* spurious fault: already mapped */
        uint32_t pfn = alloc_frame();
        frames[pfn].refcount = 1;
        frames[pfn].tag = TAG_ANON;
        frames[pfn].index = 0;
        frames[pfn].info = 1u | INFO_ANON | INFO_EXCLUSIVE;
        *pte = ANON_WRITE_PTE_FLAGS | ((uint64_t)pfn << PAGE_SHIFT);
        mapped++;
    }
    return mapped;
}

/* ---- range walker -------------------------------------------------------- */

/*
 * Called once per page table with the run of PTEs that falls in the range.
 * One indirect call per 512 PTEs is negligible, and keeps each op's inner
 * loop a tight loop over an array, like the kernel's *_pte_range().
 */
typedef void (*pte_range_fn)(uint64_t *pte, unsigned n, void *ctx);

/*
 * Visit [addr, end) under `table` at `level`, each table once, skipping
 * holes (non-present entries have nothing below them for any of our ops).
 */
static void walk_range(uint64_t *table, int level, uint64_t addr, uint64_t end,
                       pte_range_fn fn, void *ctx)
{
    if (level == 0) {
        unsigned first = level_index(addr, 0);
        fn(&table[first], (unsigned)((end - addr) >> PAGE_SHIFT), ctx);
        return;
    }
    unsigned shift = PAGE_SHIFT + LEVEL_BITS * (unsigned)level;
    uint64_t span = 1ULL << shift;
    while (addr < end) {
        /* Like pXd_addr_end(): the end of this entry's span, capped. */
        uint64_t next = (addr & ~(span - 1)) + span;
        if (next > end)
            next = end;
        uint64_t entry = table[level_index(addr, level)];
        if (entry & PTE_PRESENT)
            walk_range(table_of_entry(entry), level - 1, addr, next, fn, ctx);
        addr = next;
    }
}

static void walk_pages(uint64_t start, uint64_t pages, pte_range_fn fn, void *ctx)
{
    walk_range(table_of_pfn(root_pfn), PT_LEVELS - 1, start,
               start + pages * PAGE_SIZE, fn, ctx);
}

/* ---- mprotect ------------------------------------------------------------ */

struct mprotect_ctx {
    uint64_t newprot;
    uint64_t changed;
};

static void mprotect_pte_range(uint64_t *pte, unsigned n, void *arg)
{
    struct mprotect_ctx *ctx = arg;
    uint64_t newprot = ctx->newprot;
    uint64_t changed = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t old = pte[i];
        if (!(old & PTE_PRESENT))
            continue;
        uint64_t val = (old & PTE_CHG_MASK) | newprot; /* pte_modify() */
        if (val != old) {
            pte[i] = val;
            changed++;
        }
    }
    ctx->changed += changed;
}

static uint64_t mprotect_range(uint64_t start, uint64_t pages, uint64_t newprot)
{
    struct mprotect_ctx ctx = { newprot, 0 };
    walk_pages(start, pages, mprotect_pte_range, &ctx);
    return ctx.changed;
}

/* ---- read-only walk ------------------------------------------------------ */

struct walk_ctx {
    uint64_t present;
    uint64_t pfn_sum;
};

static void walk_pte_range(uint64_t *pte, unsigned n, void *arg)
{
    struct walk_ctx *ctx = arg;
    uint64_t present = 0, sum = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t val = pte[i];
        if (val & PTE_PRESENT) {
            present++;
            sum += (val & PTE_PFN_MASK) >> PAGE_SHIFT;
        }
    }
    ctx->present += present;
    ctx->pfn_sum += sum;
}

/* ---- MADV_DONTNEED ------------------------------------------------------- */

static void zap_pte_range(uint64_t *pte, unsigned n, void *arg)
{
    uint64_t *freed = arg;
    for (unsigned i = 0; i < n; i++) {
        uint64_t val = pte[i];
        if (!(val & PTE_PRESENT))
            continue;
        pte[i] = 0;
        uint32_t pfn = (uint32_t)((val & PTE_PFN_MASK) >> PAGE_SHIFT);
        frame_desc *f = &frames[pfn];
        /* Drop the rmap (mapcount) and then the reference it held. */
        uint32_t mapcount = (f->info & INFO_MAPCOUNT_MASK) - 1;
        f->info = (f->info & ~INFO_MAPCOUNT_MASK) | (mapcount & INFO_MAPCOUNT_MASK);
        if (--f->refcount == 0) {
            free_frame(pfn);
            (*freed)++;
        }
    }
}

/* Returns the number of frames returned to the allocator. */
static uint64_t dontneed_range(uint64_t start, uint64_t pages)
{
    uint64_t freed = 0;
    walk_pages(start, pages, zap_pte_range, &freed);
    return freed;
}

/* ---- timing and driver --------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/*
 * Every round checks its counts outside the timed region: a peer that
 * silently did less work would make the comparison meaningless.
 */
static void expect(uint64_t got, uint64_t want, const char *what)
{
    if (got != want) {
        fprintf(stderr, "native: %s: got %llu, expected %llu\n", what,
                (unsigned long long)got, (unsigned long long)want);
        exit(2);
    }
}

static int parse_positive(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *s == '-' || *end != '\0' || v == 0 || v > max)
        return 0;
    *out = v;
    return 1;
}

/* Keeps the walk's results observable so it cannot be optimised away. */
static volatile uint64_t sink;

int main(int argc, char **argv)
{
    unsigned long long pages_arg, repeats_arg;
    const unsigned long long max_pages = (USER_VA_END - RANGE_START) >> PAGE_SHIFT;
    if (argc != 3 || !parse_positive(argv[1], max_pages, &pages_arg) ||
        !parse_positive(argv[2], 100000, &repeats_arg)) {
        fprintf(stderr, "usage: native <pages 1..%llu> <repeats 1..100000>\n", max_pages);
        return 64;
    }
    uint64_t pages = pages_arg;
    unsigned repeats = (unsigned)repeats_arg;

    /*
     * One PT per 512 pages and one PD per 512 PTs, plus slack for the root,
     * the PDPT and ranges that straddle a boundary.
     */
    uint64_t table_headroom = pages / TABLE_ENTRIES + pages / (TABLE_ENTRIES * TABLE_ENTRIES) + 8;
    /* 25% more frames than the range needs, as a partly used machine has. */
    uint64_t nframes = pages + pages / 4 + table_headroom;
    if (nframes > UINT32_MAX)
        die("too many frames for 32-bit pfns");
    mm_init((uint32_t)nframes, (uint32_t)table_headroom);

    double *t_fault = malloc(repeats * sizeof(double));
    double *t_ro = malloc(repeats * sizeof(double));
    double *t_rw = malloc(repeats * sizeof(double));
    double *t_walk = malloc(repeats * sizeof(double));
    double *t_zap = malloc(repeats * sizeof(double));
    if (!t_fault || !t_ro || !t_rw || !t_walk || !t_zap)
        die("cannot allocate timing buffers");

    const uint64_t start = RANGE_START;
    const double per_page = 1.0 / (double)pages;

    /*
     * fault-in and dontneed bracket each round, so every round starts from
     * an empty range. Only the first round allocates page tables (they are
     * kept by dontneed); the median discounts that round.
     */
    for (unsigned r = 0; r < repeats; r++) {
        uint64_t t0, n;
        struct walk_ctx w = { 0, 0 };

        t0 = now_ns();
        n = fault_in(start, pages);
        t_fault[r] = (double)(now_ns() - t0) * per_page;
        expect(n, pages, "faultIn mapped");

        t0 = now_ns();
        n = mprotect_range(start, pages, PAGE_READONLY);
        t_ro[r] = (double)(now_ns() - t0) * per_page;
        expect(n, pages, "mprotect RO changed");

        t0 = now_ns();
        n = mprotect_range(start, pages, PAGE_RW);
        t_rw[r] = (double)(now_ns() - t0) * per_page;
        expect(n, pages, "mprotect RW changed");

        t0 = now_ns();
        walk_pages(start, pages, walk_pte_range, &w);
        t_walk[r] = (double)(now_ns() - t0) * per_page;
        expect(w.present, pages, "walk present");
        sink += w.pfn_sum;

        t0 = now_ns();
        n = dontneed_range(start, pages);
        t_zap[r] = (double)(now_ns() - t0) * per_page;
        expect(n, pages, "dontneed freed");
    }
    /* Everything but the page tables must be back on the free list. */
    expect(free_top, frame_count - table_slots_used, "free frames after run");

    double mprotect = (median(t_ro, repeats) + median(t_rw, repeats)) / 2.0;
    printf("{\"pages\":%llu,\"faultIn\":%.3f,\"mprotect\":%.3f,\"dontneed\":%.3f,\"walk\":%.3f}\n",
           (unsigned long long)pages, median(t_fault, repeats), mprotect,
           median(t_zap, repeats), median(t_walk, repeats));

    free(t_fault);
    free(t_ro);
    free(t_rw);
    free(t_walk);
    free(t_zap);
    free(table_mem);
    free(free_stack);
    free(frames);
    return 0;
}
