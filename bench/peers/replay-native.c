/*
 * Native C peer for the trace-replay benchmark (bench/replay.ts): a C port of
 * the path the WASM core executes for every access of m.replay(), so that
 * "WASM ÷ C" compares the SAME algorithm compiled two ways.
 *
 * Ported function by function, with the same data layout and branches:
 *
 *   access.ts   replayTrace -> translateModel (probeLevel, fillLevel,
 *               checkEntry, walkAndFill, dirtyRewalk) or translateFunctional;
 *               the data op (a write stores tag 0 into the frame descriptor).
 *   tlb.ts      TlbArray: dense u64 tags + 16-byte payloads, setOf with mask
 *               or modulo, tlbArrayLookup, touchWay (LRU stamp or tree-PLRU),
 *               victimWay, tlbArrayFill, invalidateEntry; the 4-way set
 *               associative walk caches (walkCacheLookup, walkCacheFill).
 *   cpu.ts      Cpu: arrays, walk caches, the 4096-slot direct-mapped
 *               functional cache, the u64 counters in the same slots.
 *   fault.ts    leafLookup, through pgtable.ts pmdTableLookup and its
 *               one-entry PMD-table cache.
 *   x86_64.ts   hwAccess, tlbPerms, leafPfn, isTableEntry, isUpperLeaf.
 *   frames.ts   16-byte descriptors (refcount, tag, index, info); a table
 *               frame's index names its 4 KiB block in the table arena, so
 *               entry -> pfn -> descriptor.index -> table is one load as in
 *               the core.
 *
 * Not ported: the fault path. The benchmark maps and faults in the whole
 * range before timing, so a replay never faults; building the tables here is
 * done directly (entries in the core's exact format, data frames taken from
 * the core's pagemap when given). A translation that fails anyway stops the
 * run with exit code 2, so a run that left the core's path cannot go unseen.
 *
 * The trace is generated here with the xorshift32 generator of
 * src/trace.ts Trace.random, so the same seed gives the same records.
 *
 * Usage: replay-native key=value...
 *   mode=model|functional   start=ADDR (the mapping's start, decimal or 0x)
 *   map=PAGES (mapped and faulted in)   pages=PAGES (trace span from start)
 *   count=N  seed=S  writes=RATIO  warmup=N  reps=N  asid=ID  frames=N
 *   arrays=level:kind:sizes:sets:ways:policy,...  (resolved TLB arrays; empty: none)
 *   walk=pmd,pud,p4d,pgd   (walk-cache entries per level)
 *   pfns=FILE   optional: u32 pfn of each mapped page (the core's allocation)
 *   serve=1     take commands on stdin instead of running warmup/reps (see serve())
 * Prints one JSON object: per-call ns/access of the timed calls, counters
 * summed over every call (warm-up, timed and a final verification call), and
 * an FNV-1a hash of the frame and kind of every access of the verification
 * call.
 *
 * Deliberately plain C (no intrinsics, no threads): what a straightforward
 * -O2 build achieves.
 */
#define _DEFAULT_SOURCE /* clock_gettime */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Noreturn void die(const char *msg)
{
    fprintf(stderr, "replay-native: %s\n", msg);
    exit(1);
}

/* A branch into code this port leaves out: the run no longer follows the WASM core. */
static _Noreturn void unreachable(const char *what)
{
    fprintf(stderr, "replay-native: %s: not on the benchmark path, not ported\n", what);
    exit(2);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) die("out of memory");
    return p;
}

/* ==== x86_64.ts ========================================================= */

#define _PAGE_PRESENT 0x1ull
#define _PAGE_RW 0x2ull
#define _PAGE_USER 0x4ull
#define _PAGE_ACCESSED 0x20ull
#define _PAGE_DIRTY 0x40ull
#define _PAGE_PSE 0x80ull
#define _PAGE_GLOBAL 0x100ull
#define _PAGE_PROTNONE _PAGE_GLOBAL
#define _PAGE_SOFT_DIRTY 0x800ull
#define _PAGE_NX (1ull << 63)
#define PTE_PFN_MASK 0x000FFFFFFFFFF000ull
#define _PAGE_TABLE (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY)
/* protection_map[VM_READ|VM_WRITE] for a private mapping: PAGE_COPY. */
#define PAGE_COPY (_PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX)

#define ACCESS_READ 0u
#define ACCESS_WRITE 1u
#define ACCESS_EXEC 2u

static inline uint64_t mk_table_entry(uint64_t pfn) { return (pfn << 12) | _PAGE_TABLE; }
static inline uint64_t table_entry_pfn(uint64_t e) { return (e & PTE_PFN_MASK) >> 12; }
static inline bool is_table_entry(uint64_t e) { return (e & (_PAGE_PRESENT | _PAGE_PSE)) == _PAGE_PRESENT; }
static inline bool pmd_present(uint64_t e) { return (e & (_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE)) != 0; }
static inline bool is_upper_leaf(uint64_t e) { return (e & _PAGE_PSE) != 0 && pmd_present(e); }

static inline uint64_t leaf_addr_mask(uint32_t level)
{
    return level == 0 ? PTE_PFN_MASK : PTE_PFN_MASK & ~((1ull << (12 + 9 * (uint64_t)level)) - 1);
}

/* pte_pfn / pmd_pfn / pud_pfn of a present leaf: (e & P) - 1 is all ones exactly for PROT_NONE. */
static inline uint64_t leaf_pfn(uint64_t e, uint32_t level)
{
    return ((e ^ ((e & _PAGE_PRESENT) - 1)) & leaf_addr_mask(level)) >> 12;
}

/* The MMU on a user access: the value written back (A set, D on a write), or 0 for a fault. */
static uint64_t hw_access(uint64_t e, uint32_t kind)
{
    if ((e & (_PAGE_PRESENT | _PAGE_USER)) != (_PAGE_PRESENT | _PAGE_USER)) return 0;
    if (kind == ACCESS_WRITE) {
        if ((e & _PAGE_RW) == 0) return 0;
        return e | _PAGE_ACCESSED | _PAGE_DIRTY;
    }
    if (kind == ACCESS_EXEC && (e & _PAGE_NX) != 0) return 0;
    return e | _PAGE_ACCESSED;
}

/* What a TLB entry filled from leaf e allows (TLB_* below). */
static uint32_t tlb_perms(uint64_t e)
{
    uint32_t p = 0;
    if ((e & (_PAGE_PRESENT | _PAGE_USER)) == (_PAGE_PRESENT | _PAGE_USER)) p |= 1;
    if ((e & _PAGE_RW) != 0) p |= (e & _PAGE_DIRTY) != 0 ? 2 : 4;
    if ((e & _PAGE_NX) == 0) p |= 8;
    if ((e & _PAGE_GLOBAL) != 0) p |= 16;
    return p;
}

/* ==== frames.ts ========================================================= */

struct desc {
    uint32_t refcount;
    uint32_t tag;
    uint32_t index; /* table frames: the table's block number in the arena */
    uint32_t info;
};

#define KIND_SHIFT 23
#define KIND_TABLE 2u
#define PG_ANON (1u << 25)
#define PG_EXCLUSIVE (1u << 26)

static struct desc *frames;
static uint32_t nr_frames;

static inline void set_tag(uint32_t pfn, uint32_t v) { frames[pfn].tag = v; }

/* ==== pgtable.ts ======================================================== */

/*
 * Table memory: 4 KiB blocks in one arena standing in for the core's heap.
 * Block numbers start at 1 so that a zero index never names a table.
 */
static uint8_t *table_arena;
static uint32_t arena_blocks, arena_used;

static inline uint64_t *table_ptr(uint32_t pfn) { return (uint64_t *)(table_arena + ((size_t)frames[pfn].index << 12)); }
static inline uint32_t table_index(uint64_t addr, uint32_t level) { return (uint32_t)(addr >> (12 + 9 * (uint64_t)level)) & 511; }
static inline uint64_t *entry_ptr(uint32_t table_pfn, uint64_t addr, uint32_t level)
{
    return table_ptr(table_pfn) + table_index(addr, level);
}

struct mm {
    uint32_t id;
    uint32_t levels;
    uint32_t root;     /* pfn of the top table */
    uint64_t cpumask;
    uint32_t last_cpu;
    uint32_t tlb_sizes; /* page sizes this mm has ever had in a TLB (sticky) */
};

/* The one-entry cache of the PMD table covering the last 1 GiB region looked up. */
static uint32_t pmd_cache_mm;
static uint64_t pmd_cache_region;
static uint32_t pmd_cache_table;

static uint32_t pmd_table_walk(struct mm *mm, uint64_t addr)
{
    const uint64_t region = addr >> 30;
    uint32_t table = mm->root;
    for (uint32_t level = mm->levels - 1; level > 1; level--) {
        const uint64_t e = *entry_ptr(table, addr, level);
        if (e == 0) return 0; /* lookups never allocate */
        if (!is_table_entry(e)) return 0;
        table = (uint32_t)table_entry_pfn(e);
    }
    pmd_cache_mm = mm->id;
    pmd_cache_region = region;
    pmd_cache_table = table;
    return table;
}

static inline uint32_t pmd_table_lookup(struct mm *mm, uint64_t addr)
{
    if (pmd_cache_mm == mm->id && pmd_cache_region == addr >> 30) return pmd_cache_table;
    return pmd_table_walk(mm, addr);
}

/* ==== fault.ts: leafLookup ============================================== */

static uint32_t lookup_level;

static uint64_t *leaf_lookup(struct mm *mm, uint64_t addr)
{
    const uint32_t pmd_table = pmd_table_lookup(mm, addr);
    if (pmd_table != 0) {
        uint64_t *pmdp = entry_ptr(pmd_table, addr, 1);
        const uint64_t pmd = *pmdp;
        if (!is_table_entry(pmd)) { lookup_level = 1; return pmdp; }
        lookup_level = 0;
        return table_ptr((uint32_t)table_entry_pfn(pmd)) + ((addr >> 12) & 511);
    }
    uint32_t table = mm->root;
    for (uint32_t level = mm->levels - 1;; level--) {
        uint64_t *ep = entry_ptr(table, addr, level);
        if (level == 0) { lookup_level = 0; return ep; }
        const uint64_t e = *ep;
        if (e == 0) { lookup_level = level; return ep; }
        if (!is_table_entry(e)) { lookup_level = level; return ep; }
        table = (uint32_t)table_entry_pfn(e);
    }
}

/* ==== tlb.ts ============================================================ */

#define TLB_READ 1u
#define TLB_WRITE 2u
#define TLB_WRITE_UPDATE 4u
#define TLB_EXEC 8u
#define TLB_GLOBAL 16u

#define KIND_DATA 0u
#define KIND_INSTR 1u
#define KIND_UNIFIED 2u
#define POLICY_LRU 0u
#define POLICY_PLRU 1u

#define SIZE_4K 0u
#define SIZE_64K 1u
#define SIZE_2M 2u
#define SIZE_1G 3u

#define MAX_ARRAYS 8u
#define MAX_WALK_LEVELS 5u
#define GLOBAL_TAG (1ull << 16)
#define ASID_MASK 0xFFFFull

static inline uint64_t size_shift(uint32_t size) { return size == 0 ? 0 : size == 1 ? 4 : size == 2 ? 9 : 18; }

/* A way's payload; an entry handle is a pointer to it (NULL: none). */
struct payload {
    uint32_t pfn;
    uint32_t perms;
    uint32_t stamp;
    uint32_t slot_size; /* way index across the array << 2 | size: back-pointer to the tag */
};

struct tlb_array {
    uint32_t level, kind, sizes, sets, ways, policy;
    uint64_t *tags;           /* dense: probing a 12-way set reads 96 bytes */
    struct payload *payload;  /* read only on a hit */
    uint32_t *plru;           /* tree bits per set */
    uint64_t set_mask;        /* sets - 1 for a power of two, else 0: use a modulo */
};

struct walk_cache {
    uint32_t n, sets, ways;
    uint64_t *keys;   /* prefix << 16 | asid, 0 = empty */
    uint32_t *stamps;
};

static inline uint32_t set_of(const struct tlb_array *a, uint64_t page_no)
{
    return (uint32_t)(a->set_mask != 0 || a->sets == 1 ? page_no & a->set_mask : page_no % (uint64_t)a->sets);
}

static inline uint64_t tag_for(uint64_t page_no, uint32_t size, uint32_t asid)
{
    return (page_no << 19) | ((uint64_t)size << 17) | (uint64_t)asid;
}

static void tlb_array_init(struct tlb_array *a, uint32_t level, uint32_t kind, uint32_t sizes, uint32_t sets,
                           uint32_t ways, uint32_t policy)
{
    a->level = level; a->kind = kind; a->sizes = sizes; a->sets = sets; a->ways = ways; a->policy = policy;
    a->set_mask = (sets & (sets - 1)) == 0 ? (uint64_t)(sets - 1) : 0;
    const size_t n = (size_t)sets * ways;
    a->tags = xcalloc(n, sizeof *a->tags);
    a->payload = xcalloc(n, sizeof *a->payload);
    a->plru = xcalloc(sets, sizeof *a->plru);
}

static void walk_cache_init(struct walk_cache *c, uint32_t n)
{
    c->n = n;
    if (n == 0) return;
    c->ways = n < 4 ? n : 4;
    c->sets = (n + c->ways - 1) / c->ways;
    c->keys = xcalloc((size_t)c->sets * c->ways, sizeof *c->keys);
    c->stamps = xcalloc((size_t)c->sets * c->ways, sizeof *c->stamps);
}

static void touch_way(struct tlb_array *a, uint32_t set, uint32_t way, struct payload *e, uint32_t stamp)
{
    if (a->policy == POLICY_LRU) { e->stamp = stamp; return; }
    /* Tree-PLRU: every node on the path points away from the way just used. */
    uint32_t *p = &a->plru[set];
    uint32_t bits = *p;
    uint32_t node = 1;
    uint32_t span = a->ways;
    while (span > 1) {
        span >>= 1;
        const bool right = (way & span) != 0;
        if (right) bits &= ~(1u << node); else bits |= 1u << node;
        node = node * 2 + (right ? 1 : 0);
    }
    *p = bits;
}

static struct payload *tlb_array_lookup(struct tlb_array *a, uint64_t vpn, uint32_t size, uint32_t asid, uint32_t stamp)
{
    const uint64_t page_no = vpn >> size_shift(size);
    const uint32_t set = set_of(a, page_no);
    const uint64_t key = tag_for(page_no, size, asid);
    const uint64_t gkey = (key & ~ASID_MASK) | GLOBAL_TAG;
    const size_t first = (size_t)set * a->ways;
    const uint64_t *tags = a->tags + first;
    for (uint32_t w = 0; w < a->ways; w++) {
        const uint64_t t = tags[w];
        if (t == key || t == gkey) {
            struct payload *e = &a->payload[first + w];
            touch_way(a, set, w, e, stamp);
            return e;
        }
    }
    return NULL;
}

static uint32_t victim_way(const struct tlb_array *a, uint32_t set)
{
    const size_t first = (size_t)set * a->ways;
    uint32_t oldest = 0;
    uint32_t best = 0xFFFFFFFFu;
    for (uint32_t w = 0; w < a->ways; w++) {
        if (a->tags[first + w] == 0) return w;
        if (a->policy == POLICY_LRU) {
            const uint32_t s = a->payload[first + w].stamp;
            if (s < best) { best = s; oldest = w; }
        }
    }
    if (a->policy == POLICY_LRU) return oldest;
    /* Tree-PLRU: follow the bits (1 = go right) from the root. */
    const uint32_t bits = a->plru[set];
    uint32_t node = 1;
    uint32_t way = 0;
    uint32_t span = a->ways;
    while (span > 1) {
        span >>= 1;
        if ((bits & (1u << node)) != 0) { way |= span; node = node * 2 + 1; } else node = node * 2;
    }
    return way;
}

static struct payload *tlb_array_fill(struct tlb_array *a, uint64_t vpn, uint32_t size, uint32_t asid, uint32_t pfn,
                                      uint32_t perms, uint32_t stamp)
{
    const uint64_t page_no = vpn >> size_shift(size);
    const uint32_t set = set_of(a, page_no);
    const uint32_t w = victim_way(a, set);
    const size_t slot = (size_t)set * a->ways + w;
    const bool global = (perms & TLB_GLOBAL) != 0;
    a->tags[slot] = global ? (tag_for(page_no, size, 0) | GLOBAL_TAG) : tag_for(page_no, size, asid);
    struct payload *e = &a->payload[slot];
    e->pfn = pfn & ~((1u << (uint32_t)size_shift(size)) - 1);
    e->perms = perms;
    e->slot_size = ((uint32_t)slot << 2) | size;
    touch_way(a, set, w, e, stamp);
    return e;
}

static inline void invalidate_entry(struct tlb_array *a, const struct payload *e) { a->tags[e->slot_size >> 2] = 0; }

static inline uint64_t walk_key(uint64_t prefix, uint32_t asid) { return (prefix << 16) | (uint64_t)asid; }

static bool walk_cache_lookup(struct walk_cache *c, uint64_t prefix, uint32_t asid, uint32_t stamp)
{
    if (c->n == 0) return false;
    const uint64_t key = walk_key(prefix, asid);
    const size_t first = (size_t)(uint32_t)(prefix % (uint64_t)c->sets) * c->ways;
    for (size_t i = 0; i < c->ways; i++) {
        if (c->keys[first + i] == key) {
            c->stamps[first + i] = stamp;
            return true;
        }
    }
    return false;
}

static void walk_cache_fill(struct walk_cache *c, uint64_t prefix, uint32_t asid, uint32_t stamp)
{
    if (c->n == 0) return;
    const uint64_t key = walk_key(prefix, asid);
    const size_t first = (size_t)(uint32_t)(prefix % (uint64_t)c->sets) * c->ways;
    size_t victim = 0;
    uint32_t best = 0xFFFFFFFFu;
    for (size_t i = 0; i < c->ways; i++) {
        const uint64_t k = c->keys[first + i];
        if (k == key || k == 0) { victim = i; break; }
        const uint32_t s = c->stamps[first + i];
        if (s < best) { best = s; victim = i; }
    }
    c->keys[first + victim] = key;
    c->stamps[first + victim] = stamp;
}

/* ==== cpu.ts ============================================================ */

#define MODE_MODEL 0u
#define MODE_FUNCTIONAL 1u

enum {
    ST_ACCESSES = 0,
    ST_L1_HIT = 1,            /* 4 slots by size */
    ST_L2_HIT = 5,            /* 4 slots by size */
    ST_WALKS = 9,
    ST_WALK_REFS = 10,
    ST_WALK_CACHE_HITS = 11,
    ST_PAGE_FAULTS = 12,
    ST_DIRTY_REWALKS = 13,
    ST_WALK_SIZE = 16,        /* 4 slots */
    ST_FAULT_KIND = 21,       /* 4 slots */
    NR_STATS = 32,
};

#define FUNC_SLOTS 4096u

/* A functional-cache slot: key u64 | pfn u32 | perms u32, as in the core. */
struct func_slot {
    uint64_t key;
    uint32_t pfn;
    uint32_t perms;
};

struct cpu {
    uint32_t id;
    uint32_t cur_mm;
    uint32_t n_arrays;
    uint32_t stamp;
    struct tlb_array arrays[MAX_ARRAYS];
    struct walk_cache walk_caches[MAX_WALK_LEVELS]; /* index = level holding the cached entry */
    struct func_slot *func;
    uint64_t stats[NR_STATS];
};

static uint32_t translation_mode = MODE_MODEL;

static inline void bump_stat(struct cpu *c, uint32_t slot, uint64_t d) { c->stats[slot] += d; }
static inline uint64_t func_key(uint64_t vpn, uint32_t asid) { return ((vpn << 16) | (uint64_t)asid) + 1; }

/* ==== access.ts ========================================================= */

#define FAULT UINT64_MAX
#define FK_NOT_PRESENT 0u
#define FK_WRITE_PROTECT 1u
#define FK_PERMISSION 2u
#define FK_DIRTY_UPDATE 3u

static inline void switch_mm(struct cpu *c, struct mm *mm)
{
    c->cur_mm = mm->id;
    mm->cpumask |= 1ull << c->id;
    mm->last_cpu = c->id;
}

static inline bool permits(uint32_t perms, uint32_t kind)
{
    if ((perms & TLB_READ) == 0) return false;
    if (kind == ACCESS_WRITE) return (perms & TLB_WRITE) != 0;
    if (kind == ACCESS_EXEC) return (perms & TLB_EXEC) != 0;
    return true;
}

/* A write through a cached clean-writable entry: re-walk and set dirty if the PTE still allows it. */
static uint32_t dirty_rewalk(struct cpu *c, struct mm *mm, uint64_t addr)
{
    bump_stat(c, ST_DIRTY_REWALKS, 1);
    uint64_t *ep = leaf_lookup(mm, addr);
    const uint32_t level = lookup_level;
    const uint64_t e = *ep;
    if (e == 0 || (level != 0 && !is_upper_leaf(e))) return 0;
    const uint64_t n = hw_access(e, ACCESS_WRITE);
    if (n == 0) return 0;
    if (n != e) *ep = n;
    return tlb_perms(n);
}

/* x86 has no contiguous-bit leaves: a PTE is always 4K. */
static inline uint32_t leaf_size(uint32_t level) { return level == 0 ? SIZE_4K : level == 1 ? SIZE_2M : SIZE_1G; }

static int32_t fit_size(const struct tlb_array *a, uint32_t size)
{
    for (int32_t s = (int32_t)size; s >= 0; s--)
        if ((a->sizes & (1u << (uint32_t)s)) != 0) return s;
    return -1;
}

static inline bool kind_matches(const struct tlb_array *a, uint32_t kind)
{
    return a->kind == KIND_UNIFIED || (a->kind == KIND_INSTR) == (kind == ACCESS_EXEC);
}

/* Where the last probe or fill hit, and where the last translation came from (module globals in the core too). */
#define HIT_L1 1u
#define HIT_L2 2u
#define HIT_WALK 3u
static uint32_t access_hit;
static uint32_t probe_size;
static struct tlb_array *probe_array;

static struct payload *probe_level(struct cpu *c, uint32_t level, uint64_t vpn, uint32_t kind, uint32_t asid,
                                   uint32_t stamp, uint32_t seen)
{
    for (uint32_t i = 0; i < c->n_arrays; i++) {
        struct tlb_array *a = &c->arrays[i];
        if (a->level != level || !kind_matches(a, kind)) continue;
        const uint32_t sizes = a->sizes & seen;
        for (uint32_t s = 0; s < 4; s++) {
            if ((sizes & (1u << s)) == 0) continue;
            struct payload *e = tlb_array_lookup(a, vpn, s, asid, stamp);
            if (e != NULL) { probe_size = s; probe_array = a; return e; }
        }
    }
    return NULL;
}

static inline uint64_t align_vpn(uint64_t vpn, uint32_t size) { return (vpn >> size_shift(size)) << size_shift(size); }

static struct payload *fill_level(struct cpu *c, uint32_t level, uint64_t vpn, uint32_t kind, uint32_t asid,
                                  uint32_t size, uint64_t leaf_vbase, uint32_t leaf_pfn_base, uint32_t perms,
                                  uint32_t stamp)
{
    probe_array = NULL;
    /* The first array holding the leaf's size, else the first holding a smaller piece of it. */
    struct tlb_array *pick = NULL;
    for (uint32_t i = 0; i < c->n_arrays; i++) {
        struct tlb_array *a = &c->arrays[i];
        if (a->level != level || !kind_matches(a, kind)) continue;
        if ((a->sizes & (1u << size)) != 0) { pick = a; break; }
        if (pick == NULL && fit_size(a, size) >= 0) pick = a;
    }
    if (pick != NULL) {
        struct tlb_array *a = pick;
        const int32_t s = fit_size(a, size);
        const uint64_t frag_vbase = align_vpn(vpn, (uint32_t)s);
        probe_array = a;
        probe_size = (uint32_t)s;
        return tlb_array_fill(a, vpn, (uint32_t)s, asid, leaf_pfn_base + (uint32_t)(frag_vbase - leaf_vbase), perms,
                              stamp);
    }
    return NULL;
}

static uint64_t check_entry(struct cpu *c, struct mm *mm, uint64_t addr, uint32_t kind, struct payload *e)
{
    const uint32_t perms = e->perms;
    if (!permits(perms, kind)) {
        if (kind == ACCESS_WRITE && (perms & (TLB_READ | TLB_WRITE_UPDATE)) == (TLB_READ | TLB_WRITE_UPDATE)) {
            const uint32_t np = dirty_rewalk(c, mm, addr);
            if (np != 0 && permits(np, kind)) {
                e->perms = np;
                return (uint64_t)e->pfn + ((addr >> 12) - align_vpn(addr >> 12, probe_size));
            }
            bump_stat(c, ST_FAULT_KIND + FK_DIRTY_UPDATE, 1);
        } else {
            bump_stat(c, ST_FAULT_KIND + (kind == ACCESS_WRITE ? FK_WRITE_PROTECT : FK_PERMISSION), 1);
        }
        invalidate_entry(probe_array, e);
        return FAULT;
    }
    return (uint64_t)e->pfn + ((addr >> 12) - align_vpn(addr >> 12, probe_size));
}

static uint64_t walk_and_fill(struct cpu *c, struct mm *mm, uint64_t addr, uint32_t kind, uint32_t stamp)
{
    bump_stat(c, ST_WALKS, 1);
    uint64_t *ep = leaf_lookup(mm, addr);
    const uint32_t level = lookup_level;
    const uint32_t asid = mm->id;
    /* The deepest cached upper entry spares the reads above it. */
    const uint32_t top = mm->levels - 1;
    uint32_t refs = top - level + 1;
    for (uint32_t k = level + 1; k <= top; k++) {
        if (walk_cache_lookup(&c->walk_caches[k], addr >> (12 + 9 * (uint64_t)k), asid, stamp)) {
            refs = k - level;
            bump_stat(c, ST_WALK_CACHE_HITS, 1);
            break;
        }
    }
    bump_stat(c, ST_WALK_REFS, (uint64_t)refs);
    const uint64_t e = *ep;
    if (e == 0 || (level != 0 && !is_upper_leaf(e))) { bump_stat(c, ST_FAULT_KIND + FK_NOT_PRESENT, 1); return FAULT; }
    const uint64_t n = hw_access(e, kind);
    if (n == 0) {
        bump_stat(c, ST_FAULT_KIND + (kind == ACCESS_WRITE ? FK_WRITE_PROTECT : FK_NOT_PRESENT), 1);
        return FAULT;
    }
    if (n != e) *ep = n;
    for (uint32_t k = level + 1; k <= top; k++) walk_cache_fill(&c->walk_caches[k], addr >> (12 + 9 * (uint64_t)k), asid, stamp);
    const uint32_t size = leaf_size(level);
    bump_stat(c, ST_WALK_SIZE + size, 1);
    const uint64_t shift = size_shift(size);
    const uint64_t vpn = addr >> 12;
    const uint64_t vbase = (vpn >> shift) << shift;
    const uint32_t leaf_base = (uint32_t)leaf_pfn(n, level) & ~((1u << (uint32_t)shift) - 1);
    const uint32_t perms = tlb_perms(n);
    fill_level(c, 2, vpn, kind, asid, size, vbase, leaf_base, perms, stamp);
    if (probe_array != NULL) mm->tlb_sizes |= 1u << probe_size;
    fill_level(c, 1, vpn, kind, asid, size, vbase, leaf_base, perms, stamp);
    if (probe_array != NULL) mm->tlb_sizes |= 1u << probe_size;
    if (!permits(perms, kind)) return FAULT;
    return (uint64_t)leaf_base + (vpn - vbase);
}

static uint64_t translate_model(struct cpu *c, struct mm *mm, uint64_t addr, uint32_t kind)
{
    const uint64_t vpn = addr >> 12;
    const uint32_t asid = mm->id;
    const uint32_t stamp = ++c->stamp;
    const uint32_t seen = mm->tlb_sizes;
    struct payload *e = probe_level(c, 1, vpn, kind, asid, stamp, seen);
    if (e != NULL) {
        bump_stat(c, ST_L1_HIT + probe_size, 1);
        access_hit = HIT_L1;
    } else {
        e = probe_level(c, 2, vpn, kind, asid, stamp, seen);
        if (e != NULL) {
            bump_stat(c, ST_L2_HIT + probe_size, 1);
            access_hit = HIT_L2;
            struct tlb_array *l2_array = probe_array;
            const uint32_t l2_size = probe_size;
            struct payload *l1 =
                fill_level(c, 1, vpn, kind, asid, l2_size, align_vpn(vpn, l2_size), e->pfn, e->perms, stamp);
            if (l1 != NULL) { e = l1; mm->tlb_sizes |= 1u << probe_size; } else { probe_array = l2_array; probe_size = l2_size; }
        } else {
            access_hit = HIT_WALK;
            return walk_and_fill(c, mm, addr, kind, stamp);
        }
    }
    return check_entry(c, mm, addr, kind, e);
}

static uint64_t translate_functional(struct cpu *c, struct mm *mm, uint64_t addr, uint32_t kind)
{
    const uint64_t vpn = addr >> 12;
    struct func_slot *slot = &c->func[(uint32_t)vpn & (FUNC_SLOTS - 1)];
    const uint64_t key = func_key(vpn, mm->id);
    if (slot->key == key) {
        const uint32_t perms = slot->perms;
        if (permits(perms, kind)) return (uint64_t)slot->pfn;
        if (kind == ACCESS_WRITE && (perms & (TLB_READ | TLB_WRITE_UPDATE)) == (TLB_READ | TLB_WRITE_UPDATE)) {
            const uint32_t np = dirty_rewalk(c, mm, addr);
            if (np != 0 && permits(np, kind)) { slot->perms = np; return (uint64_t)slot->pfn; }
        }
        slot->key = 0;
        return FAULT;
    }
    uint64_t *ep = leaf_lookup(mm, addr);
    const uint32_t level = lookup_level;
    const uint64_t e = *ep;
    if (e == 0 || (level != 0 && !is_upper_leaf(e))) return FAULT;
    const uint64_t n = hw_access(e, kind);
    if (n == 0) return FAULT;
    if (n != e) *ep = n;
    const uint32_t pfn = (uint32_t)leaf_pfn(n, level) +
                         (level == 0 ? 0 : (uint32_t)(vpn & ((1ull << (9 * (uint64_t)level)) - 1)));
    const uint32_t perms = tlb_perms(n);
    slot->key = key;
    slot->pfn = pfn;
    slot->perms = perms;
    return permits(perms, kind) ? (uint64_t)pfn : FAULT;
}

/* The hot loop of trace replay: records are u64 (address, kind in bits 0-1). */
static uint32_t replay_trace(struct cpu *c, struct mm *mm, const uint64_t *buf, uint32_t count, uint32_t *pfns_out)
{
    if (c->cur_mm != mm->id || mm->last_cpu != c->id) switch_mm(c, mm);
    const bool functional = translation_mode == MODE_FUNCTIONAL;
    if (!functional) bump_stat(c, ST_ACCESSES, (uint64_t)count);
    uint32_t ok = 0;
    const uint64_t *end = buf + count;
    uint32_t *out = pfns_out;
    for (const uint64_t *p = buf; p < end; p++) {
        const uint64_t rec = *p;
        const uint64_t addr = rec & ~(uint64_t)4095;
        const uint32_t kind = (uint32_t)rec & 3;
        const uint64_t pfn = functional ? translate_functional(c, mm, addr, kind) : translate_model(c, mm, addr, kind);
        if (pfn != FAULT) {
            if (kind == ACCESS_WRITE) set_tag((uint32_t)pfn, 0);
            ok++;
        } else {
            unreachable("page fault during replay (faultAndRetry)");
        }
        if (pfns_out != NULL) { *out = (uint32_t)pfn; out++; }
    }
    return ok;
}

/* ==== setup (untimed) =================================================== */

/* Frames for tables come from pfns no data page uses, lowest first. */
static uint8_t *frame_used;
static uint32_t next_free_pfn = 1;

static uint32_t alloc_table(void)
{
    while (next_free_pfn < nr_frames && frame_used[next_free_pfn]) next_free_pfn++;
    if (next_free_pfn >= nr_frames) die("out of frames for tables");
    if (arena_used + 1 >= arena_blocks) die("table arena full");
    const uint32_t pfn = next_free_pfn++;
    frame_used[pfn] = 1;
    arena_used++;
    memset(table_arena + ((size_t)arena_used << 12), 0, 4096);
    frames[pfn] = (struct desc){ .refcount = 1, .index = arena_used, .info = KIND_TABLE << KIND_SHIFT };
    return pfn;
}

/*
 * Maps [start, start + pages * 4096) the way the core's write fault-in
 * leaves it: upper tables as needed, each PTE a present, user, writable,
 * accessed, dirty, soft-dirty, NX leaf of a private anonymous page.
 */
static void map_range(struct mm *mm, uint64_t start, uint32_t pages, const uint32_t *data_pfns)
{
    for (uint32_t i = 0; i < pages; i++) {
        const uint64_t addr = start + ((uint64_t)i << 12);
        uint32_t table = mm->root;
        for (uint32_t level = mm->levels - 1; level > 0; level--) {
            uint64_t *ep = entry_ptr(table, addr, level);
            if (*ep == 0) *ep = mk_table_entry(alloc_table());
            table = (uint32_t)table_entry_pfn(*ep);
        }
        const uint32_t pfn = data_pfns[i];
        frames[pfn] = (struct desc){ .refcount = 1, .tag = 1, .info = 1 | PG_ANON | PG_EXCLUSIVE };
        *entry_ptr(table, addr, 0) = ((uint64_t)pfn << 12) | PAGE_COPY | _PAGE_RW | _PAGE_DIRTY | _PAGE_SOFT_DIRTY;
    }
}

/* ==== command line ====================================================== */

struct options {
    uint32_t mode;
    uint64_t start;
    uint32_t map_pages, trace_pages, count, seed, warmup, reps, asid, frames;
    double writes;
    uint32_t n_arrays;
    uint32_t arrays[MAX_ARRAYS][6];
    uint32_t walk[4];
    const char *pfns;
    bool serve;
};

static uint64_t parse_u64(const char *key, const char *text)
{
    char *end;
    const unsigned long long v = strtoull(text, &end, 0);
    if (*text == '\0' || *end != '\0') {
        fprintf(stderr, "replay-native: %s: not a number: %s\n", key, text);
        exit(1);
    }
    return v;
}

static uint32_t parse_u32(const char *key, const char *text)
{
    const uint64_t v = parse_u64(key, text);
    if (v > UINT32_MAX) die("number out of range");
    return (uint32_t)v;
}

/* "a:b:c,..." into rows of `width` numbers; returns the rows read. */
static uint32_t parse_rows(const char *text, uint32_t *out, uint32_t width, uint32_t max_rows, char sep)
{
    uint32_t n = 0;
    const char *p = text;
    while (*p != '\0') {
        if (n >= max_rows * width) die("too many values in a list argument");
        char *end;
        out[n++] = (uint32_t)strtoul(p, &end, 10);
        if (end == p) die("bad list argument");
        p = end;
        if (*p == sep || *p == ',') p++;
    }
    if (n % width != 0) die("list argument has a wrong number of values");
    return n / width;
}

static struct options parse_options(int argc, char **argv)
{
    struct options o = { .mode = MODE_MODEL, .count = 1u << 20, .seed = 1, .warmup = 2, .reps = 5, .asid = 1 };
    bool have_start = false;
    for (int i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq == NULL) die("arguments are key=value");
        *eq = '\0';
        const char *k = argv[i], *v = eq + 1;
        if (strcmp(k, "mode") == 0) {
            if (strcmp(v, "model") == 0) o.mode = MODE_MODEL;
            else if (strcmp(v, "functional") == 0) o.mode = MODE_FUNCTIONAL;
            else die("mode must be model or functional");
        } else if (strcmp(k, "start") == 0) { o.start = parse_u64(k, v); have_start = true; }
        else if (strcmp(k, "map") == 0) o.map_pages = parse_u32(k, v);
        else if (strcmp(k, "pages") == 0) o.trace_pages = parse_u32(k, v);
        else if (strcmp(k, "count") == 0) o.count = parse_u32(k, v);
        else if (strcmp(k, "seed") == 0) o.seed = parse_u32(k, v);
        else if (strcmp(k, "writes") == 0) o.writes = strtod(v, NULL);
        else if (strcmp(k, "warmup") == 0) o.warmup = parse_u32(k, v);
        else if (strcmp(k, "reps") == 0) o.reps = parse_u32(k, v);
        else if (strcmp(k, "asid") == 0) o.asid = parse_u32(k, v);
        else if (strcmp(k, "frames") == 0) o.frames = parse_u32(k, v);
        else if (strcmp(k, "arrays") == 0) o.n_arrays = parse_rows(v, &o.arrays[0][0], 6, MAX_ARRAYS, ':');
        else if (strcmp(k, "walk") == 0) { if (parse_rows(v, o.walk, 4, 1, ',') != 1) die("walk needs 4 values"); }
        else if (strcmp(k, "pfns") == 0) o.pfns = v;
        else if (strcmp(k, "serve") == 0) o.serve = parse_u32(k, v) != 0;
        else { fprintf(stderr, "replay-native: unknown argument %s\n", k); exit(1); }
    }
    if (!have_start || (o.start & 4095) != 0) die("start= must give the page-aligned start of the mapping");
    if (o.map_pages == 0 || o.trace_pages == 0 || o.trace_pages > o.map_pages) die("need 0 < pages <= map");
    if (o.count == 0) die("count must be positive");
    if (o.frames == 0) o.frames = o.map_pages + o.map_pages / 256 + 64;
    if (o.asid == 0 || o.asid > 0xFFFF) die("asid must be in [1, 65535]");
    return o;
}

/* Trace.random: xorshift32 from the seed; one draw for the page, one for read/write. */
static uint64_t *make_trace(const struct options *o)
{
    uint64_t *t = xcalloc(o->count, sizeof *t);
    uint32_t x = o->seed != 0 ? o->seed : 1;
    for (uint32_t i = 0; i < o->count; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        const uint32_t page = x % o->trace_pages;
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        const uint32_t kind = ((double)x / 4294967296.0) < o->writes ? ACCESS_WRITE : ACCESS_READ;
        t[i] = (o->start + ((uint64_t)page << 12)) | kind;
    }
    return t;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* m.replay hands the core at most this many records per call. */
#define REPLAY_CHUNK (1u << 20)

static uint32_t replay(struct cpu *c, struct mm *mm, const uint64_t *trace, uint32_t count, uint32_t *pfns_out)
{
    uint32_t ok = 0;
    for (uint32_t i = 0; i < count; i += REPLAY_CHUNK) {
        const uint32_t n = count - i < REPLAY_CHUNK ? count - i : REPLAY_CHUNK;
        ok += replay_trace(c, mm, trace + i, n, pfns_out != NULL ? pfns_out + i : NULL);
    }
    return ok;
}

static int compare_doubles(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One benchmark's state: the CPU, the address space, the trace, and what the calls so far did. */
struct session {
    struct cpu *c;
    struct mm *mm;
    const uint64_t *trace;
    uint32_t count;
    uint32_t calls;
    uint64_t completed;
    double *ns;      /* ns/access of each timed call */
    uint32_t timed, cap;
};

static void warm(struct session *s, uint32_t calls)
{
    for (uint32_t r = 0; r < calls; r++) {
        s->completed += replay(s->c, s->mm, s->trace, s->count, NULL);
        s->calls++;
    }
}

static double timed(struct session *s)
{
    if (s->timed == s->cap) {
        s->cap = s->cap == 0 ? 16 : s->cap * 2;
        s->ns = realloc(s->ns, s->cap * sizeof *s->ns);
        if (s->ns == NULL) die("out of memory");
    }
    const double t0 = now_ns();
    s->completed += replay(s->c, s->mm, s->trace, s->count, NULL);
    const double ns = (now_ns() - t0) / s->count;
    s->calls++;
    s->ns[s->timed++] = ns;
    return ns;
}

/*
 * The verification call, then the JSON report. The hash (FNV-1a over the
 * frame and the kind of every access) also proves this peer generated the
 * caller's trace: with every page dirty, a different read/write mix would
 * leave every counter the same.
 */
static void finish(struct session *s)
{
    uint32_t *pfns = xcalloc(s->count, sizeof *pfns);
    s->completed += replay(s->c, s->mm, s->trace, s->count, pfns);
    s->calls++;
    uint32_t hash = 2166136261u;
    for (uint32_t i = 0; i < s->count; i++) {
        hash = (hash ^ pfns[i]) * 16777619u;
        hash = (hash ^ ((uint32_t)s->trace[i] & 3)) * 16777619u;
    }

    printf("{\"calls\":%u,\"nsPerAccess\":[", s->calls);
    for (uint32_t r = 0; r < s->timed; r++) printf("%s%.4f", r == 0 ? "" : ",", s->ns[r]);
    double median = 0, best = 0;
    if (s->timed > 0) {
        qsort(s->ns, s->timed, sizeof *s->ns, compare_doubles);
        median = s->timed % 2 == 1 ? s->ns[s->timed / 2] : (s->ns[s->timed / 2 - 1] + s->ns[s->timed / 2]) / 2;
        best = s->ns[0];
    }
    printf("],\"median\":%.4f,\"best\":%.4f,\"completed\":%llu,\"accessHash\":%u,\"stats\":[", median, best,
           (unsigned long long)s->completed, hash);
    for (uint32_t i = 0; i < NR_STATS; i++) printf("%s%llu", i == 0 ? "" : ",", (unsigned long long)s->c->stats[i]);
    printf("],\"lastHit\":%u}\n", access_hit);
    fflush(stdout);
}

/*
 * serve=1: commands on stdin, one per line, so the caller can interleave
 * this peer's timed calls with its own subjects' (a noisy host then slows
 * all of them alike): "warm N" (N untimed calls; replies "ok"), "time" (one
 * timed call; replies its ns/access), "finish" (replies the JSON report).
 */
static void serve(struct session *s)
{
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        unsigned n;
        if (sscanf(line, "warm %u", &n) == 1) {
            warm(s, n);
            printf("ok\n");
        } else if (strncmp(line, "time", 4) == 0) {
            printf("%.4f\n", timed(s));
        } else if (strncmp(line, "finish", 6) == 0) {
            finish(s);
            return;
        } else {
            die("unknown command");
        }
        fflush(stdout);
    }
    die("stdin closed before finish");
}

int main(int argc, char **argv)
{
    const struct options o = parse_options(argc, argv);

    /* Frames and the data pages' pfns: the core's when given, else handed out in order. */
    nr_frames = o.frames;
    frames = xcalloc(nr_frames, sizeof *frames);
    frame_used = xcalloc(nr_frames, 1);
    frame_used[0] = 1; /* reserved, as in the core */
    uint32_t *data_pfns = xcalloc(o.map_pages, sizeof *data_pfns);
    if (o.pfns != NULL) {
        FILE *f = fopen(o.pfns, "rb");
        if (f == NULL) die("cannot open the pfns file");
        if (fread(data_pfns, sizeof *data_pfns, o.map_pages, f) != o.map_pages) die("pfns file too short");
        fclose(f);
    } else {
        /* A leaf every 512 pages needs a PTE table: leave room for it, as the core's allocator would. */
        for (uint32_t i = 0, pfn = 2; i < o.map_pages; i++, pfn++) {
            if (i % 512 == 0) pfn++;
            data_pfns[i] = pfn;
        }
    }
    for (uint32_t i = 0; i < o.map_pages; i++) {
        if (data_pfns[i] == 0 || data_pfns[i] >= nr_frames || frame_used[data_pfns[i]]) die("bad or repeated data pfn");
        frame_used[data_pfns[i]] = 1;
    }

    arena_blocks = o.map_pages / 512 + 64;
    table_arena = xcalloc((size_t)arena_blocks, 4096);

    struct mm mm = { .id = o.asid, .levels = 4 };
    mm.root = alloc_table();
    map_range(&mm, o.start, o.map_pages, data_pfns);

    struct cpu c = { .id = 0 };
    for (uint32_t i = 0; i < o.n_arrays; i++) {
        const uint32_t *a = o.arrays[i];
        if (a[3] == 0 || a[4] == 0) die("an array needs sets and ways");
        tlb_array_init(&c.arrays[i], a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    c.n_arrays = o.n_arrays;
    for (uint32_t l = 1; l < MAX_WALK_LEVELS; l++) walk_cache_init(&c.walk_caches[l], o.walk[l - 1]);
    c.func = xcalloc(FUNC_SLOTS, sizeof *c.func);
    translation_mode = o.mode;

    struct session s = { .c = &c, .mm = &mm, .trace = make_trace(&o), .count = o.count };
    if (o.serve) {
        printf("ready\n");
        fflush(stdout);
        serve(&s);
        return 0;
    }
    warm(&s, o.warmup);
    for (uint32_t r = 0; r < o.reps; r++) timed(&s);
    finish(&s);
    return 0;
}
