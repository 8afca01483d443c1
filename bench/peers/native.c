/*
 * Native C peer for the ptemu benchmarks: a line-by-line C port of the code
 * paths the WASM core (assembly/) executes for the benchmark operations,
 * so that "WASM ÷ C" compares the SAME algorithm compiled two ways.
 *
 * Configuration ported: x86-64, 4-level tables, THP never, soft-dirty on,
 * one private anonymous rw VMA at 0x7f0000000000 (2 MiB aligned), emulated
 * memory as the WASM bench sizes it (8 GiB = 2M frame descriptors unless the
 * range needs more).
 *
 * What is ported, with the same data structures, loops and branches:
 *
 *   heap.ts      kmalloc/kzalloc/kfree: power-of-two classes with one free
 *                list each, carved from a "linear memory" (one 4 GiB
 *                reservation standing in for the WebAssembly memory; heap
 *                addresses are 32-bit offsets into it, as in wasm32).
 *   frames.ts    16-byte descriptors, buddy allocator (orders 0..18, doubly
 *                linked free lists through the refcount/tag words, pfn+1
 *                links), allocPages/freePages/allocFolio/folioPut/freeFolio,
 *                pfn 0 reserved, the zero page allocated at init.
 *   x86_64.ts    entry encodings: pfnPte, leafPfn (PROT_NONE inversion),
 *                pteModify with its inversion check, hwAccess, pteMkwrite,
 *                pteMkdirty with the soft-dirty bit, protection_map.
 *   pgtable.ts   allocTablePage (a zeroed 4 KiB heap block + a TABLE frame
 *                whose index word is block >> 12) / freeTablePage, allocTable,
 *                entryPtr, levelAddrEnd, and the one-entry PMD-table cache
 *                (pmdTableLookup).
 *   mm.ts, vma.ts  Mm and Vma records in the heap, the mm table, the sorted
 *                VMA array, findVmaIndex with its one-entry cache, vmaLookup,
 *                vmaSetPageProt, anonVmaPrepare.
 *   fault.ts, access.ts  touchRange -> userAccess (leafLookup, hwAccess, on
 *                failure handleMmFault and retry, setTag) -> handleMmFault ->
 *                handleFaultInVma -> handlePteFault -> doAnonymousPage
 *                (anonVmaPrepare, allocFolio(0), entry, addRss,
 *                addNewAnonRmap).
 *   walk.ts      walkPageRange over VMAs and walkTables -> walkLevel per
 *                level -> op.pteRange per PTE table, instantiated per op by a
 *                macro the way AssemblyScript monomorphizes the generic.
 *   ops          ChangeProtOp (with canChangePteWritable), ZapOp (fast path,
 *                rss batching), StatsOp, CopyOp (fork), MappingDirtyOp
 *                (four entries at a time), the contiguous-block census and
 *                unfold (bit 52 standing in for arm64's PTE_CONT).
 *   uffd.ts, ops/uffdwp.ts  contexts (features per id), UFFDIO_REGISTER of
 *                whole anonymous VMAs, UFFDIO_WRITEPROTECT (uffdWriteProtect
 *                -> uffd_wp_range: gather, PROTECTION_VMA notifier records,
 *                UffdWpOp walk in protect mode, flush), x86 pte_needs_flush.
 *   ops/pagemapscan.ts  PAGEMAP_SCAN: testWalk (async uffd-wp registration
 *                gives WPALLOWED), the skip of eight protected PTEs at a time
 *                (allUffdWpPresent8, GCC vectors), pageCategory, region
 *                output into a 24-byte-record vector, make_uffd_wp_pte with
 *                WP_MATCHING.
 *   notifier.ts  interval subscriptions (subscribe, the slot high-water
 *                mark) and mmuNotifierInvalidateStart/End: record, sequence,
 *                dispatch to a mirror through its hook (kInvalidateRange).
 *   mirror.ts, ops/mirrorfault.ts  the seed's device mirror: create,
 *                directories as table pages counting valid entries plus
 *                walkers in the tag word, enter/leave with pruning,
 *                mirrorLeafBegin/End, mirrorEntry, clearRange (the mirror's
 *                invalidate), lookup; MirrorFaultOp (pteRange per PTE table,
 *                upperEntry filling a huge PMD as 512 entries) and
 *                mirrorFault's retry loop (the CPU-fault branch stops).
 *   gather.ts, flush.ts  tlbGatherMmu / tlbFlushPteRange / tlbFinishMmu for
 *                the permission changes; flushTlbRange with its ceiling and
 *                flushTlbMm against one CPU's functional cache, with the
 *                48-byte flush-log record.
 *   mmap.ts      mmCreate, mmapRegion, doMprotect (VMA flag updates,
 *                tryChangeWritable), doMadvise(MADV_DONTNEED).
 *   index.ts     the exported entry points (mm lookup by id, page numbers
 *                as doubles, results left in the result area).
 *
 * THP faults are not ported: the mirror's THP case builds its huge PMD
 * leaves in untimed setup (see main).
 *
 * Code the benchmark never reaches (files, swap, THP, markers, COW, VMA
 * splits and merges, the uffd-wp resolve) is not ported: where the WASM core
 * would branch into it, this port keeps the branch and stops with exit code 2
 * (unreachable()), so a run that took a different path than the WASM core
 * cannot go unnoticed.
 *
 * Usage: native <pages> <repeats>
 * Prints one JSON object with the median nanoseconds per page of each op.
 *
 * Deliberately plain C (no intrinsics, no threads; GCC vector extensions
 * only where the core itself uses v128) so that it represents what a
 * straightforward -O2 build achieves.
 */
#define _DEFAULT_SOURCE /* clock_gettime, MAP_ANONYMOUS, MAP_NORESERVE */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static _Noreturn void die(const char *msg)
{
    fprintf(stderr, "native: %s\n", msg);
    exit(1);
}

/* A branch into code this port leaves out: the run no longer follows the WASM core. */
static _Noreturn void unreachable(const char *what)
{
    fprintf(stderr, "native: %s: not on the benchmark path, not ported\n", what);
    exit(2);
}

/* ==== constants.ts ====================================================== */

#define PAGE_SHIFT 12
#define PAGE_SIZE  4096ULL
#define PMD_SIZE   (1ULL << 21)

#define EPERM  1
#define ENOENT 2
#define EBADF  9
#define EAGAIN 11
#define ENOMEM 12
#define EACCES 13
#define EBUSY  16
#define EINVAL 22

#define VM_READ         0x1u
#define VM_WRITE        0x2u
#define VM_EXEC         0x4u
#define VM_SHARED       0x8u
#define VM_MAYREAD      0x10u
#define VM_MAYWRITE     0x20u
#define VM_MAYSHARE     0x80u
#define VM_MAYEXEC      0x40u
#define VM_UFFD_MISSING 0x200u
#define VM_UFFD_WP      0x1000u
#define VM_LOCKED       0x2000u
#define VM_PFNMAP       0x400u
#define VM_HUGETLB      0x400000u
#define VM_SOFTDIRTY    0x8000000u
#define VM_HUGEPAGE     0x20000000u
#define VM_NOHUGEPAGE   0x40000000u
#define VM_ACCESS_FLAGS (VM_READ | VM_WRITE | VM_EXEC)

#define VM_FAULT_OOM      0x1u
#define VM_FAULT_SIGBUS   0x2u
#define VM_FAULT_MAJOR    0x4u
#define VM_FAULT_HWPOISON 0x10u
#define VM_FAULT_SIGSEGV  0x40u
#define VM_FAULT_FALLBACK 0x800u
#define VM_FAULT_ERROR    (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON)

#define FAULT_FLAG_WRITE       0x1u
#define FAULT_FLAG_INSTRUCTION 0x100u
#define FAULT_FLAG_UNSHARE     0x400u

#define MM_ANONPAGES 1u

#define ACCESS_OK          0
#define ACCESS_SEGV_MAPERR 1
#define ACCESS_SEGV_ACCERR 2
#define ACCESS_SIGBUS      3
#define ACCESS_OOM         4
#define ACCESS_HWPOISON    5

#define THP_NEVER   0u
#define THP_MADVISE 1u
#define THP_ALWAYS  2u

/* ==== heap.ts: the linear memory and kmalloc ============================ */

#define MIN_CLASS 4u  /* 16 bytes */
#define MAX_CLASS 31u /* 2 GiB */
#define WASM_PAGE 65536u
#define MEMORY_INITIAL_PAGES 2u      /* asconfig.json initialMemory */
#define MEMORY_MAXIMUM_PAGES 65536u  /* asconfig.json maximumMemory: 4 GiB */

static uint8_t *mem;         /* the WebAssembly memory: heap "addresses" are offsets */
static uint32_t mem_pages;   /* memory.size() */
static uint32_t brk_;        /* end of the carved region */
static uint32_t free_lists[32];
static uint32_t bytes_in_use;

/* Reserves 4 GiB of address space (committed lazily, zero-filled, like a WebAssembly memory). */
static void memory_reserve(void)
{
    void *p = mmap(NULL, (size_t)MEMORY_MAXIMUM_PAGES * WASM_PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        die("cannot reserve the emulator's linear memory");
    mem = p;
    mem_pages = MEMORY_INITIAL_PAGES;
}

/* memory.grow: -1 beyond the maximum, else the old size. */
static int32_t memory_grow(uint32_t delta)
{
    if ((uint64_t)mem_pages + delta > MEMORY_MAXIMUM_PAGES)
        return -1;
    uint32_t old = mem_pages;
    mem_pages += delta;
    return (int32_t)old;
}

/* heapInit: the stub runtime's own allocations stay below the first 64 KiB. */
static void heap_init(void)
{
    if (brk_ != 0)
        return;
    brk_ = WASM_PAGE;
}

static inline uint32_t size_class(uint32_t size)
{
    if (size <= (1u << MIN_CLASS))
        return MIN_CLASS;
    return 32u - (uint32_t)__builtin_clz(size - 1);
}

static bool ensure_memory(uint64_t end)
{
    uint64_t have = (uint64_t)mem_pages * WASM_PAGE;
    if (end <= have)
        return true;
    if (end > 0xFFFF0000ULL)
        return false;
    uint32_t need = (uint32_t)((end - have + WASM_PAGE - 1) / WASM_PAGE);
    uint32_t quarter = mem_pages >> 2;
    if (quarter > need && memory_grow(quarter) >= 0)
        return true;
    return memory_grow(need) >= 0;
}

/* A block of at least `size` bytes aligned to min(blockSize, 4096); 0 when out of memory. Not zeroed. */
static uint32_t kmalloc(uint32_t size)
{
    uint32_t cls = size_class(size);
    if (cls > MAX_CLASS)
        return 0;
    uint32_t head = free_lists[cls];
    if (head != 0) {
        free_lists[cls] = *(uint32_t *)(mem + head);
        bytes_in_use += 1u << cls;
        return head;
    }
    uint32_t bsize = 1u << cls;
    uint32_t align = bsize < 4096 ? bsize : 4096;
    uint32_t ptr = (brk_ + align - 1) & ~(align - 1);
    if (ptr + bsize < ptr || !ensure_memory((uint64_t)ptr + bsize))
        return 0;
    brk_ = ptr + bsize;
    bytes_in_use += bsize;
    return ptr;
}

static uint32_t kzalloc(uint32_t size)
{
    uint32_t p = kmalloc(size);
    if (p != 0)
        memset(mem + p, 0, (size_t)1 << size_class(size));
    return p;
}

static void kfree(uint32_t ptr, uint32_t size)
{
    if (ptr == 0)
        return;
    uint32_t cls = size_class(size);
    *(uint32_t *)(mem + ptr) = free_lists[cls];
    free_lists[cls] = ptr;
    bytes_in_use -= 1u << cls;
}

/* ==== frames.ts: descriptors and the buddy allocator ==================== */

typedef struct {
    uint32_t refcount; /* free block head: prev (pfn+1) */
    uint32_t tag;      /* free block head: next (pfn+1) */
    uint32_t index;    /* table frames: heap block >> 12 */
    uint32_t info;     /* mapcount 0..17, order 18..22, kind 23..24, flags 25..31 */
} frame_desc;

#define MAX_ORDER     18u
#define MAPCOUNT_MASK 0x3FFFFu
#define ORDER_SHIFT   18u
#define KIND_SHIFT    23u
#define KIND_TAIL     1u
#define KIND_TABLE    2u
#define KIND_FREE     3u

#define PG_ANON       (1u << 25)
#define PG_EXCLUSIVE  (1u << 26)
#define PG_SWAPBACKED (1u << 28)
#define PG_LRU        (1u << 30)
#define PG_SWAPCACHE  (1u << 31)

static frame_desc *frames; /* = mem + the descriptor array's heap address */
static uint32_t nr_frames;
static uint32_t free_frames;
static uint32_t zero_pfn;
static uint32_t huge_zero_pfn;
static int32_t fail_after = -1;

static uint32_t free_heads[MAX_ORDER + 1]; /* pfn + 1, 0 = empty */
static uint32_t free_counts[MAX_ORDER + 1];

static inline uint32_t refcount_of(uint32_t pfn) { return frames[pfn].refcount; }
static inline void set_refcount(uint32_t pfn, uint32_t v) { frames[pfn].refcount = v; }
static inline uint32_t tag_of(uint32_t pfn) { return frames[pfn].tag; }
static inline void set_tag(uint32_t pfn, uint32_t v) { frames[pfn].tag = v; }
static inline uint32_t index_of(uint32_t pfn) { return frames[pfn].index; }
static inline void set_index(uint32_t pfn, uint32_t v) { frames[pfn].index = v; }
static inline uint32_t info_of(uint32_t pfn) { return frames[pfn].info; }
static inline void set_info(uint32_t pfn, uint32_t v) { frames[pfn].info = v; }
static inline uint32_t order_of(uint32_t pfn) { return (info_of(pfn) >> ORDER_SHIFT) & 31; }
static inline bool test_flag(uint32_t pfn, uint32_t f) { return (info_of(pfn) & f) != 0; }
static inline void set_flag(uint32_t pfn, uint32_t f) { set_info(pfn, info_of(pfn) | f); }
static inline uint32_t folio_head(uint32_t pfn) { return pfn & ~((1u << order_of(pfn)) - 1); }
static inline bool is_zero_pfn(uint32_t pfn)
{
    return pfn == zero_pfn || (huge_zero_pfn != 0 && (pfn & ~511u) == huge_zero_pfn);
}
static inline void add_mapcount(uint32_t pfn, int32_t d) { set_info(pfn, info_of(pfn) + (uint32_t)d); }

/* store<u64>(desc, 0); store<u64>(desc, 0, 8) */
static inline void desc_clear(uint32_t pfn)
{
    frames[pfn].refcount = 0;
    frames[pfn].tag = 0;
    frames[pfn].index = 0;
    frames[pfn].info = 0;
}

static void free_list_push(uint32_t pfn, uint32_t order)
{
    uint32_t head = free_heads[order];
    set_info(pfn, (order << ORDER_SHIFT) | (KIND_FREE << KIND_SHIFT));
    set_refcount(pfn, 0); /* prev */
    set_tag(pfn, head);   /* next */
    if (head != 0)
        set_refcount(head - 1, pfn + 1);
    free_heads[order] = pfn + 1;
    free_counts[order] += 1;
}

static void free_list_remove(uint32_t pfn, uint32_t order)
{
    uint32_t prev = refcount_of(pfn), next = tag_of(pfn);
    if (prev != 0)
        set_tag(prev - 1, next);
    else
        free_heads[order] = next;
    if (next != 0)
        set_refcount(next - 1, prev);
    free_counts[order] -= 1;
    set_info(pfn, 0);
    set_refcount(pfn, 0);
    set_tag(pfn, 0);
}

static uint32_t alloc_pages(uint32_t order)
{
    if (fail_after == 0)
        return 0;
    uint32_t o = order;
    while (o <= MAX_ORDER && free_heads[o] == 0)
        o++;
    if (o > MAX_ORDER)
        return 0;
    if (fail_after > 0)
        fail_after--;
    uint32_t pfn = free_heads[o] - 1;
    free_list_remove(pfn, o);
    /* Split down, returning upper halves to the free lists. */
    while (o > order) {
        o--;
        free_list_push(pfn + (1u << o), o);
    }
    uint32_t n = 1u << order;
    free_frames -= n;
    if (order == 0)
        desc_clear(pfn);
    else
        memset(&frames[pfn], 0, (size_t)n << 4);
    uint32_t tail_info = (order << ORDER_SHIFT) | (KIND_TAIL << KIND_SHIFT);
    set_info(pfn, order << ORDER_SHIFT);
    for (uint32_t i = 1; i < n; i++)
        set_info(pfn + i, tail_info);
    return pfn;
}

static void free_pages(uint32_t pfn, uint32_t order)
{
    free_frames += 1u << order;
    while (order < MAX_ORDER) {
        uint32_t buddy = pfn ^ (1u << order);
        if (buddy >= nr_frames || buddy == 0)
            break;
        uint32_t bi = info_of(buddy);
        if (((bi >> KIND_SHIFT) & 3) != KIND_FREE || ((bi >> ORDER_SHIFT) & 31) != order)
            break;
        free_list_remove(buddy, order);
        pfn = pfn & buddy;
        order++;
    }
    free_list_push(pfn, order);
}

static uint32_t alloc_folio(uint32_t order)
{
    uint32_t pfn = alloc_pages(order);
    if (pfn != 0)
        set_refcount(pfn, 1);
    return pfn;
}

static void free_folio(uint32_t head)
{
    uint32_t order = order_of(head);
    if (order == 0)
        desc_clear(head);
    else
        memset(&frames[head], 0, ((size_t)1 << order) << 4);
    free_pages(head, order);
}

static void folio_put(uint32_t head)
{
    uint32_t r = refcount_of(head) - 1;
    set_refcount(head, r);
    if (r == 0)
        free_folio(head);
}

static bool frames_init(uint32_t n)
{
    uint32_t off = kmalloc(n << 4);
    if (off == 0)
        return false;
    frames = (frame_desc *)(mem + off);
    memset(frames, 0, (size_t)n << 4);
    nr_frames = n;
    /* Free every frame from 1 upward in the largest naturally aligned blocks. */
    uint32_t pfn = 1;
    while (pfn < n) {
        uint32_t order = (uint32_t)__builtin_ctz(pfn);
        if (order > MAX_ORDER)
            order = MAX_ORDER;
        while (pfn + (1u << order) > n)
            order--;
        free_list_push(pfn, order);
        free_frames += 1u << order;
        pfn += 1u << order;
    }
    set_refcount(0, 1);
    zero_pfn = alloc_pages(0);
    if (zero_pfn == 0)
        return false;
    set_refcount(zero_pfn, 1);
    return true;
}

/* ==== arch/x86_64.ts: entry encodings =================================== */

#define _PAGE_PRESENT    (1ULL << 0)
#define _PAGE_RW         (1ULL << 1)
#define _PAGE_USER       (1ULL << 2)
#define _PAGE_PWT        (1ULL << 3)
#define _PAGE_PCD        (1ULL << 4)
#define _PAGE_ACCESSED   (1ULL << 5)
#define _PAGE_DIRTY      (1ULL << 6)
#define _PAGE_PSE        (1ULL << 7)
#define _PAGE_GLOBAL     (1ULL << 8)
#define _PAGE_PROTNONE   _PAGE_GLOBAL
#define _PAGE_SPECIAL    (1ULL << 9)
#define _PAGE_UFFD_WP    (1ULL << 10)
#define _PAGE_SOFT_DIRTY (1ULL << 11)
#define _PAGE_DEVMAP     (1ULL << 57)
#define _PAGE_SAVED_DIRTY (1ULL << 58)
#define _PAGE_NX         (1ULL << 63)
#define PTE_PFN_MASK     0x000FFFFFFFFFF000ULL

#define _PAGE_CHG_MASK (PTE_PFN_MASK | _PAGE_PCD | _PAGE_PWT | _PAGE_SPECIAL | _PAGE_ACCESSED | \
                        _PAGE_DIRTY | _PAGE_SAVED_DIRTY | _PAGE_SOFT_DIRTY | _PAGE_DEVMAP | _PAGE_UFFD_WP)
#define _PAGE_TABLE (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY)

#define PAGE_NONE          (_PAGE_ACCESSED | _PAGE_PROTNONE)
#define PAGE_SHARED        (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX)
#define PAGE_SHARED_EXEC   (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED)
#define PAGE_COPY          (_PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX)
#define PAGE_COPY_EXEC     (_PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED)
#define PAGE_READONLY      (_PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX)
#define PAGE_READONLY_EXEC (_PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED)

#define SWP_TYPE_BITS  5
#define SWP_PTE_MARKER 31u
#define MAX_SWAPFILES  24u

#define ACCESS_READ  0u
#define ACCESS_WRITE 1u
#define ACCESS_EXEC  2u

/* Run-time settings, as in the core: globals read where they are used. */
static bool soft_dirty_supported = true; /* arch/index.ts softDirtySupported */
static uint64_t soft_dirty_bit = _PAGE_SOFT_DIRTY; /* x86_64.ts softDirtyBit */

static void arch_init(bool soft_dirty)
{
    soft_dirty_supported = soft_dirty;
    soft_dirty_bit = soft_dirty ? _PAGE_SOFT_DIRTY : 0;
}

static uint64_t protection_map(uint32_t i)
{
    switch (i & 15) {
    case 0: return PAGE_NONE;
    case 1: return PAGE_READONLY;
    case 2: return PAGE_COPY;
    case 3: return PAGE_COPY;
    case 4: return PAGE_READONLY_EXEC;
    case 5: return PAGE_READONLY_EXEC;
    case 6: return PAGE_COPY_EXEC;
    case 7: return PAGE_COPY_EXEC;
    case 8: return PAGE_NONE;
    case 9: return PAGE_READONLY;
    case 10: return PAGE_SHARED;
    case 11: return PAGE_SHARED;
    case 12: return PAGE_READONLY_EXEC;
    case 13: return PAGE_READONLY_EXEC;
    case 14: return PAGE_SHARED_EXEC;
    default: return PAGE_SHARED_EXEC;
    }
}

static inline bool needs_invert(uint64_t v) { return v != 0 && (v & _PAGE_PRESENT) == 0; }
static inline uint64_t protnone_mask(uint64_t v) { return needs_invert(v) ? ~0ULL : 0; }

static inline bool pte_none(uint64_t e) { return (e & ~(_PAGE_ACCESSED | _PAGE_DIRTY)) == 0; }
static inline bool pte_present(uint64_t e) { return (e & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0; }
static inline bool pte_protnone(uint64_t e) { return (e & (_PAGE_PROTNONE | _PAGE_PRESENT)) == _PAGE_PROTNONE; }
static inline bool pmd_present(uint64_t e) { return (e & (_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE)) != 0; }
static inline bool pte_write(uint64_t e) { return (e & _PAGE_RW) != 0; }
static inline bool pte_dirty(uint64_t e) { return (e & (_PAGE_DIRTY | _PAGE_SAVED_DIRTY)) != 0; }
static inline bool pte_special(uint64_t e) { return (e & _PAGE_SPECIAL) != 0; }
static inline bool pte_soft_dirty(uint64_t e) { return (e & soft_dirty_bit) != 0; }
static inline bool pte_uffd_wp(uint64_t e) { return (e & _PAGE_UFFD_WP) != 0; }
static inline uint64_t pte_mkwrite(uint64_t e) { return e | _PAGE_RW; }
static inline uint64_t pte_wrprotect(uint64_t e) { return e & ~_PAGE_RW; }
static inline uint64_t pte_mkdirty(uint64_t e) { return e | _PAGE_DIRTY | soft_dirty_bit; }
static inline uint64_t pte_mkyoung(uint64_t e) { return e | _PAGE_ACCESSED; }
static inline uint64_t pte_mkspecial(uint64_t e) { return e | _PAGE_SPECIAL; }
static inline uint64_t pte_mkuffd_wp(uint64_t e) { return pte_wrprotect(e | _PAGE_UFFD_WP); }

static inline uint64_t pfn_pte(uint64_t pfn, uint64_t prot)
{
    return (((pfn << 12) ^ protnone_mask(prot)) & PTE_PFN_MASK) | prot;
}

static inline uint64_t leaf_addr_mask(uint32_t level)
{
    return level == 0 ? PTE_PFN_MASK : PTE_PFN_MASK & ~((1ULL << (12 + 9 * (uint64_t)level)) - 1);
}

static inline uint64_t leaf_pfn(uint64_t e, uint32_t level)
{
    return ((e ^ protnone_mask(e)) & leaf_addr_mask(level)) >> 12;
}

static uint64_t pte_modify(uint64_t e, uint64_t prot)
{
    uint64_t v = (e & _PAGE_CHG_MASK) | (prot & ~_PAGE_CHG_MASK);
    if (needs_invert(e) != needs_invert(v))
        v = (v & ~PTE_PFN_MASK) | (~v & PTE_PFN_MASK);
    return v;
}

static inline uint64_t mk_table_entry(uint64_t pfn) { return (pfn << 12) | _PAGE_TABLE; }
static inline uint64_t table_entry_pfn(uint64_t e) { return (e & PTE_PFN_MASK) >> 12; }
static inline bool is_table_entry(uint64_t e) { return (e & (_PAGE_PRESENT | _PAGE_PSE)) == _PAGE_PRESENT; }
static inline bool is_upper_leaf(uint64_t e) { return (e & _PAGE_PSE) != 0 && pmd_present(e); }

static inline uint64_t swp_type(uint64_t e) { return e >> (64 - SWP_TYPE_BITS); }
static inline bool is_swap_pte(uint64_t e) { return !pte_none(e) && !pte_present(e); }
static inline bool is_pte_marker(uint64_t e) { return is_swap_pte(e) && swp_type(e) == SWP_PTE_MARKER; }

static uint64_t hw_access(uint64_t e, uint32_t kind)
{
    if ((e & (_PAGE_PRESENT | _PAGE_USER)) != (_PAGE_PRESENT | _PAGE_USER))
        return 0;
    if (kind == ACCESS_WRITE) {
        if ((e & _PAGE_RW) == 0)
            return 0;
        return e | _PAGE_ACCESSED | _PAGE_DIRTY;
    }
    if (kind == ACCESS_EXEC && (e & _PAGE_NX) != 0)
        return 0;
    return e | _PAGE_ACCESSED;
}

/* ==== mm.ts ============================================================= */

/* @unmanaged class Mm, field for field (usize is 32-bit: heap addresses). */
typedef struct {
    uint32_t id;
    uint32_t levels;
    uint32_t root;
    uint32_t nr_tables;
    int64_t rss[4];
    uint32_t vmas; /* heap address of the sorted Vma array */
    uint32_t nr_vmas;
    uint32_t cap_vmas;
    uint32_t vma_cache;
    uint32_t flags;
    uint64_t min_flt;
    uint64_t maj_flt;
    uint64_t task_size;
    uint64_t cpumask;
    uint32_t last_cpu;
    uint32_t flush_pending;
    uint32_t tlb_sizes;            /* page sizes ever in a TLB (not used by the ported paths) */
    uint32_t nr_subscriptions;     /* notifier.ts: interval notifiers and mirrors; 0 skips the dispatch */
    uint32_t active_invalidations; /* invalidate_range_start calls not yet ended */
    uint64_t invalidate_seq;       /* odd while an invalidation is active */
} mm_t;

#define MAX_MMS (1u << 16)

static uint32_t mm_table; /* heap address of u32 Mm addresses, index = id */
static uint32_t mm_table_cap;
static uint32_t nr_mms;

static inline void add_rss(mm_t *mm, uint32_t counter, int64_t d) { mm->rss[counter] += d; }

static mm_t *mm_by_id(uint32_t id)
{
    if (id >= mm_table_cap)
        return NULL;
    uint32_t p = ((uint32_t *)(mem + mm_table))[id];
    return p == 0 ? NULL : (mm_t *)(mem + p);
}

static mm_t *mm_alloc_struct(uint32_t levels, uint64_t task_size)
{
    uint32_t id = 1;
    while (id < mm_table_cap && ((uint32_t *)(mem + mm_table))[id] != 0)
        id++;
    if (id >= MAX_MMS)
        return NULL;
    if (id >= mm_table_cap) {
        uint32_t cap = mm_table_cap == 0 ? 64 : mm_table_cap * 2;
        uint32_t t = kzalloc(cap << 2);
        if (t == 0)
            return NULL;
        if (mm_table != 0) {
            memcpy(mem + t, mem + mm_table, (size_t)mm_table_cap << 2);
            kfree(mm_table, mm_table_cap << 2);
        }
        mm_table = t;
        mm_table_cap = cap;
    }
    uint32_t p = kzalloc(sizeof(mm_t));
    if (p == 0)
        return NULL;
    mm_t *mm = (mm_t *)(mem + p);
    mm->id = id;
    mm->levels = levels;
    mm->task_size = task_size;
    ((uint32_t *)(mem + mm_table))[id] = p;
    nr_mms++;
    return mm;
}

/* ==== pgtable.ts ======================================================== */

static inline uint64_t level_shift(uint32_t level) { return 12 + 9 * (uint64_t)level; }
static inline uint64_t level_size(uint32_t level) { return 1ULL << level_shift(level); }
static inline uint32_t table_index(uint64_t addr, uint32_t level) { return (uint32_t)(addr >> level_shift(level)) & 511; }
/* The table's heap block: the frame's index word names it (ptr >> 12). */
static inline uint64_t *table_ptr(uint32_t pfn) { return (uint64_t *)(mem + ((size_t)index_of(pfn) << 12)); }
static inline uint64_t *entry_ptr(uint32_t table_pfn, uint64_t addr, uint32_t level)
{
    return table_ptr(table_pfn) + table_index(addr, level);
}
static inline uint64_t level_addr_end(uint64_t addr, uint64_t end, uint32_t level)
{
    uint64_t next = (addr + level_size(level)) & ~(level_size(level) - 1);
    return next - 1 < end - 1 ? next : end;
}

/* A zeroed table page (a heap block behind a TABLE frame), charged to nobody; 0 when out of memory. */
static uint32_t alloc_table_page(void)
{
    uint32_t ptr = kzalloc(4096);
    if (ptr == 0)
        return 0;
    uint32_t pfn = alloc_pages(0);
    if (pfn == 0) {
        kfree(ptr, 4096);
        return 0;
    }
    set_refcount(pfn, 1);
    set_info(pfn, KIND_TABLE << KIND_SHIFT);
    set_index(pfn, ptr >> 12);
    set_tag(pfn, 0);
    return pfn;
}

static void free_table_page(uint32_t pfn)
{
    kfree(index_of(pfn) << 12, 4096);
    desc_clear(pfn);
    free_pages(pfn, 0);
}

/* pte_alloc_one & friends: a zeroed table page charged to the mm; 0 when out of memory. */
static uint32_t alloc_table(mm_t *mm)
{
    uint32_t pfn = alloc_table_page();
    if (pfn != 0)
        mm->nr_tables++;
    return pfn;
}

/* The one-entry cache of the PMD table covering the last 1 GiB region looked up. */
static uint32_t pmd_cache_mm;
static uint64_t pmd_cache_region;
static uint32_t pmd_cache_table;

static uint32_t pmd_table_lookup(mm_t *mm, uint64_t addr, bool alloc)
{
    uint64_t region = addr >> 30;
    if (pmd_cache_mm == mm->id && pmd_cache_region == region)
        return pmd_cache_table;
    uint32_t table = mm->root;
    for (uint32_t level = mm->levels - 1; level > 1; level--) {
        uint64_t *ep = entry_ptr(table, addr, level);
        uint64_t e = *ep;
        if (e == 0) {
            if (!alloc)
                return 0;
            uint32_t t = alloc_table(mm);
            if (t == 0)
                return 0;
            e = mk_table_entry(t);
            *ep = e;
        }
        if (!is_table_entry(e))
            return 0;
        table = (uint32_t)table_entry_pfn(e);
    }
    pmd_cache_mm = mm->id;
    pmd_cache_region = region;
    pmd_cache_table = table;
    return table;
}

/* ==== vma.ts ============================================================ */

/* @unmanaged class Vma, field for field (48 bytes). */
typedef struct {
    uint64_t start;
    uint64_t end;
    uint64_t pgoff;
    uint32_t flags;
    uint32_t file;
    uint32_t anon_vma;
    uint32_t uffd;
    uint64_t page_prot;
} vma_t;

#define VMA_BYTES ((uint32_t)sizeof(vma_t))

static uint32_t anon_vma_ids;

static inline vma_t *vma_at(mm_t *mm, uint32_t i) { return (vma_t *)(mem + mm->vmas + (size_t)i * VMA_BYTES); }

/* Files are not modelled here: only anonymous VMAs exist, and every caller tests file != 0 first. */
static bool file_wants_writenotify(uint32_t file)
{
    (void)file;
    unreachable("fileWantsWritenotify");
    return false;
}

static void vma_set_page_prot(vma_t *v)
{
    uint32_t f = v->flags;
    if ((f & VM_SHARED) != 0 && v->file != 0 && file_wants_writenotify(v->file))
        f &= ~VM_SHARED;
    v->page_prot = protection_map(f & 15); /* vmGetPageProt */
}

static uint32_t find_vma_index(mm_t *mm, uint64_t addr)
{
    uint32_t c = mm->vma_cache;
    if (c < mm->nr_vmas) {
        vma_t *v = vma_at(mm, c);
        if (v->start <= addr && addr < v->end)
            return c;
    }
    uint32_t lo = 0, hi = mm->nr_vmas;
    while (lo < hi) {
        uint32_t mid = (lo + hi) >> 1;
        if (vma_at(mm, mid)->end <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static vma_t *vma_lookup(mm_t *mm, uint64_t addr)
{
    uint32_t i = find_vma_index(mm, addr);
    if (i >= mm->nr_vmas)
        return NULL;
    vma_t *v = vma_at(mm, i);
    if (v->start > addr)
        return NULL;
    mm->vma_cache = i;
    return v;
}

static bool ensure_capacity(mm_t *mm, uint32_t n)
{
    if (n <= mm->cap_vmas)
        return true;
    uint32_t cap = mm->cap_vmas == 0 ? 16 : mm->cap_vmas * 2;
    while (cap < n)
        cap *= 2;
    uint32_t p = kmalloc(cap * VMA_BYTES);
    if (p == 0)
        return false;
    if (mm->vmas != 0) {
        memcpy(mem + p, mem + mm->vmas, (size_t)mm->nr_vmas * VMA_BYTES);
        kfree(mm->vmas, mm->cap_vmas * VMA_BYTES);
    }
    mm->vmas = p;
    mm->cap_vmas = cap;
    return true;
}

static bool vma_reserve(mm_t *mm, uint32_t extra) { return ensure_capacity(mm, mm->nr_vmas + extra); }

static uint32_t vma_insert(mm_t *mm, uint64_t start, uint64_t end, uint32_t flags, uint32_t file, uint64_t pgoff)
{
    uint32_t i = find_vma_index(mm, start);
    uint8_t *at = mem + mm->vmas + (size_t)i * VMA_BYTES;
    memmove(at + VMA_BYTES, at, (size_t)(mm->nr_vmas - i) * VMA_BYTES);
    mm->nr_vmas++;
    vma_t *v = (vma_t *)at;
    v->start = start;
    v->end = end;
    v->flags = flags;
    v->file = file;
    v->pgoff = file != 0 ? pgoff : start >> 12;
    v->anon_vma = 0;
    v->uffd = 0;
    vma_set_page_prot(v);
    if (file != 0)
        unreachable("fileGet");
    mm->vma_cache = i;
    return i;
}

static bool vma_try_merge_next(mm_t *mm, uint32_t i)
{
    if (i + 1 >= mm->nr_vmas)
        return false;
    unreachable("vmaTryMergeNext with a neighbour (canMerge)");
    return false;
}

static inline void anon_vma_prepare(vma_t *v)
{
    if (v->anon_vma == 0)
        v->anon_vma = ++anon_vma_ids;
}

/* ==== rmap.ts (as used) ================================================= */

/* folio_add_new_anon_rmap for a freshly allocated folio mapped once. */
static void add_new_anon_rmap(uint32_t head, uint32_t nr, bool pmd_mapped)
{
    set_flag(head, PG_ANON | PG_SWAPBACKED | PG_LRU);
    if (pmd_mapped) {
        unreachable("addNewAnonRmap of a PMD-mapped folio");
    } else {
        for (uint32_t i = 0; i < nr; i++) {
            add_mapcount(head + i, 1);
            set_flag(head + i, PG_EXCLUSIVE);
        }
    }
}

/* ==== walk.ts =========================================================== */

#define ACTION_SUBTREE  0
#define ACTION_CONTINUE 1
#define ACTION_AGAIN    2

static int32_t walk_action = ACTION_SUBTREE;
static vma_t *walk_vma;
static mm_t *walk_mm;
static uint32_t walk_table_pfn;

static inline void set_walk_action(int32_t a) { walk_action = a; }

/*
 * walkLevel<T>, walkPageRange<T> and walkTables<T>, instantiated per op the
 * way AssemblyScript monomorphizes the generic walker. The op provides
 * OP_pte_range, OP_upper_entry, OP_hole, OP_test_walk, OP_pre_vma, OP_post_vma.
 */
#define DEFINE_WALK_LEVEL(OP, T)                                                             \
    static int32_t OP##_walk_level(T *op, uint32_t level, uint32_t table, uint64_t start,   \
                                   uint64_t end)                                             \
    {                                                                                        \
        uint64_t *base = table_ptr(table);                                                   \
        if (level == 0)                                                                      \
            return OP##_pte_range(op, base + ((start >> 12) & 511), start, end);             \
        uint64_t shift = level_shift(level);                                                 \
        uint64_t addr = start;                                                               \
        while (addr < end) {                                                                 \
            uint64_t next = level_addr_end(addr, end, level);                                \
            uint64_t *ep = base + ((addr >> shift) & 511);                                   \
            uint64_t e = *ep;                                                                \
            if (e == 0) {                                                                    \
                int32_t r = OP##_hole(op, addr, next, 4 - (int32_t)level);                   \
                if (r != 0)                                                                  \
                    return r;                                                                \
                addr = next;                                                                 \
                continue;                                                                    \
            }                                                                                \
            walk_action = ACTION_SUBTREE;                                                    \
            walk_table_pfn = table;                                                          \
            int32_t r = OP##_upper_entry(op, level, ep, addr, next);                         \
            if (r != 0)                                                                      \
                return r;                                                                    \
            if (walk_action == ACTION_AGAIN)                                                 \
                continue;                                                                    \
            if (walk_action == ACTION_SUBTREE) {                                             \
                uint64_t cur = *ep;                                                          \
                if (is_upper_leaf(cur) && level == 1 && walk_vma != NULL)                    \
                    unreachable("splitHugePmd");                                             \
                if (is_table_entry(cur)) {                                                   \
                    int32_t r2 = OP##_walk_level(op, level - 1, (uint32_t)table_entry_pfn(cur), \
                                                 addr, next);                                \
                    if (r2 != 0)                                                             \
                        return r2;                                                           \
                }                                                                            \
            }                                                                                \
            addr = next;                                                                     \
        }                                                                                    \
        return 0;                                                                            \
    }

#define DEFINE_WALK_PAGE_RANGE(OP, T)                                                        \
    static int32_t OP##_walk_page_range(T *op, mm_t *mm, uint64_t start, uint64_t end)       \
    {                                                                                        \
        walk_mm = mm;                                                                        \
        uint64_t addr = start;                                                               \
        uint32_t i = find_vma_index(mm, start);                                              \
        int32_t r = 0;                                                                       \
        while (addr < end) {                                                                 \
            if (i >= mm->nr_vmas || vma_at(mm, i)->start >= end) {                           \
                walk_vma = NULL;                                                             \
                r = OP##_hole(op, addr, end, -1);                                            \
                break;                                                                       \
            }                                                                                \
            vma_t *v = vma_at(mm, i);                                                        \
            if (addr < v->start) {                                                           \
                walk_vma = NULL;                                                             \
                r = OP##_hole(op, addr, v->start, -1);                                       \
                if (r != 0)                                                                  \
                    break;                                                                   \
                addr = v->start;                                                             \
            }                                                                                \
            uint64_t next = v->end < end ? v->end : end;                                     \
            walk_vma = v;                                                                    \
            r = OP##_test_walk(op, v);                                                       \
            if (r < 0)                                                                       \
                break;                                                                       \
            if (r == 0) {                                                                    \
                r = OP##_pre_vma(op, v, addr, next);                                         \
                if (r != 0)                                                                  \
                    break;                                                                   \
                r = OP##_walk_level(op, mm->levels - 1, mm->root, addr, next);               \
                /* The op may have split or merged VMAs: re-find ours by address. */         \
                i = find_vma_index(mm, addr);                                                \
                OP##_post_vma(op, vma_at(mm, i), addr, next);                                \
                if (r != 0)                                                                  \
                    break;                                                                   \
            }                                                                                \
            r = 0;                                                                           \
            addr = next;                                                                     \
            i = find_vma_index(mm, addr);                                                    \
        }                                                                                    \
        walk_vma = NULL;                                                                     \
        return r;                                                                            \
    }

#define DEFINE_WALK_TABLES(OP, T)                                                            \
    static int32_t OP##_walk_tables(T *op, mm_t *mm, uint64_t start, uint64_t end)           \
    {                                                                                        \
        if (start >= end)                                                                    \
            return 0;                                                                        \
        walk_mm = mm;                                                                        \
        return OP##_walk_level(op, mm->levels - 1, mm->root, start, end);                    \
    }

/* The @inline no-op hooks every benchmark op has. */
#define DEFINE_NOOP_HOOKS(OP, T)                                                             \
    static inline int32_t OP##_hole(T *op, uint64_t addr, uint64_t next, int32_t depth)      \
    {                                                                                        \
        (void)op; (void)addr; (void)next; (void)depth;                                       \
        return 0;                                                                            \
    }                                                                                        \
    static inline int32_t OP##_test_walk(T *op, vma_t *vma)                                  \
    {                                                                                        \
        (void)op; (void)vma;                                                                 \
        return 0;                                                                            \
    }                                                                                        \
    static inline int32_t OP##_pre_vma(T *op, vma_t *vma, uint64_t start, uint64_t end)      \
    {                                                                                        \
        (void)op; (void)vma; (void)start; (void)end;                                         \
        return 0;                                                                            \
    }                                                                                        \
    static inline void OP##_post_vma(T *op, vma_t *vma, uint64_t start, uint64_t end)        \
    {                                                                                        \
        (void)op; (void)vma; (void)start; (void)end;                                         \
    }

/* ==== ops/changeprot.ts ================================================= */

typedef struct {
    uint64_t prot;
    bool try_change_writable;
    uint64_t pages;
} change_prot_op;

static bool can_change_pte_writable(vma_t *vma, uint64_t e)
{
    if ((vma->flags & VM_WRITE) == 0)
        return false;
    if (pte_protnone(e))
        return false;
    /* Soft-dirty tracking needs the write fault that re-sets the bit. */
    if (soft_dirty_supported && (vma->flags & VM_SOFTDIRTY) == 0 && !pte_soft_dirty(e))
        return false;
    if ((vma->flags & VM_UFFD_WP) != 0 && pte_uffd_wp(e))
        return false;
    if ((vma->flags & VM_SHARED) == 0) {
        uint32_t pfn = (uint32_t)leaf_pfn(e, 0);
        if (pte_special(e) || is_zero_pfn(pfn))
            return false;
        return test_flag(folio_head(pfn), PG_ANON) && test_flag(pfn, PG_EXCLUSIVE);
    }
    return pte_dirty(e);
}

static int32_t cp_pte_range(change_prot_op *op, uint64_t *ptep, uint64_t addr, uint64_t end)
{
    uint64_t prot = op->prot;
    uint64_t *last = ptep + ((end - addr) >> 12);
    uint64_t pages = 0;
    if (!op->try_change_writable) {
        for (uint64_t *p = ptep; p < last; p++) {
            uint64_t e = *p;
            if (e == 0 || !pte_present(e))
                continue;
            uint64_t n = pte_modify(e, prot);
            if (n != e) {
                *p = n;
                pages++;
            }
        }
    } else {
        vma_t *vma = walk_vma;
        for (uint64_t *p = ptep; p < last; p++) {
            uint64_t e = *p;
            if (e == 0 || !pte_present(e))
                continue;
            uint64_t n = pte_modify(e, prot);
            if (!pte_write(n) && can_change_pte_writable(vma, n))
                n = pte_mkwrite(n);
            if (n != e) {
                *p = n;
                pages++;
            }
        }
    }
    op->pages += pages;
    return 0;
}

static int32_t cp_upper_entry(change_prot_op *op, uint32_t level, uint64_t *ep, uint64_t addr, uint64_t next)
{
    (void)op;
    uint64_t e = *ep;
    if (!is_upper_leaf(e))
        return 0;
    if (level != 1 || ((addr & (PMD_SIZE - 1)) == 0 && next - addr == PMD_SIZE))
        unreachable("change_huge_pmd");
    return 0;
}

DEFINE_NOOP_HOOKS(cp, change_prot_op)
DEFINE_WALK_LEVEL(cp, change_prot_op)
DEFINE_WALK_PAGE_RANGE(cp, change_prot_op)

/* ==== ops/zap.ts ======================================================== */

/* Descriptor bits that take a page off the fast path: large folio, tail, table/free kinds, swap cache. */
#define FAST_MASK ((31u << ORDER_SHIFT) | (3u << KIND_SHIFT) | PG_SWAPCACHE)

typedef struct {
    bool drop_markers;
    bool even_cows;
    uint64_t zapped;
} zap_op;

/*
 * gather.ts: the mmu_gather of a DONTNEED. Zapped pages wait in a batch and
 * lose their mapping reference only after the flush (there are no CPUs to
 * shoot down in this peer, as in the core's benchmark configuration without
 * a modelled TLB, so the flush itself is the range bookkeeping); a full batch
 * forces the flush early.
 */
#define GATHER_BATCH 10000u
static struct {
    uint64_t start, end;
    bool cleared;
    uint32_t nr;
    uint32_t pages[GATHER_BATCH];
} gather;

static void gather_begin(void)
{
    gather.start = UINT64_MAX;
    gather.end = 0;
    gather.cleared = false;
    gather.nr = 0;
}

static void gather_flush(void)
{
    if (gather.cleared) {
        gather.start = UINT64_MAX;
        gather.end = 0;
        gather.cleared = false;
    }
    for (uint32_t i = 0; i < gather.nr; i++)
        folio_put(gather.pages[i]);
    gather.nr = 0;
}

static inline void gather_remove(uint64_t addr, uint32_t pfn)
{
    if (addr < gather.start) gather.start = addr;
    if (addr + 4096 > gather.end) gather.end = addr + 4096;
    gather.cleared = true;
    gather.pages[gather.nr] = pfn;
    if (++gather.nr == GATHER_BATCH)
        gather_flush();
}

static void zap_one(zap_op *op, uint64_t *ptep, uint64_t e, vma_t *vma)
{
    (void)op; (void)ptep; (void)e; (void)vma;
    unreachable("ZapOp.zapOne (zap slow path)");
}

static int32_t zap_pte_range(zap_op *op, uint64_t *ptep, uint64_t addr, uint64_t end)
{
    vma_t *vma = walk_vma;
    uint64_t *last = ptep + ((end - addr) >> 12);
    int64_t anon = 0; /* rss delta, added once per table as zap_pte_range does */
    for (uint64_t *p = ptep; p < last; p++) {
        uint64_t e = *p;
        if (e == 0)
            continue;
        /* The common case inline: a small anonymous folio mapped here once, not in the swap cache. */
        if (pte_present(e) && !pte_special(e) && !pte_uffd_wp(e)) {
            uint32_t pfn = (uint32_t)leaf_pfn(e, 0);
            uint32_t inf = info_of(pfn);
            if ((inf & (FAST_MASK | PG_ANON)) == PG_ANON && pfn != zero_pfn) {
                *p = 0;
                set_info(pfn, inf - 1);
                anon--;
                gather_remove(addr + ((uint64_t)(p - ptep) << 12), pfn);
                op->zapped++;
                continue;
            }
        }
        zap_one(op, p, e, vma);
    }
    if (anon != 0)
        add_rss(walk_mm, MM_ANONPAGES, anon);
    return 0;
}

static int32_t zap_upper_entry(zap_op *op, uint32_t level, uint64_t *ep, uint64_t addr, uint64_t next)
{
    (void)op; (void)addr; (void)next;
    uint64_t e = *ep;
    if (!is_upper_leaf(e))
        return 0;
    if (level != 1) {
        set_walk_action(ACTION_CONTINUE);
        return 0;
    }
    unreachable("zapHugePmd");
    return 0;
}

DEFINE_NOOP_HOOKS(zap, zap_op)
DEFINE_WALK_LEVEL(zap, zap_op)
DEFINE_WALK_PAGE_RANGE(zap, zap_op)

/* ==== ops/stats.ts ====================================================== */

typedef struct {
    uint64_t present;
    uint64_t swap;
    uint64_t markers;
    uint64_t pmd_leaves;
    uint64_t pud_leaves;
    uint64_t pfn_sum;
} stats_op;

static void stats_finish(stats_op *op) { op->swap -= op->markers; }

static void stats_reset(stats_op *op)
{
    op->present = 0;
    op->swap = 0;
    op->markers = 0;
    op->pmd_leaves = 0;
    op->pud_leaves = 0;
    op->pfn_sum = 0;
}

static int32_t stats_pte_range(stats_op *op, uint64_t *ptep, uint64_t addr, uint64_t end)
{
    uint64_t present = 0, other = 0, sum = 0;
    uint64_t *last = ptep + ((end - addr) >> 12);
    for (uint64_t *p = ptep; p < last; p++) {
        uint64_t e = *p;
        if (e == 0)
            continue;
        if (pte_present(e)) {
            present++;
            sum += leaf_pfn(e, 0);
            continue;
        }
        other++;
        if (is_pte_marker(e))
            op->markers++;
    }
    op->present += present;
    op->pfn_sum += sum;
    op->swap += other;
    return 0;
}

static int32_t stats_upper_entry(stats_op *op, uint32_t level, uint64_t *ep, uint64_t addr, uint64_t next)
{
    (void)addr; (void)next;
    uint64_t e = *ep;
    if (is_upper_leaf(e)) {
        if (level == 1)
            op->pmd_leaves++;
        else
            op->pud_leaves++;
        op->pfn_sum += leaf_pfn(e, level);
        set_walk_action(ACTION_CONTINUE);
    }
    return 0;
}

DEFINE_NOOP_HOOKS(stats, stats_op)
DEFINE_WALK_LEVEL(stats, stats_op)
DEFINE_WALK_TABLES(stats, stats_op)

/* ==== fault.ts ========================================================== */

static uint32_t thp_policy = THP_MADVISE;
static bool thp_use_zero_page = true;
static uint32_t fault_around_pages = 16;

static void set_thp_policy(uint32_t p, bool use_zero)
{
    thp_policy = p;
    thp_use_zero_page = use_zero;
}

static void set_fault_around_pages(uint32_t n) { fault_around_pages = n == 0 ? 1 : n; }

static uint32_t fault_pmd_table;

static uint64_t *pmd_offset_alloc(mm_t *mm, uint64_t addr)
{
    uint32_t table = pmd_table_lookup(mm, addr, true);
    if (table == 0)
        return NULL;
    fault_pmd_table = table;
    return entry_ptr(table, addr, 1);
}

static uint32_t lookup_level;

static uint64_t *leaf_lookup(mm_t *mm, uint64_t addr)
{
    uint32_t pmd_table = pmd_table_lookup(mm, addr, false);
    if (pmd_table != 0) {
        uint64_t *pmdp = entry_ptr(pmd_table, addr, 1);
        uint64_t pmd = *pmdp;
        if (!is_table_entry(pmd)) {
            lookup_level = 1;
            return pmdp;
        }
        lookup_level = 0;
        return table_ptr((uint32_t)table_entry_pfn(pmd)) + ((addr >> 12) & 511);
    }
    uint32_t table = mm->root;
    for (uint32_t level = mm->levels - 1;; level--) {
        uint64_t *ep = entry_ptr(table, addr, level);
        if (level == 0) {
            lookup_level = 0;
            return ep;
        }
        uint64_t e = *ep;
        if (e == 0) {
            lookup_level = level;
            return ep;
        }
        if (!is_table_entry(e)) {
            lookup_level = level;
            return ep;
        }
        table = (uint32_t)table_entry_pfn(e);
    }
}

/* thp_vma_allowable_order for an anonymous fault at PMD order. */
static bool thp_vma_allowable(vma_t *vma, uint64_t addr)
{
    if (vma->file != 0 || (vma->flags & VM_SHARED) != 0)
        return false;
    if ((vma->flags & VM_NOHUGEPAGE) != 0)
        return false;
    if (thp_policy == THP_ALWAYS) {
    } else if (thp_policy == THP_MADVISE) {
        if ((vma->flags & VM_HUGEPAGE) == 0)
            return false;
    } else
        return false;
    if ((vma->flags & VM_UFFD_WP) != 0)
        return false;
    uint64_t haddr = addr & ~(PMD_SIZE - 1);
    return haddr >= vma->start && haddr + PMD_SIZE <= vma->end;
}

/* do_anonymous_page. */
static uint32_t do_anonymous_page(mm_t *mm, vma_t *vma, uint64_t addr, uint64_t *ptep, uint32_t flags, bool uffd_wp)
{
    (void)addr;
    if ((vma->flags & VM_SHARED) != 0)
        return VM_FAULT_SIGBUS;
    if ((flags & FAULT_FLAG_WRITE) == 0) {
        uint64_t entry = pte_mkspecial(pfn_pte(zero_pfn, vma->page_prot));
        if (uffd_wp)
            entry = pte_mkuffd_wp(entry);
        *ptep = entry;
        return 0;
    }
    anon_vma_prepare(vma);
    uint32_t pfn = alloc_folio(0);
    if (pfn == 0)
        return VM_FAULT_OOM;
    uint64_t entry = pfn_pte(pfn, vma->page_prot);
    if ((vma->flags & VM_WRITE) != 0)
        entry = pte_mkwrite(pte_mkdirty(entry));
    if (uffd_wp)
        entry = pte_mkuffd_wp(entry);
    add_rss(mm, MM_ANONPAGES, 1);
    add_new_anon_rmap(pfn, 1, false);
    *ptep = entry;
    return 0;
}

static uint32_t handle_pte_fault(mm_t *mm, vma_t *vma, uint64_t addr, uint64_t *ptep, uint32_t flags)
{
    uint64_t e = *ptep;
    if (pte_none(e)) {
        if (vma->file == 0)
            return do_anonymous_page(mm, vma, addr, ptep, flags, false);
        unreachable("doFault");
    }
    if (!pte_present(e))
        unreachable("doSwapPage");
    if (pte_protnone(e)) {
        /* do_numa_page: restore the VMA's protection. */
        *ptep = pte_mkyoung(pte_modify(e, vma->page_prot));
        return 0;
    }
    if ((flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE)) != 0 && !pte_write(e))
        unreachable("doWpPage");
    uint64_t entry = e;
    if ((flags & FAULT_FLAG_WRITE) != 0)
        entry = pte_mkdirty(entry);
    entry = pte_mkyoung(entry);
    if (entry != e)
        *ptep = entry; /* ptep_set_access_flags */
    return 0;
}

static uint32_t handle_fault_in_vma(mm_t *mm, vma_t *vma, uint64_t addr, uint32_t flags)
{
    uint64_t *pmdp = pmd_offset_alloc(mm, addr);
    if (pmdp == NULL)
        return VM_FAULT_OOM;
    uint64_t pmd = *pmdp;
    if (pmd == 0 && thp_vma_allowable(vma, addr)) {
        unreachable("doHugePmdAnonymousPage");
    } else if (is_upper_leaf(pmd)) {
        unreachable("huge_pmd_fault");
    }
    if (pmd == 0) {
        uint32_t t = alloc_table(mm);
        if (t == 0)
            return VM_FAULT_OOM;
        pmd = mk_table_entry(t);
        *pmdp = pmd;
    }
    if (!is_table_entry(pmd))
        return VM_FAULT_SIGBUS;
    uint64_t *ptep = table_ptr((uint32_t)table_entry_pfn(pmd)) + ((addr >> 12) & 511);
    return handle_pte_fault(mm, vma, addr, ptep, flags);
}

/* handle_mm_fault for a user access at addr. */
static uint32_t handle_mm_fault(mm_t *mm, uint64_t addr, uint32_t flags)
{
    vma_t *vma = vma_lookup(mm, addr);
    if (vma == NULL)
        return VM_FAULT_SIGSEGV;
    /* access_error(): a write needs VM_WRITE, an exec VM_EXEC, a read any access. */
    if ((flags & FAULT_FLAG_WRITE) != 0) {
        if ((vma->flags & VM_WRITE) == 0)
            return VM_FAULT_SIGSEGV;
    } else if ((flags & FAULT_FLAG_INSTRUCTION) != 0) {
        if ((vma->flags & VM_EXEC) == 0)
            return VM_FAULT_SIGSEGV;
    } else if ((vma->flags & VM_ACCESS_FLAGS) == 0)
        return VM_FAULT_SIGSEGV;

    uint32_t ret = handle_fault_in_vma(mm, vma, addr, flags);
    if ((ret & (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON)) == 0) {
        if ((ret & VM_FAULT_MAJOR) != 0)
            mm->maj_flt++;
        else
            mm->min_flt++;
    }
    return ret;
}

/* ==== access.ts ========================================================= */

static uint32_t access_pfn;
static uint32_t access_tag;
static uint32_t access_faults;

#define MAX_RETRIES 8u

static int32_t user_access(mm_t *mm, uint64_t addr, uint32_t kind, uint32_t tag)
{
    access_faults = 0;
    for (uint32_t attempt = 0; attempt <= MAX_RETRIES; attempt++) {
        /* As in access.ts with no TLB arrays: every attempt walks (the retry after a fault too). */
        uint64_t *ep = leaf_lookup(mm, addr);
        uint32_t level = lookup_level;
        uint64_t e = *ep;
        if (e != 0 && (level == 0 || is_upper_leaf(e))) {
            uint64_t n = hw_access(e, kind);
            if (n != 0) {
                if (n != e)
                    *ep = n;
                uint32_t pfn = (uint32_t)(leaf_pfn(e, level) +
                                          ((addr >> 12) & ((1ULL << (level_shift(level) - 12)) - 1)));
                access_pfn = pfn;
                if (kind == ACCESS_WRITE)
                    set_tag(pfn, tag);
                access_tag = tag_of(pfn);
                return ACCESS_OK;
            }
        }
        access_faults++;
        uint32_t flags = kind == ACCESS_WRITE ? FAULT_FLAG_WRITE : (kind == ACCESS_EXEC ? FAULT_FLAG_INSTRUCTION : 0);
        uint32_t r = handle_mm_fault(mm, addr, flags);
        if ((r & VM_FAULT_ERROR) != 0) {
            if ((r & VM_FAULT_OOM) != 0)
                return ACCESS_OOM;
            if ((r & VM_FAULT_HWPOISON) != 0)
                return ACCESS_HWPOISON;
            if ((r & VM_FAULT_SIGBUS) != 0)
                return ACCESS_SIGBUS;
            return vma_lookup(mm, addr) == NULL ? ACCESS_SEGV_MAPERR : ACCESS_SEGV_ACCERR;
        }
    }
    return ACCESS_SIGBUS;
}

static uint64_t touch_done;

static int32_t touch_range(mm_t *mm, uint64_t start, uint64_t end, uint32_t kind, uint32_t tag)
{
    touch_done = 0;
    for (uint64_t a = start; a < end; a += 4096) {
        int32_t r = user_access(mm, a, kind, tag);
        if (r != ACCESS_OK)
            return r;
        touch_done++;
    }
    return ACCESS_OK;
}

/* ==== mmap.ts =========================================================== */

static zap_op zap_op_instance;
static change_prot_op change_prot_op_instance;

static mm_t *mm_create(uint32_t levels, uint64_t task_size)
{
    mm_t *mm = mm_alloc_struct(levels, task_size);
    if (mm == NULL)
        return NULL;
    mm->root = alloc_table(mm);
    if (mm->root == 0)
        die("out of memory for the root table");
    return mm;
}

static bool range_has_vma(mm_t *mm, uint64_t start, uint64_t end)
{
    uint32_t i = find_vma_index(mm, start);
    return i < mm->nr_vmas && vma_at(mm, i)->start < end;
}

static bool range_fully_mapped(mm_t *mm, uint64_t start, uint64_t end)
{
    uint64_t addr = start;
    uint32_t i = find_vma_index(mm, start);
    while (addr < end) {
        if (i >= mm->nr_vmas)
            return false;
        vma_t *v = vma_at(mm, i);
        if (v->start > addr)
            return false;
        addr = v->end;
        i++;
    }
    return true;
}

static void merge_around(mm_t *mm, uint32_t i)
{
    if (i + 1 < mm->nr_vmas)
        vma_try_merge_next(mm, i);
    if (i > 0)
        vma_try_merge_next(mm, i - 1);
}

/* mmap_region without MAP_FIXED replacement (the benchmark maps into an empty mm). */
static int32_t mmap_region(mm_t *mm, uint64_t start, uint64_t len, uint32_t flags)
{
    uint64_t end = start + len;
    if (range_has_vma(mm, start, end))
        unreachable("mmap over an existing mapping");
    if (!vma_reserve(mm, 1))
        return -ENOMEM;
    /* New VMAs start soft-dirty: everything in them counts as written until clear_refs. */
    if (soft_dirty_supported)
        flags |= VM_SOFTDIRTY;
    uint32_t i = vma_insert(mm, start, end, flags, 0, 0);
    merge_around(mm, i);
    return 0;
}

/* Splits VMAs so that none straddles addr. */
static void split_at(mm_t *mm, uint64_t addr)
{
    uint32_t i = find_vma_index(mm, addr);
    if (i < mm->nr_vmas) {
        vma_t *v = vma_at(mm, i);
        if (v->start < addr && addr < v->end)
            unreachable("vmaSplit");
    }
}

/* vma_wants_manual_pte_write_upgrade. */
static bool wants_manual_write_upgrade(vma_t *v)
{
    if ((v->flags & VM_SHARED) != 0)
        return v->file != 0 && file_wants_writenotify(v->file);
    return (v->flags & VM_WRITE) != 0;
}

static void merge_range(mm_t *mm, uint64_t start, uint64_t end)
{
    uint32_t i = find_vma_index(mm, start);
    if (i > 0)
        i--;
    while (i + 1 < mm->nr_vmas && vma_at(mm, i)->start <= end) {
        if (!vma_try_merge_next(mm, i))
            i++;
    }
}

static int32_t do_mprotect(mm_t *mm, uint64_t start, uint64_t end, uint32_t prot)
{
    if (!range_fully_mapped(mm, start, end))
        return -ENOMEM;
    for (uint32_t i = find_vma_index(mm, start); i < mm->nr_vmas && vma_at(mm, i)->start < end; i++) {
        vma_t *v = vma_at(mm, i);
        /* VM_MAYREAD/WRITE/EXEC sit four bits above READ/WRITE/EXEC. */
        if ((prot & ~(v->flags >> 4) & (VM_READ | VM_WRITE | VM_EXEC)) != 0)
            return -EACCES;
    }
    if (!vma_reserve(mm, 2))
        return -ENOMEM;
    split_at(mm, start);
    split_at(mm, end);
    for (uint32_t i = find_vma_index(mm, start); i < mm->nr_vmas && vma_at(mm, i)->start < end; i++) {
        vma_t *v = vma_at(mm, i);
        v->flags = (v->flags & ~(VM_READ | VM_WRITE | VM_EXEC)) | prot;
        vma_set_page_prot(v);
        change_prot_op_instance.prot = v->page_prot;
        change_prot_op_instance.try_change_writable = wants_manual_write_upgrade(v);
        cp_walk_page_range(&change_prot_op_instance, mm, v->start, v->end);
    }
    merge_range(mm, start, end);
    return 0;
}

#define EMU_MADV_DONTNEED 4u

static int32_t do_madvise(mm_t *mm, uint64_t start, uint64_t end, uint32_t advice)
{
    if (!range_fully_mapped(mm, start, end))
        return -ENOMEM;
    if (advice == EMU_MADV_DONTNEED) {
        for (uint32_t i = find_vma_index(mm, start); i < mm->nr_vmas && vma_at(mm, i)->start < end; i++) {
            if ((vma_at(mm, i)->flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)) != 0)
                return -EINVAL;
        }
        /* madvise_dontneed_free: one gather per VMA. */
        zap_op_instance.drop_markers = false;
        zap_op_instance.even_cows = true;
        for (uint32_t i = find_vma_index(mm, start); i < mm->nr_vmas && vma_at(mm, i)->start < end; i++) {
            vma_t *v = vma_at(mm, i);
            gather_begin();
            zap_walk_page_range(&zap_op_instance, mm, v->start > start ? v->start : start, v->end < end ? v->end : end);
            gather_flush();
        }
        return 0;
    }
    unreachable("madvise other than MADV_DONTNEED");
    return -EINVAL;
}

/* ==== index.ts: the exported entry points =============================== */

static stats_op stats_op_instance;
static uint64_t result[16];

static inline uint64_t page_addr(double vpn) { return (uint64_t)vpn << 12; }

/* swapInit: only the chunk directory is allocated up front (64 KiB chunks on first use). */
static bool swap_init(uint32_t slots)
{
    if (slots == 0)
        return true;
    uint32_t chunks = (slots + 4095) >> 12;
    return kzalloc(chunks << 2) != 0;
}

static int32_t x_init(uint32_t nframes, uint32_t slots, bool soft_dirty, uint32_t thp, bool thp_zero, uint32_t fault_around)
{
    heap_init();
    arch_init(soft_dirty);
    if (!frames_init(nframes))
        return -ENOMEM;
    if (!swap_init(slots))
        return -ENOMEM;
    set_thp_policy(thp, thp_zero);
    set_fault_around_pages(fault_around);
    return 0;
}

static int32_t x_mm_new(uint32_t levels, double task_size_pages)
{
    mm_t *m = mm_create(levels, page_addr(task_size_pages));
    return m == NULL ? -ENOMEM : (int32_t)m->id;
}

static int32_t x_mmap(uint32_t id, double vpn, double pages, uint32_t flags)
{
    mm_t *m = mm_by_id(id);
    if (m == NULL)
        return -2;
    return mmap_region(m, page_addr(vpn), page_addr(pages), flags);
}

static int32_t x_mprotect(uint32_t id, double vpn, double pages, uint32_t prot)
{
    mm_t *m = mm_by_id(id);
    return m == NULL ? -2 : do_mprotect(m, page_addr(vpn), page_addr(vpn + pages), prot);
}

static int32_t x_madvise(uint32_t id, double vpn, double pages, uint32_t advice)
{
    mm_t *m = mm_by_id(id);
    return m == NULL ? -2 : do_madvise(m, page_addr(vpn), page_addr(vpn + pages), advice);
}

static int32_t x_touch(uint32_t id, double vpn, double pages, uint32_t kind, uint32_t tag)
{
    mm_t *m = mm_by_id(id);
    if (m == NULL)
        return -2;
    int32_t r = touch_range(m, page_addr(vpn), page_addr(vpn + pages), kind, tag);
    result[0] = touch_done;
    return r;
}

static int32_t x_walk_stats(uint32_t id, double vpn, double pages)
{
    mm_t *m = mm_by_id(id);
    if (m == NULL)
        return -2;
    stats_reset(&stats_op_instance);
    stats_walk_tables(&stats_op_instance, m, page_addr(vpn), page_addr(vpn + pages));
    stats_finish(&stats_op_instance);
    result[0] = stats_op_instance.present;
    result[1] = stats_op_instance.swap;
    result[2] = stats_op_instance.markers;
    result[3] = stats_op_instance.pmd_leaves;
    result[4] = stats_op_instance.pud_leaves;
    result[5] = stats_op_instance.pfn_sum;
    return 0;
}

/* ==== timing and driver ================================================= */

/* 2 MiB aligned, so the range starts at the beginning of a page table. */
#define RANGE_START 0x7f0000000000ULL
/* TASK_SIZE of x86-64 with 4 levels: the lower half minus its top page. */
#define TASK_SIZE ((1ULL << 47) - 4096)
#define GiB (1ULL << 30)
/* The machine's memory limit (src/machine.ts MAX_MEMORY). */
#define MAX_MEMORY (256 * GiB)

/* Emulated RAM as bench/subjects.ts sizes the WASM machine: at least 8 GiB, 1.5x the range. */
/*
 * fork: copy_page_range as CopyOp does it (assembly/ops/copy.ts), the path the
 * benchmark exercises: small anonymous folios in a COW mapping, no pins (the
 * early-copy path is only entered when the mm has pinned), no swap entries.
 */
#define MMF_HAS_PINNED 1u

typedef struct {
    mm_t *parent;
    mm_t *child;
    uint64_t copied;
} copy_op;

static copy_op copy_op_instance;

static int32_t copy_pte_range(copy_op *op, uint64_t *ptep, uint64_t addr, uint64_t end)
{
    uint64_t *pmdp = pmd_offset_alloc(op->child, addr);
    if (pmdp == NULL)
        return -ENOMEM;
    uint64_t pmd = *pmdp;
    if (pmd == 0) {
        uint32_t t = alloc_table(op->child);
        if (t == 0)
            return -ENOMEM;
        pmd = mk_table_entry(t);
        *pmdp = pmd;
    }
    uint64_t *dst = table_ptr((uint32_t)table_entry_pfn(pmd)) + ((addr >> 12) & 511);
    vma_t *vma = walk_vma;
    bool cow = (vma->flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE;
    bool has_pinned = (op->parent->flags & MMF_HAS_PINNED) != 0;
    uint64_t n = (end - addr) >> 12;
    int64_t anon = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t e = ptep[i];
        if (e == 0)
            continue;
        if (!pte_present(e))
            unreachable("copy_nonpresent_pte");
        uint32_t pfn = (uint32_t)leaf_pfn(e, 0);
        if (!pte_special(e) && pfn != zero_pfn) {
            uint32_t head = folio_head(pfn);
            if ((info_of(head) & PG_ANON) == 0 || has_pinned)
                unreachable("file page or early COW");
            set_refcount(head, refcount_of(head) + 1);
            set_info(pfn, (info_of(pfn) + 1) & ~PG_EXCLUSIVE);
            anon++;
        }
        if (cow && pte_write(e)) {
            e = pte_wrprotect(e);
            ptep[i] = e;
        }
        dst[i] = e & ~_PAGE_ACCESSED;
    }
    add_rss(op->child, MM_ANONPAGES, anon);
    op->copied += (uint64_t)anon;
    return 0;
}

static int32_t copy_upper_entry(copy_op *op, uint32_t level, uint64_t *ep, uint64_t addr, uint64_t next)
{
    (void)op; (void)level; (void)addr; (void)next;
    if (is_upper_leaf(*ep))
        unreachable("copy_huge_pmd");
    return 0;
}

DEFINE_NOOP_HOOKS(copy, copy_op)
DEFINE_WALK_LEVEL(copy, copy_op)
DEFINE_WALK_PAGE_RANGE(copy, copy_op)

/* dup_mmap: the child's mm id, or -ENOMEM. */
static int32_t x_fork(uint32_t id)
{
    mm_t *parent = mm_by_id(id);
    mm_t *child = mm_create(parent->levels, parent->task_size);
    if (child == NULL)
        return -ENOMEM;
    copy_op_instance.parent = parent;
    copy_op_instance.child = child;
    for (uint32_t i = 0; i < parent->nr_vmas; i++) {
        vma_t *v = vma_at(parent, i);
        if (mmap_region(child, v->start, v->end - v->start, v->flags) != 0)
            return -ENOMEM;
        if (copy_walk_page_range(&copy_op_instance, parent, v->start, v->end) != 0)
            return -ENOMEM;
    }
    return (int32_t)child->id;
}

/*
 * mapping_dirty_helpers: MappingDirtyOp (assembly/ops/mappingdirty.ts) with
 * its per-VMA staging: notifier records, flush_cache_range and
 * tlb_flush_pending in pre_vma, a flush of the tight modified range in
 * post_vma. The VMA is walked as walk_page_mapping walks each VMA of i_mmap.
 */
static inline uint64_t pte_mkclean(uint64_t e) { return e & ~(_PAGE_DIRTY | _PAGE_SAVED_DIRTY); }

typedef struct {
    bool clean;
    uint64_t total;
    uint8_t *bitmap;
    uint64_t bitmap_pgoff;
    uint64_t cstart, cend;
    uint64_t range_start, range_end, flush_start, flush_end, bit_base;
} mapping_dirty_op;

static mapping_dirty_op md_op_instance;
static struct { uint32_t phase, event, mm; uint64_t start, end; } notifier_log[64];
static unsigned notifier_count;
static uint64_t cache_flushes, flushed_pages;

/* notifier.ts enum mmu_notifier_event (the two kinds the ported ops bracket their changes with). */
#define MMU_NOTIFY_PROTECTION_VMA  2u
#define MMU_NOTIFY_PROTECTION_PAGE 3u

static void notifier_record(uint32_t phase, uint32_t event, mm_t *mm, uint64_t start, uint64_t end)
{
    unsigned i = notifier_count++ & 63;
    notifier_log[i].phase = phase;
    notifier_log[i].event = event;
    notifier_log[i].mm = mm->id;
    notifier_log[i].start = start;
    notifier_log[i].end = end;
}

/*
 * Four entries at a time, branch-free, as arch/index.ts wrprotect4/mkclean4
 * (GCC vector extensions; SSE2 on x86-64). Returns the changed-entries mask.
 */
typedef uint64_t u64x2 __attribute__((vector_size(16)));
typedef int64_t i64x2 __attribute__((vector_size(16)));

static inline unsigned edit_pair(uint64_t *p, uint64_t bits)
{
    u64x2 v;
    memcpy(&v, p, sizeof v);
    i64x2 present = (v & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0;
    i64x2 change = present & ((v & bits) != 0);
    unsigned m = (change[0] ? 1u : 0u) | (change[1] ? 2u : 0u);
    if (m) {
        u64x2 n = v & ~((u64x2)change & bits);
        memcpy(p, &n, sizeof n);
    }
    return m;
}

static inline void set_bits(uint8_t *bitmap, uint64_t bit, unsigned mask)
{
    uint64_t *w = (uint64_t *)(bitmap + ((bit >> 6) << 3));
    unsigned sh = (unsigned)(bit & 63);
    w[0] |= (uint64_t)mask << sh;
    if (sh > 60 && ((uint64_t)mask >> (64 - sh)) != 0)
        w[1] |= (uint64_t)mask >> (64 - sh);
}

static int32_t md_pte_range(mapping_dirty_op *op, uint64_t *ptep, uint64_t addr, uint64_t end)
{
    uint64_t *last = ptep + ((end - addr) >> 12);
    uint64_t *first = NULL, *final = NULL, n = 0;
    uint64_t *p = ptep;
    const bool clean = op->clean;
    const uint64_t bits = clean ? (_PAGE_DIRTY | _PAGE_SAVED_DIRTY) : _PAGE_RW;
    const uint64_t bit0 = (addr >> 12) + op->bit_base;
    for (; p + 4 <= last; p += 4) {
        unsigned m = edit_pair(p, bits) | (edit_pair(p + 2, bits) << 2);
        if (m == 0)
            continue;
        if (first == NULL)
            first = p + __builtin_ctz(m);
        final = p + (31 - __builtin_clz(m));
        n += (uint64_t)__builtin_popcount(m);
        if (clean)
            set_bits(op->bitmap, bit0 + (uint64_t)(p - ptep), m);
    }
    for (; p < last; p++) {
        uint64_t e = *p;
        if (clean) {
            if (!pte_dirty(e) || !pte_present(e))
                continue;
            *p = pte_mkclean(e);
            set_bits(op->bitmap, bit0 + (uint64_t)(p - ptep), 1);
        } else {
            if (!pte_write(e) || !pte_present(e))
                continue;
            *p = pte_wrprotect(e);
        }
        if (first == NULL)
            first = p;
        final = p;
        n++;
    }
    if (n != 0) {
        uint64_t lo = addr + ((uint64_t)(first - ptep) << 12), hi = addr + ((uint64_t)(final - ptep) << 12) + 4096;
        if (lo < op->flush_start) op->flush_start = lo;
        if (hi > op->flush_end) op->flush_end = hi;
        if (clean) {
            uint64_t bs = (lo >> 12) + op->bit_base, be = ((hi - 4096) >> 12) + op->bit_base + 1;
            if (bs < op->cstart) op->cstart = bs;
            if (be > op->cend) op->cend = be;
        }
        op->total += n;
    }
    return 0;
}

static int32_t md_upper_entry(mapping_dirty_op *op, uint32_t level, uint64_t *ep, uint64_t addr, uint64_t next)
{
    (void)op; (void)level; (void)addr; (void)next;
    if (is_upper_leaf(*ep))
        unreachable("huge leaf in the dirty benchmark");
    return 0;
}

static inline int32_t md_hole(mapping_dirty_op *op, uint64_t addr, uint64_t next, int32_t depth)
{
    (void)op; (void)addr; (void)next; (void)depth;
    return 0;
}

static inline int32_t md_test_walk(mapping_dirty_op *op, vma_t *vma)
{
    (void)op;
    return (vma->flags & (VM_SHARED | VM_MAYWRITE | VM_HUGETLB)) == (VM_SHARED | VM_MAYWRITE) ? 0 : 1;
}

static int32_t md_pre_vma(mapping_dirty_op *op, vma_t *vma, uint64_t start, uint64_t end)
{
    mm_t *mm = walk_mm;
    op->flush_start = end;
    op->flush_end = start;
    op->range_start = start;
    op->range_end = end;
    op->bit_base = vma->pgoff - (vma->start >> 12) - op->bitmap_pgoff;
    notifier_record(0, MMU_NOTIFY_PROTECTION_PAGE, mm, start, end);
    cache_flushes++;
    mm->flush_pending++;
    return 0;
}

static void md_post_vma(mapping_dirty_op *op, vma_t *vma, uint64_t start, uint64_t end)
{
    (void)vma; (void)start; (void)end;
    mm_t *mm = walk_mm;
    if (mm->flush_pending > 1)
        flushed_pages += (op->range_end - op->range_start) >> 12;
    else if (op->flush_end > op->flush_start)
        flushed_pages += (op->flush_end - op->flush_start) >> 12;
    notifier_record(1, MMU_NOTIFY_PROTECTION_PAGE, mm, op->range_start, op->range_end);
    mm->flush_pending--;
}

DEFINE_WALK_LEVEL(md, mapping_dirty_op)
DEFINE_WALK_PAGE_RANGE(md, mapping_dirty_op)

static uint64_t x_write_protect(mm_t *mm, uint64_t start, uint64_t end)
{
    md_op_instance.clean = false;
    md_op_instance.total = 0;
    md_op_instance.bitmap_pgoff = 0;
    md_walk_page_range(&md_op_instance, mm, start, end);
    return md_op_instance.total;
}

static uint64_t x_clean_record(mm_t *mm, uint64_t start, uint64_t end, uint8_t *bitmap)
{
    md_op_instance.clean = true;
    md_op_instance.total = 0;
    md_op_instance.bitmap = bitmap;
    md_op_instance.bitmap_pgoff = start >> 12;   /* an anonymous VMA's pgoff is its start page */
    md_op_instance.cstart = (end - start) >> 12;
    md_op_instance.cend = 0;
    md_walk_page_range(&md_op_instance, mm, start, end);
    return md_op_instance.total;
}

/* Benchmark setup, untimed: every stride-th PTE gets `bit`, the others lose it. */
static void set_pte_bit(mm_t *mm, uint64_t start, uint64_t pages, uint64_t stride, uint64_t bit)
{
    for (uint64_t i = 0; i < pages; i++) {
        uint64_t *ep = leaf_lookup(mm, start + i * PAGE_SIZE);
        *ep = i % stride == 0 ? (*ep | bit) : (*ep & ~bit);
    }
}

/*
 * Contiguous blocks, as ops/contscan.ts and arch/contpte.ts do them, on the
 * peer's x86-format tables with bit 52 (software-available on x86) standing
 * in for arm64's PTE_CONT: the census (16 entries at a time, GCC vectors) and
 * the unfold of every folded block (clear 16, gather A/D, flush, rewrite).
 */
#define EMU_CONT (1ULL << 52)

typedef struct { uint64_t folded, foldable, broken, blocks; } cont_scan_op;
static cont_scan_op cont_scan_instance;

/* Folios are naturally aligned and every page carries its folio's order: for a 16-aligned pfn, order >= 4 is enough. */
static inline bool covered_by_folio(uint32_t pfn) { return order_of(pfn) >= 4; }

static int32_t cs_pte_range(cont_scan_op *op, uint64_t *ptep, uint64_t addr, uint64_t end)
{
    uint64_t *last = ptep + ((end - addr) >> 12);
    uint64_t *p = (uint64_t *)(((uintptr_t)ptep + 127) & ~(uintptr_t)127);
    const uint64_t norm = _PAGE_ACCESSED | _PAGE_DIRTY | EMU_CONT;
    for (; p + 16 <= last; p += 16) {
        uint64_t e0 = p[0];
        if (!(e0 & _PAGE_PRESENT)) continue;
        const uint64_t n0 = e0 & ~norm;
        u64x2 want = { n0, n0 + 0x1000 };
        u64x2 diff = { 0, 0 }, all = { ~0ULL, ~0ULL }, any = { 0, 0 };
        for (unsigned i = 0; i < 16; i += 4) {
            u64x2 a, b;
            memcpy(&a, p + i, sizeof a);
            memcpy(&b, p + i + 2, sizeof b);
            u64x2 want_b = want + 0x2000;
            diff |= ((a & ~norm) ^ want) | ((b & ~norm) ^ want_b);
            all &= a & b;
            any |= a | b;
            want = want_b + 0x2000;
        }
        op->blocks++;
        bool all_cont = (all[0] & all[1] & EMU_CONT) != 0, any_cont = ((any[0] | any[1]) & EMU_CONT) != 0;
        bool consistent = !(diff[0] | diff[1]) && (leaf_pfn(e0, 0) & 15) == 0 && covered_by_folio((uint32_t)leaf_pfn(e0, 0));
        if (!any_cont) op->foldable += consistent;
        else if (all_cont && consistent) op->folded++;
        else op->broken++;
    }
    return 0;
}

static int32_t cs_upper_entry(cont_scan_op *op, uint32_t level, uint64_t *ep, uint64_t addr, uint64_t next)
{
    (void)op; (void)level; (void)addr; (void)next;
    if (is_upper_leaf(*ep)) set_walk_action(ACTION_CONTINUE);
    return 0;
}

DEFINE_NOOP_HOOKS(cs, cont_scan_op)
DEFINE_WALK_LEVEL(cs, cont_scan_op)
DEFINE_WALK_PAGE_RANGE(cs, cont_scan_op)

/*
 * flush.ts's flushTlbRange and flushTlbMm for a machine of one CPU without
 * TLB arrays (the benchmarks run with tlb: 'none' and the default cpus: 1):
 * the shootdown accounting, the check of the CPU's direct-mapped functional
 * cache (per page for a range, every slot for the mm), and the 48-byte
 * flush-log record. A range of more pages than the ceiling becomes the
 * whole-mm flush, as x86's tlb_single_page_flush_ceiling makes it.
 */
#define FUNC_SLOTS 4096
#define FLUSH_PAGE  0u
#define FLUSH_RANGE 1u
#define FLUSH_MM    2u
static uint64_t func_cache[FUNC_SLOTS * 2];
static uint8_t *flush_log;
static size_t flush_log_count, flush_log_cap;
static uint64_t total_flushes;
static uint32_t flush_ceiling = 33;

/* seq u64 | kind u32 | mm u32 | initiator u32 | stride shift u32 | start u64 | end u64 | cpus reached u64 */
static void log_flush(uint32_t kind, mm_t *mm, uint32_t stride, uint64_t start, uint64_t end)
{
    if (flush_log_count == flush_log_cap) {
        flush_log_cap = flush_log_cap ? flush_log_cap * 2 : 256;
        flush_log = realloc(flush_log, flush_log_cap * 48);
        if (!flush_log) die("flush log");
    }
    /* The initiator is CPU 0 (mm.lastCpu), the only CPU in the mask. */
    uint64_t rec[6] = { flush_log_count + 1, ((uint64_t)mm->id << 32) | kind, (uint64_t)stride << 32, start, end, 1 };
    memcpy(flush_log + flush_log_count++ * 48, rec, 48);
}

static void flush_tlb_mm(mm_t *mm)
{
    total_flushes++;
    for (unsigned i = 0; i < FUNC_SLOTS; i++) {
        uint64_t k = func_cache[i * 2];
        if (k != 0 && ((k - 1) & 0xFFFF) == mm->id) func_cache[i * 2] = 0;
    }
    log_flush(FLUSH_MM, mm, 0, 0, mm->task_size);
}

/* Stride 12 only: every caller here cleared PTEs. */
static void flush_tlb_range(mm_t *mm, uint64_t start, uint64_t end)
{
    if (end <= start)
        return;
    if ((end - start) >> 12 > flush_ceiling) {
        flush_tlb_mm(mm);
        return;
    }
    total_flushes++;
    for (uint64_t v = start >> 12; v < end >> 12; v++) {
        uint64_t *slot = &func_cache[(v & (FUNC_SLOTS - 1)) * 2];
        if (slot[0] == ((v << 16) | mm->id) + 1) slot[0] = 0;
    }
    log_flush(end - start == 4096 ? FLUSH_PAGE : FLUSH_RANGE, mm, 12, start, end);
}

/* contpte_convert without CONT for each folded block: the invalid window, the gathered A/D, one flush, the rewrite. */
static uint64_t x_unfold_range(mm_t *mm, uint64_t start, uint64_t end)
{
    uint64_t n = 0;
    for (uint64_t a = start; a < end; a += 0x10000) {
        uint64_t *ep = leaf_lookup(mm, a);
        if (lookup_level != 0 || (*ep & (_PAGE_PRESENT | EMU_CONT)) != (_PAGE_PRESENT | EMU_CONT))
            continue;
        uint64_t base = (ep[0] & ~(EMU_CONT | _PAGE_ACCESSED | _PAGE_DIRTY));
        for (unsigned i = 0; i < 16; i++) {
            uint64_t e = ep[i];
            ep[i] = 0;
            base |= e & (_PAGE_ACCESSED | _PAGE_DIRTY);
        }
        flush_tlb_range(mm, a, a + 0x10000);
        for (unsigned i = 0; i < 16; i++)
            ep[i] = base + ((uint64_t)i << 12);
        n++;
    }
    return n;
}

/*
 * gather.ts for the permission-change walks: tlbGatherMmu counts the pending
 * flush, tlbFlushPteRange widens the range of each changed entry, and
 * tlbFinishMmu flushes it once (the whole mm when another gather is pending,
 * mm_tlb_flush_nested). It shares the range fields of the DONTNEED gather
 * above, whose simplified begin/flush stay as they were; only PTEs are
 * changed under it, so the stride is always 12.
 */
static void tlb_gather_mmu(mm_t *mm)
{
    gather_begin();
    mm->flush_pending++;
}

static inline void tlb_flush_pte_range(uint64_t addr, uint64_t size)
{
    if (addr < gather.start) gather.start = addr;
    if (addr + size > gather.end) gather.end = addr + size;
    gather.cleared = true;
}

static void tlb_finish_mmu(mm_t *mm)
{
    bool fullmm = false;
    if (mm->flush_pending > 1) {
        fullmm = true;
        gather.cleared = true;
    }
    /* tlb_flush_mmu_tlbonly, then the batched pages (none: nothing is unmapped here). */
    if (gather.cleared) {
        if (fullmm)
            flush_tlb_mm(mm);
        else
            flush_tlb_range(mm, gather.start, gather.end);
        gather.start = UINT64_MAX;
        gather.end = 0;
        gather.cleared = false;
    }
    for (uint32_t i = 0; i < gather.nr; i++)
        folio_put(gather.pages[i]);
    gather.nr = 0;
    mm->flush_pending--;
}

/* x86_64.ts pte_needs_flush: no flush from a non-present entry; one for a new pfn or a lost RW/D/A/G. */
static bool pte_needs_flush(uint64_t old, uint64_t nw)
{
    if ((old & _PAGE_PRESENT) == 0)
        return false;
    if (leaf_pfn(old, 0) != leaf_pfn(nw, 0))
        return true;
    const uint64_t ignore = _PAGE_SPECIAL | _PAGE_UFFD_WP | _PAGE_SOFT_DIRTY | _PAGE_DEVMAP | _PAGE_SAVED_DIRTY;
    const uint64_t enable = _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_GLOBAL;
    uint64_t diff = (old ^ nw) & ~PTE_PFN_MASK & ~ignore;
    return (diff & ~enable) != 0 || (diff & old & enable) != 0;
}

/*
 * uffd.ts: contexts (features + 1 per id, 0 a free slot), registration of
 * whole anonymous VMAs, and UFFDIO_WRITEPROTECT: per VMA, uffd_wp_range's
 * gather, PROTECTION_VMA notifier records and the UffdWpOp walk.
 */
#define UFFD_MAX_CTX 4096u
#define UFFD_FEATURE_WP_UNPOPULATED (1u << 13)
#define UFFD_FEATURE_WP_ASYNC       (1u << 15)

static uint32_t uffd_ctx_features[UFFD_MAX_CTX];
static uint32_t uffd_ctx_mm[UFFD_MAX_CTX];
static uint32_t uffd_ctx_pending[UFFD_MAX_CTX];

static int32_t uffd_create(mm_t *mm, uint32_t features)
{
    for (uint32_t id = 1; id < UFFD_MAX_CTX; id++) {
        if (uffd_ctx_features[id] == 0) {
            uffd_ctx_features[id] = features + 1;
            uffd_ctx_mm[id] = mm->id;
            return (int32_t)id;
        }
    }
    return -EBUSY;
}

/* As uffd.ts reads it: a free slot (id 0 included) wraps to all features. */
static inline uint32_t uffd_features(uint32_t id) { return id < UFFD_MAX_CTX ? uffd_ctx_features[id] - 1 : 0; }
static inline uint32_t uffd_mm(uint32_t id) { return id < UFFD_MAX_CTX && uffd_ctx_features[id] != 0 ? uffd_ctx_mm[id] : 0; }
static inline bool uffd_wp_async(vma_t *vma) { return (uffd_features(vma->uffd) & UFFD_FEATURE_WP_ASYNC) != 0; }

/* userfaultfd_wp_use_markers: file VMAs always, anonymous ones with wp-unpopulated. */
static bool uffd_wp_use_markers(vma_t *vma)
{
    if ((vma->flags & VM_UFFD_WP) == 0)
        return false;
    return vma->file != 0 || (uffd_features(vma->uffd) & UFFD_FEATURE_WP_UNPOPULATED) != 0;
}

static bool vma_can_userfault(vma_t *v, uint32_t flags, uint32_t features)
{
    (void)flags; (void)features;
    if ((v->flags & VM_HUGETLB) != 0)
        return false;
    if (v->file == 0)
        return true;
    unreachable("vmaCanUserfault of a file VMA");
    return false;
}

static int32_t uffd_register_check(mm_t *mm, uint32_t id, uint64_t start, uint64_t end, uint32_t flags)
{
    uint32_t features = uffd_features(id);
    uint64_t addr = start;
    for (uint32_t i = find_vma_index(mm, start); addr < end; i++) {
        if (i >= mm->nr_vmas)
            return -EINVAL;
        vma_t *v = vma_at(mm, i);
        if (v->start > addr)
            return -EINVAL;
        if (v->uffd != 0 && v->uffd != id)
            return -EBUSY;
        if (!vma_can_userfault(v, flags, features))
            return -EINVAL;
        addr = v->end;
    }
    return 0;
}

static void uffd_register(mm_t *mm, uint32_t id, uint64_t start, uint64_t end, uint32_t flags)
{
    for (uint32_t i = find_vma_index(mm, start); i < mm->nr_vmas && vma_at(mm, i)->start < end; i++) {
        vma_t *v = vma_at(mm, i);
        v->flags = (v->flags & ~(VM_UFFD_WP | VM_UFFD_MISSING)) | flags;
        v->uffd = id;
        vma_set_page_prot(v);
    }
}

/* ops/uffdwp.ts: change_protection with MM_CP_UFFD_WP. */
typedef struct {
    bool protect;      /* MM_CP_UFFD_WP; false: MM_CP_UFFD_WP_RESOLVE */
    bool markers;      /* userfaultfd_wp_use_markers for the VMA being walked */
    bool try_writable; /* MM_CP_TRY_CHANGE_WRITABLE */
    uint64_t pages;
} uffd_wp_op;

static uffd_wp_op uffd_wp_op_instance;

/* The new value of a present entry. */
static inline uint64_t uwp_change(uffd_wp_op *op, vma_t *vma, uint64_t e)
{
    (void)vma;
    if (op->protect)
        return pte_mkuffd_wp(e);
    unreachable("UffdWpOp.change for MM_CP_UFFD_WP_RESOLVE");
    return e;
}

/*
 * mkuffdWp4 of arch/index.ts: pte_mkuffd_wp on four entries when all four
 * are present (else NOT_ALL_PRESENT and nothing changed); bits 0-3 the
 * entries changed, bits 4-7 those that were writable (x86 pte_needs_flush).
 */
#define NOT_ALL_PRESENT 0x100u

static inline unsigned mkuffd_wp_pair(uint64_t *p, u64x2 v)
{
    u64x2 n = (v | _PAGE_UFFD_WP) & ~(u64x2){_PAGE_RW, _PAGE_RW};
    i64x2 change = n != v;
    i64x2 flush = change & ((v & _PAGE_RW) != 0);
    unsigned m = (change[0] ? 1u : 0u) | (change[1] ? 2u : 0u);
    if (m) {
        u64x2 w = (n & (u64x2)change) | (v & ~(u64x2)change);
        memcpy(p, &w, sizeof w);
    }
    return m | (flush[0] ? 4u : 0u) | (flush[1] ? 8u : 0u);
}

static inline unsigned mkuffd_wp4(uint64_t *p)
{
    u64x2 v0, v1;
    memcpy(&v0, p, sizeof v0);
    memcpy(&v1, p + 2, sizeof v1);
    i64x2 pr0 = (v0 & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0, pr1 = (v1 & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0;
    if (!(pr0[0] && pr0[1] && pr1[0] && pr1[1]))
        return NOT_ALL_PRESENT;
    unsigned a = mkuffd_wp_pair(p, v0), b = mkuffd_wp_pair(p + 2, v1);
    return (a & 3) | ((b & 3) << 2) | ((a & 12) << 2) | ((b & 12) << 4);
}

/* One entry, as UffdWpOp.entry. */
static void uwp_entry(uffd_wp_op *op, vma_t *vma, uint64_t *p, uint64_t a)
{
    uint64_t e = *p;
    if (e == 0) {
        if (op->protect && op->markers)
            unreachable("UFFD_WP marker in an empty slot");
        return;
    }
    if (pte_present(e)) {
        if (uwp_change(op, vma, e) == e)
            return;
        /* contpteMm is false on x86: ptep_modify_prot_start/commit are the entry's own load and store. */
        uint64_t old = e;
        uint64_t n = uwp_change(op, vma, old);
        *p = n;
        op->pages++;
        if (pte_needs_flush(old, n))
            tlb_flush_pte_range(a, 4096);
        return;
    }
    if (!is_swap_pte(e))
        return;
    unreachable("uffd-wp of a swap entry or marker");
}

static int32_t uwp_pte_range(uffd_wp_op *op, uint64_t *ptep, uint64_t addr, uint64_t end)
{
    vma_t *vma = walk_vma;
    const bool bulk = op->protect;   /* && !contpteMm: always on x86 */
    uint64_t *last = ptep + ((end - addr) >> 12);
    for (uint64_t *p = ptep; p < last;) {
        uint64_t a = addr + ((uint64_t)(p - ptep) << 12);
        if (bulk && p + 4 <= last) {
            unsigned r = mkuffd_wp4(p);
            if (r != NOT_ALL_PRESENT) {
                op->pages += (uint64_t)__builtin_popcount(r & 15);
                unsigned f = r >> 4;
                if (f != 0)
                    tlb_flush_pte_range(a + ((uint64_t)__builtin_ctz(f) << 12), (uint64_t)(32 - __builtin_clz(f) - __builtin_ctz(f)) << 12);
                p += 4;
                continue;
            }
        }
        uwp_entry(op, vma, p, a);
        p++;
    }
    return 0;
}

static int32_t uwp_upper_entry(uffd_wp_op *op, uint32_t level, uint64_t *ep, uint64_t addr, uint64_t next)
{
    (void)op;
    if (!is_upper_leaf(*ep))
        return 0;
    if (level != 1 || ((addr & (PMD_SIZE - 1)) == 0 && next - addr == PMD_SIZE))
        unreachable("change_huge_pmd with uffd-wp");
    return 0; /* a leaf the range cuts: SUBTREE, the walker splits it */
}

static int32_t uwp_hole(uffd_wp_op *op, uint64_t addr, uint64_t next, int32_t depth)
{
    (void)addr; (void)next;
    if (depth < 0 || !op->protect || !op->markers)
        return 0;
    unreachable("fillMarkers");
    return 0;
}

static inline int32_t uwp_test_walk(uffd_wp_op *op, vma_t *vma)
{
    (void)op; (void)vma;
    return 0;
}
static inline int32_t uwp_pre_vma(uffd_wp_op *op, vma_t *vma, uint64_t start, uint64_t end)
{
    (void)op; (void)vma; (void)start; (void)end;
    return 0;
}
static inline void uwp_post_vma(uffd_wp_op *op, vma_t *vma, uint64_t start, uint64_t end)
{
    (void)op; (void)vma; (void)start; (void)end;
}

DEFINE_WALK_LEVEL(uwp, uffd_wp_op)
DEFINE_WALK_PAGE_RANGE(uwp, uffd_wp_op)

/* uffd_wp_range over one VMA's part: change_protection with one notifier range; the gather flushes at its end. */
static int32_t uffd_wp_range(mm_t *mm, vma_t *v, uint64_t start, uint64_t end, bool protect)
{
    uffd_wp_op *op = &uffd_wp_op_instance;
    op->protect = protect;
    op->markers = uffd_wp_use_markers(v);
    op->try_writable = !protect && wants_manual_write_upgrade(v);
    tlb_gather_mmu(mm); /* gatherBegin cannot fail here: the gather is static */
    notifier_record(0, MMU_NOTIFY_PROTECTION_VMA, mm, start, end);
    int32_t r = uwp_walk_page_range(op, mm, start, end);
    notifier_record(1, MMU_NOTIFY_PROTECTION_VMA, mm, start, end);
    tlb_finish_mmu(mm);
    return r < 0 ? r : 0;
}

/* UFFDIO_WRITEPROTECT: every VMA of [start, end) registered for write-protect with this context. */
static int32_t uffd_write_protect(mm_t *mm, uint32_t id, uint64_t start, uint64_t end, bool protect)
{
    if (id < UFFD_MAX_CTX && uffd_ctx_pending[id] != 0)
        return -EAGAIN;
    uint64_t addr = start;
    for (uint32_t i = find_vma_index(mm, start); addr < end; i++) {
        if (i >= mm->nr_vmas)
            return -ENOENT;
        vma_t *v = vma_at(mm, i);
        if (v->start > addr || (v->flags & VM_UFFD_WP) == 0 || v->uffd != id)
            return -ENOENT;
        addr = v->end;
    }
    uffd_wp_op_instance.pages = 0;
    for (uint32_t i = find_vma_index(mm, start); i < mm->nr_vmas && vma_at(mm, i)->start < end; i++) {
        vma_t *v = vma_at(mm, i);
        int32_t r = uffd_wp_range(mm, v, v->start > start ? v->start : start, v->end < end ? v->end : end, protect);
        if (r != 0)
            return r;
    }
    return 0;
}

/*
 * ops/pagemapscan.ts: PAGEMAP_SCAN as a walker op. Regions are 24-byte
 * records in a vector in the linear memory, as the API passes them.
 */
#define PAGE_IS_WPALLOWED  (1ULL << 0)
#define PAGE_IS_WRITTEN    (1ULL << 1)
#define PAGE_IS_FILE       (1ULL << 2)
#define PAGE_IS_PRESENT    (1ULL << 3)
#define PAGE_IS_SWAPPED    (1ULL << 4)
#define PAGE_IS_PFNZERO    (1ULL << 5)
#define PAGE_IS_HUGE       (1ULL << 6)
#define PAGE_IS_SOFT_DIRTY (1ULL << 7)
#define PAGE_IS_GUARD      (1ULL << 8)

#define PM_SCAN_WP_MATCHING   1u
#define PM_SCAN_CHECK_WPASYNC 2u

/* pteRange's code when the scan must stop (pages or regions exhausted). */
#define SCAN_STOP 1

typedef struct {
    uint64_t start, end, categories;
} scan_region;

typedef struct {
    uint32_t flags;
    uint64_t inverted, mask, anyof, return_mask, max_pages;
    scan_region *vec;
    uint32_t vec_len;
    uint32_t regions;
    uint64_t pages, walk_end, vma_category;
    bool need_frame;     /* FILE or PFNZERO asked for: the page's frame is needed */
    bool skip_protected; /* WRITTEN required: a present uffd-wp page is passed over on its PTE alone */
} pagemap_scan_op;

static pagemap_scan_op scan_op_instance;
static uint64_t scan_walk_end;

/* pagemap_scan_is_interesting_page. */
static inline bool scan_interesting(pagemap_scan_op *op, uint64_t categories)
{
    uint64_t c = categories ^ op->inverted;
    if ((c & op->mask) != op->mask)
        return false;
    return op->anyof == 0 || (c & op->anyof) != 0;
}

/* pagemap_scan_output: [addr, end) merged into the last region or a new one; the end actually taken. */
static uint64_t scan_output(pagemap_scan_op *op, uint64_t categories, uint64_t addr, uint64_t end)
{
    uint64_t c = categories & op->return_mask;
    if (op->max_pages != 0 && op->pages + ((end - addr) >> 12) > op->max_pages)
        end = addr + ((op->max_pages - op->pages) << 12);
    if (end <= addr)
        return addr;
    scan_region *last = op->regions > 0 ? &op->vec[op->regions - 1] : NULL;
    if (last != NULL && last->end == addr && last->categories == c) {
        last->end = end;
    } else {
        if (op->regions == op->vec_len)
            return addr;
        scan_region *r = &op->vec[op->regions];
        r->start = addr;
        r->end = end;
        r->categories = c;
        op->regions++;
    }
    op->pages += (end - addr) >> 12;
    return end;
}

/* arch/index.ts allUffdWpPresent8: all eight entries at p have x86 _PAGE_UFFD_WP and _PAGE_PRESENT (GCC vectors). */
static inline bool all_uffd_wp_present8(const uint64_t *p)
{
    u64x2 a, b, c, d;
    memcpy(&a, p, sizeof a);
    memcpy(&b, p + 2, sizeof b);
    memcpy(&c, p + 4, sizeof c);
    memcpy(&d, p + 6, sizeof d);
    u64x2 all = (a & b) & (c & d);
    i64x2 ok = (all & (_PAGE_UFFD_WP | _PAGE_PRESENT)) == (_PAGE_UFFD_WP | _PAGE_PRESENT);
    return (ok[0] & ok[1]) != 0;
}

/* pagemap_page_category for one PTE (the VMA's categories aside); FILE and PFNZERO only when asked for. */
static inline uint64_t page_category(uint64_t e, bool need_frame)
{
    if (e == 0)
        return 0;
    uint64_t c = 0;
    if (pte_present(e)) {
        c |= PAGE_IS_PRESENT;
        if (!pte_uffd_wp(e))
            c |= PAGE_IS_WRITTEN;
        if (need_frame) {
            uint32_t pfn = (uint32_t)leaf_pfn(e, 0);
            if (is_zero_pfn(pfn))
                c |= PAGE_IS_PFNZERO;
            else if (!pte_special(e) && !test_flag(folio_head(pfn), PG_ANON))
                c |= PAGE_IS_FILE;
        }
        if (pte_soft_dirty(e))
            c |= PAGE_IS_SOFT_DIRTY;
        return c;
    }
    if (!is_swap_pte(e))
        return 0;
    unreachable("pagemap category of a swap entry or marker");
    return 0;
}

/* make_uffd_wp_pte. */
static void scan_protect(uint64_t a, uint64_t *p, uint64_t e, bool markers)
{
    if (e == 0) {
        if (markers)
            unreachable("UFFD_WP marker in an empty slot");
    } else if (pte_present(e)) {
        if (pte_uffd_wp(e))
            return;
        /* contpteMm is false on x86: the entry's own load and store. */
        uint64_t old = e;
        uint64_t n = pte_mkuffd_wp(old);
        *p = n;
        if (pte_needs_flush(old, n))
            tlb_flush_pte_range(a, 4096);
    } else if (is_swap_pte(e) && swp_type(e) < MAX_SWAPFILES) {
        unreachable("uffd-wp of a swap entry");
    }
}

static int32_t scan_pte_range(pagemap_scan_op *op, uint64_t *ptep, uint64_t addr, uint64_t end)
{
    vma_t *vma = walk_vma;
    const bool wp = (op->flags & PM_SCAN_WP_MATCHING) != 0;
    const bool markers = uffd_wp_use_markers(vma);
    const bool skip_protected = op->skip_protected, need_frame = op->need_frame;
    uint64_t a = addr, *p = ptep;
    while (a < end) {
        /* Eight protected pages at a time, the usual case of a tracking scan. */
        if (skip_protected && a + 32768 <= end && all_uffd_wp_present8(p)) {
            a += 32768;
            p += 8;
            continue;
        }
        uint64_t e = *p;
        if (!skip_protected || !pte_uffd_wp(e) || !pte_present(e)) {
            uint64_t categories = op->vma_category | page_category(e, need_frame);
            if (scan_interesting(op, categories)) {
                if (scan_output(op, categories, a, a + 4096) == a) {
                    op->walk_end = a;
                    return SCAN_STOP;
                }
                if (wp)
                    scan_protect(a, p, e, markers);
            }
        }
        a += 4096;
        p++;
    }
    return 0;
}

static int32_t scan_upper_entry(pagemap_scan_op *op, uint32_t level, uint64_t *ep, uint64_t addr, uint64_t next)
{
    (void)op; (void)addr; (void)next;
    if (!is_upper_leaf(*ep))
        return 0;
    if (level != 1) {
        set_walk_action(ACTION_CONTINUE);
        return 0;
    }
    unreachable("PAGEMAP_SCAN of a huge PMD");
    return 0;
}

/* pagemap_scan_pte_hole. */
static int32_t scan_hole(pagemap_scan_op *op, uint64_t addr, uint64_t next, int32_t depth)
{
    (void)addr; (void)next;
    if (depth < 0 || !scan_interesting(op, op->vma_category))
        return 0;
    unreachable("pagemap_scan_pte_hole reporting a hole");
    return 0;
}

/* pagemap_scan_test_walk. */
static int32_t scan_test_walk(pagemap_scan_op *op, vma_t *vma)
{
    bool wp_allowed = uffd_wp_async(vma) && uffd_wp_use_markers(vma);
    if (!wp_allowed) {
        if ((op->flags & PM_SCAN_CHECK_WPASYNC) != 0)
            return -EPERM;
        if ((op->flags & PM_SCAN_WP_MATCHING) != 0)
            return 1;
    }
    if ((vma->flags & VM_PFNMAP) != 0)
        return 1;
    uint64_t c = 0;
    if (wp_allowed)
        c |= PAGE_IS_WPALLOWED;
    if ((vma->flags & VM_SOFTDIRTY) != 0)
        c |= PAGE_IS_SOFT_DIRTY;
    uint64_t required = op->mask & PAGE_IS_WPALLOWED;
    if (((c ^ op->inverted) & required) != required)
        return 1;
    op->vma_category = c;
    return 0;
}

static inline int32_t scan_pre_vma(pagemap_scan_op *op, vma_t *vma, uint64_t start, uint64_t end)
{
    (void)op; (void)vma; (void)start; (void)end;
    return 0;
}
static inline void scan_post_vma(pagemap_scan_op *op, vma_t *vma, uint64_t start, uint64_t end)
{
    (void)op; (void)vma; (void)start; (void)end;
}

DEFINE_WALK_LEVEL(scan, pagemap_scan_op)
DEFINE_WALK_PAGE_RANGE(scan, pagemap_scan_op)

/* do_pagemap_scan over [start, end): the regions, or -errno; scan_walk_end says where the walk stopped. */
static int32_t pagemap_scan(mm_t *mm, uint64_t start, uint64_t end, uint32_t flags, uint64_t inverted, uint64_t mask,
                            uint64_t anyof, uint64_t return_mask, uint64_t max_pages, uint32_t vec, uint32_t vec_len)
{
    pagemap_scan_op *op = &scan_op_instance;
    op->flags = flags;
    op->inverted = inverted;
    op->mask = mask;
    op->anyof = anyof;
    op->return_mask = return_mask;
    op->max_pages = max_pages;
    op->vec = (scan_region *)(mem + vec);
    op->vec_len = vec_len;
    op->regions = 0;
    op->pages = 0;
    op->walk_end = end;
    op->need_frame = ((mask | anyof | return_mask) & (PAGE_IS_FILE | PAGE_IS_PFNZERO)) != 0;
    op->skip_protected = (mask & ~inverted & PAGE_IS_WRITTEN) != 0;
    const bool wp = (flags & PM_SCAN_WP_MATCHING) != 0;
    if (wp) {
        tlb_gather_mmu(mm);
        notifier_record(0, MMU_NOTIFY_PROTECTION_VMA, mm, start, end);
    }
    int32_t r = scan_walk_page_range(op, mm, start, end);
    if (wp) {
        notifier_record(1, MMU_NOTIFY_PROTECTION_VMA, mm, start, end);
        tlb_finish_mmu(mm);
    }
    scan_walk_end = op->walk_end;
    if (r < 0)
        return r;
    return (int32_t)op->regions;
}

/* index.ts: uffdNew, uffdRegisterRange, uffdWp (result[0]: entries changed), pagemapScanRange (result[0]: walk end page). */
static int32_t x_uffd_new(uint32_t id, uint32_t features)
{
    mm_t *m = mm_by_id(id);
    return m == NULL ? -ENOENT : uffd_create(m, features);
}

static int32_t x_uffd_register_range(uint32_t ctx, double vpn, double pages, uint32_t flags)
{
    mm_t *m = mm_by_id(uffd_mm(ctx));
    if (m == NULL)
        return -EBADF;
    uint64_t start = page_addr(vpn), end = page_addr(vpn + pages);
    int32_t r = uffd_register_check(m, ctx, start, end, flags);
    if (r != 0)
        return r;
    /* splitVmasAt */
    if (!vma_reserve(m, 2))
        return -ENOMEM;
    split_at(m, start);
    split_at(m, end);
    uffd_register(m, ctx, start, end, flags);
    return 0;
}

static int32_t x_uffd_wp(uint32_t ctx, double vpn, double pages, bool protect)
{
    mm_t *m = mm_by_id(uffd_mm(ctx));
    if (m == NULL)
        return -EBADF;
    int32_t r = uffd_write_protect(m, ctx, page_addr(vpn), page_addr(vpn + pages), protect);
    result[0] = uffd_wp_op_instance.pages;
    return r;
}

static int32_t x_pagemap_scan_range(uint32_t id, double vpn, double pages, uint32_t flags, uint32_t inverted, uint32_t mask,
                                    uint32_t anyof, uint32_t ret, double max_pages, uint32_t vec, uint32_t vec_len)
{
    mm_t *m = mm_by_id(id);
    if (m == NULL)
        return -ENOENT;
    int32_t r = pagemap_scan(m, page_addr(vpn), page_addr(vpn + pages), flags, inverted, mask, anyof, ret,
                             (uint64_t)max_pages, vec, vec_len);
    result[0] = scan_walk_end >> 12;
    return r;
}

/* ==== notifier.ts: interval subscriptions and the invalidation dispatch ===
 *
 * What the device mirror uses: subscribe (mmu_interval_notifier_insert) and
 * mmuNotifierInvalidateStart/End with their record, sequence and dispatch
 * over the subscription table; a MIRROR subscription calls the mirror's
 * invalidate through the hook mirror.ts sets (setMirrorHooks). The release
 * hook (unsubscribeAll at exit) is not on the benchmark path.
 */
#define EFAULT 14
#define ENODEV 19
#define ENOSPC 28

#define MMU_NOTIFY_CLEAR       1u
#define MMU_NOTIFY_SOFT_DIRTY  4u

#define SUB_FREE   0u
#define SUB_MIRROR 2u
#define MAX_SUBS   1024u

static uint32_t sub_kind[MAX_SUBS];
static uint32_t sub_mm[MAX_SUBS];
static uint32_t sub_owner[MAX_SUBS];
static uint64_t sub_start[MAX_SUBS];
static uint64_t sub_end[MAX_SUBS];
static uint64_t sub_seq[MAX_SUBS];
static uint64_t sub_invalidations[MAX_SUBS];
static uint32_t subs_high = 1; /* one past the highest slot ever used: the dispatch loop stops there */

static void mirror_invalidate_noop(uint32_t o, uint32_t e, uint64_t s, uint64_t n)
{
    (void)o; (void)e; (void)s; (void)n;
}
/* An indirect call, as the core's hook variable is. */
static void (*mirror_invalidate_hook)(uint32_t owner, uint32_t event, uint64_t start, uint64_t end) = mirror_invalidate_noop;

static void set_mirror_hooks(void (*invalidate)(uint32_t, uint32_t, uint64_t, uint64_t))
{
    mirror_invalidate_hook = invalidate;
}

/* mmu_interval_notifier_insert: a subscription id (from 1), or -ENOSPC. */
static int32_t subscribe(mm_t *mm, uint32_t kind, uint32_t owner, uint64_t start, uint64_t end)
{
    for (uint32_t i = 1; i < MAX_SUBS; i++) {
        if (sub_kind[i] != SUB_FREE)
            continue;
        sub_kind[i] = kind;
        sub_mm[i] = mm->id;
        sub_owner[i] = owner;
        sub_start[i] = start;
        sub_end[i] = end;
        if (mm->invalidate_seq == 0)
            mm->invalidate_seq = 2;
        sub_seq[i] = mm->active_invalidations == 0 ? mm->invalidate_seq - 1 : mm->invalidate_seq;
        sub_invalidations[i] = 0;
        if (i >= subs_high)
            subs_high = i + 1;
        mm->nr_subscriptions++;
        return (int32_t)i;
    }
    return -ENOSPC;
}

static inline bool subscription_live(uint32_t id) { return id != 0 && id < MAX_SUBS && sub_kind[id] != SUB_FREE; }

/* mmu_notifier_invalidate_range_start. */
static void mmu_notifier_invalidate_start(mm_t *mm, uint32_t event, uint64_t start, uint64_t end)
{
    notifier_record(0, event, mm, start, end);
    if (mm->nr_subscriptions == 0)
        return;
    if (mm->active_invalidations++ == 0)
        mm->invalidate_seq++; /* odd: in progress */
    const uint32_t id = mm->id;
    const uint64_t seq = mm->invalidate_seq;
    for (uint32_t i = 1; i < subs_high; i++) {
        const uint32_t kind = sub_kind[i];
        if (kind == SUB_FREE || sub_mm[i] != id)
            continue;
        if (sub_end[i] <= start || end <= sub_start[i])
            continue;
        sub_seq[i] = seq;
        sub_invalidations[i]++;
        if (kind == SUB_MIRROR)
            mirror_invalidate_hook(sub_owner[i], event, start, end);
    }
}

/* mmu_notifier_invalidate_range_end. */
static void mmu_notifier_invalidate_end(mm_t *mm, uint32_t event, uint64_t start, uint64_t end)
{
    notifier_record(1, event, mm, start, end);
    if (mm->nr_subscriptions == 0 || mm->active_invalidations == 0)
        return;
    if (--mm->active_invalidations == 0)
        mm->invalidate_seq++; /* even: quiet */
}

/* ==== mirror.ts: the seed's device mirror (hmm_pt) =======================
 *
 * A root of ((TASK_SIZE - 1) >> 39) + 1 entries (heap), directories of 512
 * 8-byte entries at shifts 30, 21, 12, each a 4 KiB heap block with a TABLE
 * frame (not charged to the mm) whose tag word counts its valid entries plus
 * the walkers inside it. Entries: VALID bit 0, WRITE bit 1, DIRTY bit 2, the
 * pfn from bit 4 (upper entries: the lower directory's frame).
 */
#define PG_DIRTY (1u << 27)

#define MIRROR_VALID     1ULL
#define MIRROR_WRITE     2ULL
#define MIRROR_DIRTY     4ULL
#define MIRROR_PFN_SHIFT 4
#define MIRROR_LEVELS    4u /* root (shift 39), 30, 21, leaf 12 */
#define MAX_MIRRORS      256u

/* @unmanaged class Mirror, field for field (usize is 32-bit: heap addresses). */
typedef struct {
    uint32_t id;
    uint32_t device;
    uint32_t mm;
    uint32_t sub;
    uint32_t root; /* heap block of root_entries entries */
    uint32_t root_entries;
    uint32_t directories;
    uint64_t valid;
    uint64_t faults;
    uint64_t cpu_faults;
    uint64_t retries;
    uint64_t backoffs;
    uint64_t invalidations;
    uint32_t fault_active;
    uint32_t backoff;
    uint64_t fault_start;
    uint64_t fault_end;
} mirror_t;

static uint32_t mirrors[MAX_MIRRORS]; /* heap addresses of Mirror records */

static mirror_t *mirror_by_id(uint32_t id)
{
    if (id == 0 || id >= MAX_MIRRORS || mirrors[id] == 0)
        return NULL;
    return (mirror_t *)(mem + mirrors[id]);
}

static inline uint64_t mirror_shift_of(uint32_t level) { return 12 + 9 * (uint64_t)level; }
static inline uint32_t mirror_entry_pfn(uint64_t e) { return (uint32_t)(e >> MIRROR_PFN_SHIFT); }
static inline uint64_t *dir_ptr(uint32_t pfn) { return (uint64_t *)(mem + ((size_t)index_of(pfn) << 12)); }
static inline void dir_ref(uint32_t pfn) { set_tag(pfn, tag_of(pfn) + 1); }

/* A mirror of mm for device `device`; its id, or -errno. */
static int32_t mirror_create(mm_t *mm, uint32_t device)
{
    uint32_t id = 1;
    while (id < MAX_MIRRORS && mirrors[id] != 0)
        id++;
    if (id == MAX_MIRRORS)
        return -ENOSPC;
    const uint32_t p = kzalloc(sizeof(mirror_t));
    if (p == 0)
        return -ENOMEM;
    mirror_t *m = (mirror_t *)(mem + p);
    m->root_entries = (uint32_t)(((mm->task_size - 1) >> mirror_shift_of(MIRROR_LEVELS - 1)) + 1);
    m->root = kzalloc(m->root_entries << 3);
    if (m->root == 0) {
        kfree(p, sizeof(mirror_t));
        return -ENOMEM;
    }
    const int32_t sub = subscribe(mm, SUB_MIRROR, id, 0, mm->task_size);
    if (sub < 0) {
        kfree(m->root, m->root_entries << 3);
        kfree(p, sizeof(mirror_t));
        return sub;
    }
    m->id = id;
    m->device = device;
    m->mm = mm->id;
    m->sub = (uint32_t)sub;
    mirrors[id] = p;
    return (int32_t)id;
}

static inline bool mirror_live(mirror_t *m) { return m->root != 0 && subscription_live(m->sub); }

/* Directory pages are table pages (pgtable.ts allocTablePage / freeTablePage), not charged to the mm. */
static uint32_t alloc_dir(mirror_t *m)
{
    const uint32_t pfn = alloc_table_page();
    if (pfn != 0)
        m->directories++;
    return pfn;
}

static void free_dir(mirror_t *m, uint32_t pfn)
{
    free_table_page(pfn);
    m->directories--;
}

/* The walk's path (root excluded): path_dir[L] the directory at level L (0 = leaf), path_slot[L] its entry in the parent. */
static uint32_t path_dir[4];
static uint64_t *path_slot[4];

/*
 * Enters the leaf directory covering addr, taking a walker reference on every
 * directory on the way; with `create`, missing ones are allocated and linked.
 * Returns the leaf's entries, or NULL (absent and not created, or out of
 * memory: the references taken are recorded, leave() drops them).
 */
static uint64_t *mirror_enter(mirror_t *m, uint64_t addr, bool create)
{
    for (uint32_t l = 0; l < MIRROR_LEVELS - 1; l++)
        path_dir[l] = 0;
    uint64_t *slot = (uint64_t *)(mem + m->root) + (addr >> mirror_shift_of(MIRROR_LEVELS - 1));
    for (int32_t l = (int32_t)MIRROR_LEVELS - 2; l >= 0; l--) {
        uint64_t e = *slot;
        if ((e & MIRROR_VALID) == 0) {
            if (!create)
                return NULL;
            const uint32_t pfn = alloc_dir(m);
            if (pfn == 0)
                return NULL;
            e = ((uint64_t)pfn << MIRROR_PFN_SHIFT) | MIRROR_VALID;
            *slot = e;
            if (l < (int32_t)MIRROR_LEVELS - 2)
                dir_ref(path_dir[l + 1]); /* a new valid entry in the parent (the root is not counted) */
        }
        const uint32_t pfn = mirror_entry_pfn(e);
        dir_ref(pfn);
        path_dir[l] = pfn;
        path_slot[l] = slot;
        slot = dir_ptr(pfn) + ((addr >> mirror_shift_of((uint32_t)l)) & 511);
    }
    return dir_ptr(path_dir[0]);
}

/* Drops the walker's references, deepest first; a directory left empty is unlinked and freed. */
static void mirror_leave(mirror_t *m)
{
    for (uint32_t l = 0; l < MIRROR_LEVELS - 1; l++) {
        const uint32_t pfn = path_dir[l];
        if (pfn == 0)
            continue;
        const uint32_t count = tag_of(pfn) - 1;
        set_tag(pfn, count);
        if (count != 0)
            continue;
        *path_slot[l] = 0;
        free_dir(m, pfn);
        if (l + 1 < MIRROR_LEVELS - 1 && path_dir[l + 1] != 0)
            set_tag(path_dir[l + 1], tag_of(path_dir[l + 1]) - 1);
    }
}

static inline uint64_t *mirror_leaf_begin(mirror_t *m, uint64_t addr) { return mirror_enter(m, addr, true); }

static void mirror_leaf_end(mirror_t *m, uint32_t added)
{
    const uint32_t dir = path_dir[0];
    if (dir != 0)
        set_tag(dir, tag_of(dir) + added);
    m->valid += added;
    mirror_leave(m);
}

/* Writes one entry (a refill of the same frame keeps the device's DIRTY); 1 if it was not valid before. */
static inline uint32_t mirror_entry(uint64_t *p, uint32_t pfn, bool write)
{
    const uint64_t old = *p;
    const uint64_t e = ((uint64_t)pfn << MIRROR_PFN_SHIFT) | MIRROR_VALID | (write ? MIRROR_WRITE : 0);
    *p = mirror_entry_pfn(old) == pfn ? e | (old & MIRROR_DIRTY) : e;
    return (old & MIRROR_VALID) == 0 ? 1 : 0;
}

/*
 * hmm_mirror_update_pt over [start, end): a DIRTY and WRITE entry first marks
 * its frame dirty; write-protection clears WRITE and DIRTY, anything else the
 * entry. Directories are visited only where they exist.
 */
static void mirror_clear_range(mirror_t *m, uint64_t start, uint64_t end, bool wrprotect)
{
    const uint64_t span = (uint64_t)m->root_entries << mirror_shift_of(MIRROR_LEVELS - 1);
    if (end > span)
        end = span;
    uint64_t a = start & ~4095ULL;
    while (a < end) {
        const uint64_t leaf_span = 1ULL << mirror_shift_of(1);
        const uint64_t next = (a + leaf_span) & ~(leaf_span - 1);
        const uint64_t stop = next < end ? next : end;
        uint64_t *leaf = mirror_enter(m, a, false);
        if (leaf != NULL) {
            const uint32_t dir = path_dir[0];
            uint32_t cleared = 0;
            for (uint64_t b = a; b < stop; b += 4096) {
                uint64_t *p = leaf + ((b >> 12) & 511);
                const uint64_t e = *p;
                if ((e & MIRROR_VALID) == 0)
                    continue;
                if ((e & (MIRROR_DIRTY | MIRROR_WRITE)) == (MIRROR_DIRTY | MIRROR_WRITE)) {
                    const uint32_t pfn = mirror_entry_pfn(e);
                    if (pfn < nr_frames)
                        set_flag(folio_head(pfn), PG_DIRTY);
                }
                if (wrprotect) {
                    *p = e & ~(MIRROR_WRITE | MIRROR_DIRTY);
                } else {
                    *p = 0;
                    cleared++;
                }
            }
            set_tag(dir, tag_of(dir) - cleared);
            m->valid -= cleared;
            mirror_leave(m);
            a = stop;
        } else {
            mirror_leave(m);
            /* Skip the whole span of the highest missing directory. */
            uint32_t l = 1;
            while (l < MIRROR_LEVELS - 1 && path_dir[l] == 0)
                l++;
            const uint64_t missing = 1ULL << mirror_shift_of(l);
            const uint64_t skip = (a + missing) & ~(missing - 1);
            a = skip > a ? skip : stop;
        }
    }
}

/* The mirror's mmu notifier callback: write-protect events clear WRITE, the others the entries. */
static void mirror_invalidate(uint32_t id, uint32_t event, uint64_t start, uint64_t end)
{
    mirror_t *m = mirror_by_id(id);
    if (m == NULL || m->root == 0)
        return;
    m->invalidations++;
    if (m->fault_active != 0 && start < m->fault_end && m->fault_start < end)
        m->backoff = 1;
    mirror_clear_range(m, start, end, event == MMU_NOTIFY_PROTECTION_PAGE || event == MMU_NOTIFY_SOFT_DIRTY);
}

/* The leaf entry for addr (0 when absent). */
static uint64_t mirror_lookup(mirror_t *m, uint64_t addr)
{
    if (m->root == 0)
        return 0;
    uint64_t e = ((uint64_t *)(mem + m->root))[addr >> mirror_shift_of(MIRROR_LEVELS - 1)];
    for (int32_t l = (int32_t)MIRROR_LEVELS - 2; l >= 0; l--) {
        if ((e & MIRROR_VALID) == 0)
            return 0;
        e = dir_ptr(mirror_entry_pfn(e))[(addr >> mirror_shift_of((uint32_t)l)) & 511];
    }
    return e;
}

/* ==== ops/mirrorfault.ts: hmm_mirror_fault ============================== */

#define VM_IO       0x4000u
#define VM_MIXEDMAP 0x10000000u

#define NEED_CPU_FAULT 1 /* stop: the CPU must fault from fail_addr */
#define BACK_OFF       2 /* stop: an invalidation overlapped; retry */

/* step.ts: nobody steps in the benchmarks (one load and branch per yield point in the core). */
static bool stepping = false;

typedef struct {
    mirror_t *mirror;
    bool write;
    uint64_t fail_addr;
} mirror_fault_op;

static mirror_fault_op mirror_fault_op_instance;

static int32_t mf_test_walk(mirror_fault_op *op, vma_t *vma)
{
    if ((vma->flags & (VM_IO | VM_PFNMAP | VM_MIXEDMAP | VM_HUGETLB)) != 0)
        return -EFAULT;
    if (op->write && (vma->flags & VM_WRITE) == 0)
        return -EACCES;
    if ((vma->flags & (VM_READ | VM_WRITE)) == 0)
        return -EFAULT;
    return 0;
}

static inline int32_t mf_pre_vma(mirror_fault_op *op, vma_t *vma, uint64_t start, uint64_t end)
{
    (void)op; (void)vma; (void)start; (void)end;
    return 0;
}
static inline void mf_post_vma(mirror_fault_op *op, vma_t *vma, uint64_t start, uint64_t end)
{
    (void)op; (void)vma; (void)start; (void)end;
}

/* A gap between VMAs is -EFAULT; a missing table inside one needs the CPU fault. */
static int32_t mf_hole(mirror_fault_op *op, uint64_t addr, uint64_t next, int32_t depth)
{
    (void)next;
    if (depth < 0)
        return -EFAULT;
    op->fail_addr = addr;
    return NEED_CPU_FAULT;
}

/* device->ops->update after a chunk: a yield point; an invalidation since the start means backing off. */
static inline int32_t mf_pushed(mirror_fault_op *op, uint64_t start, uint64_t end)
{
    (void)start; (void)end;
    if (stepping)
        unreachable("yieldStep");
    return op->mirror->backoff != 0 ? BACK_OFF : 0;
}

/* hmm_mirror_fault_hpmd: the whole PMD as 512 entries, unless a write meets a read-only one. */
static int32_t mf_upper_entry(mirror_fault_op *op, uint32_t level, uint64_t *ep, uint64_t addr, uint64_t next)
{
    (void)next;
    const uint64_t e = *ep;
    if (!is_upper_leaf(e))
        return 0;
    if (level != 1 || pte_protnone(e) || (op->write && !pte_write(e))) {
        op->fail_addr = addr;
        return NEED_CPU_FAULT;
    }
    const uint64_t haddr = addr & ~(PMD_SIZE - 1);
    uint64_t *leaf = mirror_leaf_begin(op->mirror, haddr);
    if (leaf == NULL) {
        mirror_leaf_end(op->mirror, 0);
        return -ENOMEM;
    }
    const uint32_t pfn = (uint32_t)leaf_pfn(e, 1);
    const bool w = pte_write(e);
    uint32_t added = 0;
    for (uint32_t i = 0; i < 512; i++)
        added += mirror_entry(leaf + i, pfn + i, w);
    mirror_leaf_end(op->mirror, added);
    set_walk_action(ACTION_CONTINUE);
    return mf_pushed(op, haddr, haddr + PMD_SIZE);
}

/* PTEs in order: each present one is copied; the first the device cannot have stops the walk. */
static int32_t mf_pte_range(mirror_fault_op *op, uint64_t *ptep, uint64_t addr, uint64_t end)
{
    uint64_t *leaf = mirror_leaf_begin(op->mirror, addr);
    if (leaf == NULL) {
        mirror_leaf_end(op->mirror, 0);
        return -ENOMEM;
    }
    const bool write = op->write;
    uint32_t added = 0;
    int32_t r = 0;
    uint64_t a = addr, *p = ptep, *m = leaf + ((addr >> 12) & 511);
    for (; a < end; a += 4096, p++, m++) {
        const uint64_t e = *p;
        if (!pte_present(e) || pte_protnone(e) || (write && !pte_write(e))) {
            op->fail_addr = a;
            r = NEED_CPU_FAULT;
            break;
        }
        added += mirror_entry(m, (uint32_t)leaf_pfn(e, 0), pte_write(e));
    }
    mirror_leaf_end(op->mirror, added);
    if (a > addr) {
        const int32_t b = mf_pushed(op, addr, a);
        if (b != 0)
            return b;
    }
    return r;
}

DEFINE_WALK_LEVEL(mf, mirror_fault_op)
DEFINE_WALK_PAGE_RANGE(mf, mirror_fault_op)

/* hmm_mirror_fault over [start, end) with the driver's retry loop; 0 or -errno. */
static int32_t mirror_fault(mirror_t *m, uint64_t start, uint64_t end, bool write)
{
    if (!mirror_live(m))
        return -ENODEV;
    mm_t *mm = mm_by_id(m->mm);
    start &= ~4095ULL;
    end = (end + 4095) & ~4095ULL;
    if (end > mm->task_size)
        end = mm->task_size;
    if (start >= end)
        return -EINVAL;
    m->faults++;
    mirror_fault_op *op = &mirror_fault_op_instance;
    op->mirror = m;
    op->write = write;
    uint64_t addr = start;
    for (;;) {
        m->fault_active = 1;
        m->backoff = 0;
        m->fault_start = addr;
        m->fault_end = end;
        const int32_t r = mf_walk_page_range(op, mm, addr, end);
        m->fault_active = 0;
        if (r == BACK_OFF) {
            m->backoffs++;
            m->retries++;
            continue;
        }
        if (r <= 0)
            return r;
        /* -ENOENT: the CPU faults from fail_addr to the end (hmm_mm_fault), then the device fault retries. */
        unreachable("mirrorFault: CPU faults for the device (the benchmark range is fully populated)");
    }
}

/* index.ts: mirrorNew, mirrorFaultRange, kInvalidateRange. */
static int32_t x_mirror_new(uint32_t id, uint32_t device)
{
    mm_t *m = mm_by_id(id);
    return m == NULL ? -ENOENT : mirror_create(m, device);
}

static int32_t x_mirror_fault_range(uint32_t id, double vpn, double pages, bool write)
{
    mirror_t *m = mirror_by_id(id);
    if (m == NULL)
        return -ENOENT;
    return mirror_fault(m, page_addr(vpn), page_addr(vpn + pages), write);
}

static int32_t x_invalidate_range(uint32_t id, double vpn, double end_vpn, uint32_t event)
{
    mm_t *m = mm_by_id(id);
    if (m == NULL)
        return -ENOENT;
    mmu_notifier_invalidate_start(m, event, page_addr(vpn), page_addr(end_vpn));
    mmu_notifier_invalidate_end(m, event, page_addr(vpn), page_addr(end_vpn));
    return 0;
}

/* Benchmark setup, untimed: every stride-th PTE gets `on` and loses `off`, the others the other way round. */
static void set_pte_bits(mm_t *mm, uint64_t start, uint64_t pages, uint64_t stride, uint64_t on, uint64_t off)
{
    for (uint64_t i = 0; i < pages; i++) {
        uint64_t *ep = leaf_lookup(mm, start + i * PAGE_SIZE);
        *ep = i % stride == 0 ? (*ep | on) & ~off : (*ep | off) & ~on;
    }
}

static uint64_t machine_memory(uint64_t pages)
{
    uint64_t wanted = (pages * PAGE_SIZE * 3 / 2 + GiB - 1) / GiB * GiB;
    uint64_t m = wanted > 8 * GiB ? wanted : 8 * GiB;
    return m < MAX_MEMORY ? m : MAX_MEMORY;
}

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

/* Whether the PTE mapping addr is writable (untimed checks). */
static uint64_t pte_writable_at(mm_t *mm, uint64_t addr)
{
    uint64_t *ep = leaf_lookup(mm, addr);
    expect(lookup_level, 0, "PTE level of a mapped page");
    return pte_write(*ep) ? 1 : 0;
}

/* Free pages counted through the buddy lists, against the allocator's counter. */
static uint64_t free_pages_listed(void)
{
    uint64_t n = 0;
    for (uint32_t o = 0; o <= MAX_ORDER; o++)
        n += (uint64_t)free_counts[o] << o;
    return n;
}

/* Keeps the walk's results observable so it cannot be optimised away. */
static volatile uint64_t sink;

/*
 * Device mirror rounds (bench/mirror.ts) over the mm's range [first, +pages):
 * a read fault of every page into the empty mirror, then an invalidation of
 * the whole range (event clear), each timed; both checked untimed.
 */
static void mirror_rounds(uint32_t mm_id, uint32_t mirror_id, uint64_t first, uint64_t pages, unsigned repeats,
                          double *t_fault, double *t_inval, const char *label)
{
    mm_t *mm = mm_by_id(mm_id);
    mirror_t *m = mirror_by_id(mirror_id);
    const double vpn = (double)(first >> PAGE_SHIFT), per_page = 1.0 / (double)pages;
    const uint64_t last = first + (pages - 1) * PAGE_SIZE;
    char what[128];
    for (unsigned r = 0; r < repeats; r++) {
        const uint32_t free_before = free_frames, heap_before = bytes_in_use;
        uint64_t t0 = now_ns();
        int32_t rc = x_mirror_fault_range(mirror_id, vpn, (double)pages, false);
        t_fault[r] = (double)(now_ns() - t0) * per_page;
        snprintf(what, sizeof what, "%s mirror fault result", label);
        expect((uint64_t)(int64_t)rc, 0, what);
        snprintf(what, sizeof what, "%s mirror valid entries", label);
        expect(m->valid, pages, what);
        snprintf(what, sizeof what, "%s mirror retries", label);
        expect(m->retries + m->cpu_faults, 0, what);
        const uint64_t ends[2] = {first, last};
        for (unsigned k = 0; k < 2; k++) {
            const uint64_t e = *leaf_lookup(mm, ends[k]);
            const uint64_t pfn = lookup_level == 1 ? leaf_pfn(e, 1) + ((ends[k] >> 12) & 511) : leaf_pfn(e, 0);
            snprintf(what, sizeof what, "%s mirror entry at the ends", label);
            expect(mirror_lookup(m, ends[k]), (pfn << MIRROR_PFN_SHIFT) | MIRROR_VALID | MIRROR_WRITE, what);
        }
        /* The seed's count: one per valid entry, the walkers gone. */
        const uint64_t leaves = (last >> 21) - (first >> 21) + 1, mids = (last >> 30) - (first >> 30) + 1,
                       tops = (last >> 39) - (first >> 39) + 1;
        snprintf(what, sizeof what, "%s mirror directories", label);
        expect(m->directories, leaves + mids + tops, what);
        snprintf(what, sizeof what, "%s mirror leaf count", label);
        expect(tag_of(path_dir[0]), ((last >> 12) & 511) + 1 - (leaves == 1 ? (first >> 12) & 511 : 0), what);

        const uint64_t inval_before = m->invalidations;
        t0 = now_ns();
        rc = x_invalidate_range(mm_id, vpn, vpn + (double)pages, MMU_NOTIFY_CLEAR);
        t_inval[r] = (double)(now_ns() - t0) * per_page;
        snprintf(what, sizeof what, "%s invalidation result", label);
        expect((uint64_t)(int64_t)rc, 0, what);
        snprintf(what, sizeof what, "%s invalidations", label);
        expect(m->invalidations - inval_before, 1, what);
        snprintf(what, sizeof what, "%s entries after invalidation", label);
        expect(m->valid, 0, what);
        snprintf(what, sizeof what, "%s directories after invalidation", label);
        expect(m->directories, 0, what);
        snprintf(what, sizeof what, "%s entries at the ends after invalidation", label);
        expect(mirror_lookup(m, first) | mirror_lookup(m, last), 0, what);
        /* Every directory frame and heap block is back. */
        snprintf(what, sizeof what, "%s free frames after invalidation", label);
        expect(free_frames, free_before, what);
        snprintf(what, sizeof what, "%s heap after invalidation", label);
        expect(bytes_in_use, heap_before, what);
        expect(free_pages_listed(), free_frames, "free frames on the buddy lists");
    }
    sink += notifier_count;
}

int main(int argc, char **argv)
{
    unsigned long long pages_arg, repeats_arg;
    /* The range must fit below TASK_SIZE and 1.5x of it in the machine's memory. */
    unsigned long long max_pages = (TASK_SIZE - RANGE_START) >> PAGE_SHIFT;
    if (max_pages > MAX_MEMORY / PAGE_SIZE * 2 / 3)
        max_pages = MAX_MEMORY / PAGE_SIZE * 2 / 3;
    if (argc != 3 || !parse_positive(argv[1], max_pages, &pages_arg) ||
        !parse_positive(argv[2], 100000, &repeats_arg)) {
        fprintf(stderr, "usage: native <pages 1..%llu> <repeats 1..100000>\n", max_pages);
        return 64;
    }
    const uint64_t pages = pages_arg;
    const unsigned repeats = (unsigned)repeats_arg;

    /* Machine.create({ memory, thp: 'never' }) with the other defaults: swap = memory, fault-around 64 KiB. */
    memory_reserve();
    const uint64_t memory = machine_memory(pages);
    if (x_init((uint32_t)(memory / PAGE_SIZE), (uint32_t)(memory / PAGE_SIZE), true, THP_NEVER, true, 16) < 0)
        die("cannot hold the frame descriptors in the linear memory");
    /* machine.spawn() and proc.mmap({ length, prot: 'rw' }), placed at RANGE_START. */
    const int32_t id = x_mm_new(4, (double)(TASK_SIZE >> PAGE_SHIFT));
    if (id < 0)
        die("cannot create the mm");
    mm_t *const mm = mm_by_id((uint32_t)id);
    const double vpn = (double)(RANGE_START >> PAGE_SHIFT);
    if (x_mmap((uint32_t)id, vpn, (double)pages, VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC) != 0)
        die("mmap failed");

    const uint64_t first = RANGE_START, last = RANGE_START + (pages - 1) * PAGE_SIZE;
    const uint32_t tables_before = mm->nr_tables;
    const uint32_t free_before = free_frames;

    double *t_fault = malloc(repeats * sizeof(double));
    double *t_ro = malloc(repeats * sizeof(double));
    double *t_rw = malloc(repeats * sizeof(double));
    double *t_walk = malloc(repeats * sizeof(double));
    double *t_zap = malloc(repeats * sizeof(double));
    if (!t_fault || !t_ro || !t_rw || !t_walk || !t_zap)
        die("cannot allocate timing buffers");

    const double per_page = 1.0 / (double)pages;

    /*
     * fault-in and dontneed bracket each round, so every round starts from
     * an empty range. Only the first round allocates page tables (they are
     * kept by dontneed); the median discounts that round.
     */
    for (unsigned r = 0; r < repeats; r++) {
        uint64_t t0, before;
        int32_t rc;

        before = mm->min_flt;
        t0 = now_ns();
        rc = x_touch((uint32_t)id, vpn, (double)pages, ACCESS_WRITE, 0);
        t_fault[r] = (double)(now_ns() - t0) * per_page;
        expect((uint64_t)(int64_t)rc, ACCESS_OK, "faultIn result");
        expect(result[0], pages, "faultIn pages touched");
        expect(mm->min_flt - before, pages, "faultIn minor faults");
        expect((uint64_t)mm->rss[MM_ANONPAGES], pages, "faultIn anon rss");

        before = change_prot_op_instance.pages;
        t0 = now_ns();
        rc = x_mprotect((uint32_t)id, vpn, (double)pages, VM_READ);
        t_ro[r] = (double)(now_ns() - t0) * per_page;
        expect((uint64_t)(int64_t)rc, 0, "mprotect RO result");
        expect(change_prot_op_instance.pages - before, pages, "mprotect RO changed");
        expect(pte_writable_at(mm, first) + pte_writable_at(mm, last), 0, "mprotect RO writable PTEs at the ends");

        before = change_prot_op_instance.pages;
        t0 = now_ns();
        rc = x_mprotect((uint32_t)id, vpn, (double)pages, VM_READ | VM_WRITE);
        t_rw[r] = (double)(now_ns() - t0) * per_page;
        expect((uint64_t)(int64_t)rc, 0, "mprotect RW result");
        expect(change_prot_op_instance.pages - before, pages, "mprotect RW changed");
        expect(pte_writable_at(mm, first) + pte_writable_at(mm, last), 2, "mprotect RW writable PTEs at the ends");

        t0 = now_ns();
        x_walk_stats((uint32_t)id, vpn, (double)pages);
        t_walk[r] = (double)(now_ns() - t0) * per_page;
        expect(result[0], pages, "walk present");
        expect(result[1] + result[2] + result[3] + result[4], 0, "walk non-PTE entries");
        sink += result[5];

        before = zap_op_instance.zapped;
        t0 = now_ns();
        rc = x_madvise((uint32_t)id, vpn, (double)pages, EMU_MADV_DONTNEED);
        t_zap[r] = (double)(now_ns() - t0) * per_page;
        expect((uint64_t)(int64_t)rc, 0, "dontneed result");
        expect(zap_op_instance.zapped - before, pages, "dontneed zapped");
        expect((uint64_t)mm->rss[MM_ANONPAGES], 0, "dontneed anon rss");
        /* Every frame but the page tables the first round added is back with the buddy allocator. */
        expect(free_frames, free_before - (mm->nr_tables - tables_before), "free frames after dontneed");
        expect(free_pages_listed(), free_frames, "free frames on the buddy lists");
        x_walk_stats((uint32_t)id, vpn, (double)pages);
        expect(result[0], 0, "walk present after dontneed");
    }

    /* fork of the written range; the child's pages are zapped untimed (its tables stay, as no exit_mmap is ported). */
    double *t_fork = malloc(repeats * sizeof(double));
    if (!t_fork)
        die("cannot allocate timing buffers");
    expect((uint64_t)(int64_t)x_touch((uint32_t)id, vpn, (double)pages, ACCESS_WRITE, 0), ACCESS_OK, "fork: fault-in");
    for (unsigned r = 0; r < repeats; r++) {
        uint64_t t0 = now_ns();
        int32_t child = x_fork((uint32_t)id);
        t_fork[r] = (double)(now_ns() - t0) * per_page;
        if (child < 0)
            die("fork failed");
        expect((uint64_t)mm_by_id((uint32_t)child)->rss[MM_ANONPAGES], pages, "fork: child anon rss");
        expect(refcount_of((uint32_t)leaf_pfn(*leaf_lookup(mm, first), 0)), 2, "fork: first page shared");
        expect((uint64_t)(int64_t)x_madvise((uint32_t)child, vpn, (double)pages, EMU_MADV_DONTNEED), 0, "fork: child zap");
    }

    /*
     * Dirty tracking over the written range, marked shared writable (the PTE
     * bits of shared and private written pages are the same): write-protect
     * and clean-and-record with 1% and 100% of the PTEs writable / dirty.
     */
    vma_t *dv = vma_at(mm, find_vma_index(mm, first));
    dv->flags |= VM_SHARED | VM_MAYSHARE;
    uint8_t *bitmap = calloc((pages + 63) / 64 + 1, 8);
    double *t_dirty[4];
    for (unsigned k = 0; k < 4; k++)
        if (!(t_dirty[k] = malloc(repeats * sizeof(double))))
            die("cannot allocate timing buffers");
    const uint64_t strides[2] = {100, 1};
    for (unsigned r = 0; r < repeats; r++) {
        for (unsigned k = 0; k < 2; k++) {
            const uint64_t want = (pages + strides[k] - 1) / strides[k];
            set_pte_bit(mm, first, pages, strides[k], _PAGE_RW);
            uint64_t t0 = now_ns();
            uint64_t n = x_write_protect(mm, first, first + pages * PAGE_SIZE);
            t_dirty[k][r] = (double)(now_ns() - t0) * per_page;
            expect(n, want, "writeProtect count");
            set_pte_bit(mm, first, pages, strides[k], _PAGE_DIRTY);
            memset(bitmap, 0, ((pages + 63) / 64 + 1) * 8);
            t0 = now_ns();
            n = x_clean_record(mm, first, first + pages * PAGE_SIZE, bitmap);
            t_dirty[2 + k][r] = (double)(now_ns() - t0) * per_page;
            expect(n, want, "cleanRecord count");
            expect(bitmap[0] & 1, 1, "cleanRecord bit 0");
        }
    }
    sink += cache_flushes + flushed_pages + notifier_count;

    /*
     * Contiguous blocks: every aligned block remapped onto a 64 KiB folio of
     * its own, as mTHP faults leave them (untimed; the peer's accounting is
     * not kept for these frames), marked folded; then census, unfold all.
     */
    for (uint64_t b = 0; b < pages; b += 16) {
        uint32_t f = alloc_folio(4);
        if (f == 0)
            die("no 64 KiB folios for the contiguous-block benchmark");
        uint64_t *ep = leaf_lookup(mm, first + b * PAGE_SIZE);
        for (unsigned i = 0; i < 16; i++)
            ep[i] = (ep[i] & ~PTE_PFN_MASK) | (((uint64_t)f + i) << 12);
    }
    double *t_scan = malloc(repeats * sizeof(double)), *t_unfold = malloc(repeats * sizeof(double));
    if (!t_scan || !t_unfold)
        die("cannot allocate timing buffers");
    for (unsigned r = 0; r < repeats; r++) {
        set_pte_bit(mm, first, pages, 1, EMU_CONT);
        memset(&cont_scan_instance, 0, sizeof cont_scan_instance);
        uint64_t t0 = now_ns();
        cs_walk_page_range(&cont_scan_instance, mm, first, first + pages * PAGE_SIZE);
        t_scan[r] = (double)(now_ns() - t0) * per_page;
        expect(cont_scan_instance.folded, pages / 16, "contScan folded");
        t0 = now_ns();
        uint64_t n = x_unfold_range(mm, first, first + pages * PAGE_SIZE);
        t_unfold[r] = (double)(now_ns() - t0) * per_page;
        expect(n, pages / 16, "unfold blocks");
        flush_log_count = 0;
    }
    sink += total_flushes;

    /*
     * userfaultfd write-protect tracking (bench/uffd.ts) over the same
     * range, a private anonymous VMA again (the dirty section marked it
     * shared) with ordinary x86 entries (bit 52 cleared; the pfns stay on
     * the contiguous section's folios, which neither op looks at).
     * uffdProtect: UFFDIO_WRITEPROTECT of every page, each present and
     * writable, with a context without wp-unpopulated (no markers).
     */
    dv = vma_at(mm, find_vma_index(mm, first));
    dv->flags &= ~(VM_SHARED | VM_MAYSHARE);
    vma_set_page_prot(dv);
    set_pte_bits(mm, first, pages, 1, 0, EMU_CONT);
    const int32_t sync_ctx = x_uffd_new((uint32_t)id, 0);
    if (sync_ctx < 0 || x_uffd_register_range((uint32_t)sync_ctx, vpn, (double)pages, VM_UFFD_WP) != 0)
        die("cannot register the range for userfaultfd write-protect");
    double *t_uffd = malloc(repeats * sizeof(double)), *t_scan_w = malloc(repeats * sizeof(double));
    if (!t_uffd || !t_scan_w)
        die("cannot allocate timing buffers");
    for (unsigned r = 0; r < repeats; r++) {
        set_pte_bits(mm, first, pages, 1, _PAGE_RW, _PAGE_UFFD_WP);
        uint64_t flushes = total_flushes;
        uint64_t t0 = now_ns();
        int32_t rc = x_uffd_wp((uint32_t)sync_ctx, vpn, (double)pages, true);
        t_uffd[r] = (double)(now_ns() - t0) * per_page;
        expect((uint64_t)(int64_t)rc, 0, "uffd writeProtect result");
        expect(result[0], pages, "uffd writeProtect changed");
        expect(total_flushes - flushes, 1, "uffd writeProtect flushes");
        uint64_t ends = *leaf_lookup(mm, first) & *leaf_lookup(mm, last);
        expect((ends & (_PAGE_UFFD_WP | _PAGE_RW)) == _PAGE_UFFD_WP, 1, "uffd writeProtect PTEs at the ends");
        flush_log_count = 0;
    }

    /*
     * scanWritten1: PAGEMAP_SCAN with WP_MATCHING for WRITTEN, as a process
     * tracks its own writes: the range handed to an async context with
     * wp-unpopulated (the sync one's registration dropped untimed without
     * the resolve walk: every round rewrites the bits anyway), every 100th
     * page written since the last scan (uffd-wp gone, writable, as the async
     * fault leaves it), the others still protected.
     */
    dv = vma_at(mm, find_vma_index(mm, first));
    dv->flags &= ~(VM_UFFD_WP | VM_UFFD_MISSING);
    dv->uffd = 0;
    const int32_t tracker = x_uffd_new((uint32_t)id, UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED);
    if (tracker < 0 || x_uffd_register_range((uint32_t)tracker, vpn, (double)pages, VM_UFFD_WP) != 0)
        die("cannot register the range with the async userfaultfd");
    const uint64_t written = (pages + 99) / 100;
    const uint32_t vec = kmalloc((uint32_t)(written * sizeof(scan_region)));
    if (vec == 0)
        die("no memory for the scan's regions");
    const scan_region *regions = (const scan_region *)(mem + vec);
    for (unsigned r = 0; r < repeats; r++) {
        set_pte_bits(mm, first, pages, 100, _PAGE_RW, _PAGE_UFFD_WP);
        uint64_t t0 = now_ns();
        int32_t n = x_pagemap_scan_range((uint32_t)id, vpn, (double)pages, PM_SCAN_WP_MATCHING, 0, PAGE_IS_WRITTEN, 0,
                                         PAGE_IS_WRITTEN, 0, vec, (uint32_t)written);
        t_scan_w[r] = (double)(now_ns() - t0) * per_page;
        expect((uint64_t)(int64_t)n, written, "pagemapScan regions");
        expect(result[0], (first >> 12) + pages, "pagemapScan walk end");
        expect(regions[0].start, first, "pagemapScan region 0 start");
        expect(regions[0].end, first + PAGE_SIZE, "pagemapScan region 0 end");
        expect(regions[0].categories, PAGE_IS_WRITTEN, "pagemapScan region 0 categories");
        expect(regions[written - 1].start, first + (written - 1) * 100 * PAGE_SIZE, "pagemapScan last region start");
        for (uint64_t i = 0; i < pages; i += 100)
            expect((*leaf_lookup(mm, first + i * PAGE_SIZE) & (_PAGE_UFFD_WP | _PAGE_RW)) == _PAGE_UFFD_WP, 1,
                   "pagemapScan written page protected again");
        flush_log_count = 0;
    }
    kfree(vec, (uint32_t)(written * sizeof(scan_region)));
    sink += total_flushes + notifier_count;

    /*
     * Device mirror (bench/mirror.ts), 4K: the written range as ordinary
     * written anonymous memory again (writable, dirty, no uffd-wp, the async
     * context's registration dropped untimed; the pfns stay on the contiguous
     * section's folios, which only the mirror entries' pfns see), mirrored
     * for one device: a read fault of every page into the empty mirror, then
     * an mmu-notifier invalidation of the whole range (event clear) that
     * clears every entry and prunes every directory.
     */
    dv = vma_at(mm, find_vma_index(mm, first));
    dv->flags &= ~(VM_UFFD_WP | VM_UFFD_MISSING);
    dv->uffd = 0;
    set_pte_bits(mm, first, pages, 1, _PAGE_RW | _PAGE_DIRTY, _PAGE_UFFD_WP);
    set_mirror_hooks(mirror_invalidate);
    double *t_mf = malloc(repeats * sizeof(double)), *t_mi = malloc(repeats * sizeof(double));
    double *t_mf_thp = malloc(repeats * sizeof(double)), *t_mi_thp = malloc(repeats * sizeof(double));
    if (!t_mf || !t_mi || !t_mf_thp || !t_mi_thp)
        die("cannot allocate timing buffers");
    const int32_t mirror4k = x_mirror_new((uint32_t)id, 1);
    if (mirror4k < 0)
        die("cannot create the 4K mirror");
    mirror_rounds((uint32_t)id, (uint32_t)mirror4k, first, pages, repeats, t_mf, t_mi, "4K");

    /*
     * THP: this port has no THP fault path, so the PMD leaves are built
     * untimed in a fresh mm with the same VMA, as a THP write fault leaves
     * them: per aligned 2 MiB of the range an order-9 folio (refcount 1,
     * anon, counted in rss) under a huge PMD entry (x86: PSE, present, RW,
     * user, accessed, dirty); a tail short of 2 MiB is faulted in as 4 KiB
     * pages. The mirror walk sees each leaf in upperEntry (ACTION_CONTINUE)
     * and fills its 2 MiB as 512 entries.
     */
    const int32_t thp_id = x_mm_new(4, (double)(TASK_SIZE >> PAGE_SHIFT));
    if (thp_id < 0)
        die("cannot create the THP mm");
    mm_t *const thp_mm = mm_by_id((uint32_t)thp_id);
    if (x_mmap((uint32_t)thp_id, vpn, (double)pages, VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC) != 0)
        die("THP mmap failed");
    anon_vma_prepare(vma_at(thp_mm, find_vma_index(thp_mm, first)));
    const uint64_t huge_pages = pages & ~511ULL;
    for (uint64_t p = 0; p < huge_pages; p += 512) {
        uint64_t *pmdp = pmd_offset_alloc(thp_mm, first + p * PAGE_SIZE);
        if (pmdp == NULL)
            die("no page tables for the THP range");
        const uint32_t f = alloc_folio(9);
        if (f == 0)
            die("no 2 MiB folios for the THP mirror benchmark");
        set_flag(f, PG_ANON | PG_SWAPBACKED | PG_LRU);
        *pmdp = ((uint64_t)f << 12) | _PAGE_PSE | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY;
        add_rss(thp_mm, MM_ANONPAGES, 512);
    }
    if (huge_pages < pages)
        expect((uint64_t)(int64_t)x_touch((uint32_t)thp_id, vpn + (double)huge_pages, (double)(pages - huge_pages),
                                          ACCESS_WRITE, 0), ACCESS_OK, "THP: tail fault-in");
    expect((uint64_t)thp_mm->rss[MM_ANONPAGES], pages, "THP: anon rss");
    x_walk_stats((uint32_t)thp_id, vpn, (double)pages);
    expect(result[3], huge_pages / 512, "THP: PMD leaves walked");
    expect(result[0], pages - huge_pages, "THP: PTEs walked");
    const int32_t mirror_thp = x_mirror_new((uint32_t)thp_id, 1);
    if (mirror_thp < 0)
        die("cannot create the THP mirror");
    mirror_rounds((uint32_t)thp_id, (uint32_t)mirror_thp, first, pages, repeats, t_mf_thp, t_mi_thp, "THP");

    double mprotect = (median(t_ro, repeats) + median(t_rw, repeats)) / 2.0;
    printf("{\"pages\":%llu,\"faultIn\":%.3f,\"mprotect\":%.3f,\"dontneed\":%.3f,\"walk\":%.3f,\"fork\":%.3f,"
           "\"wp1\":%.3f,\"wp100\":%.3f,\"clean1\":%.3f,\"clean100\":%.3f,\"contScan\":%.3f,\"contUnfold\":%.3f,"
           "\"uffdProtect\":%.3f,\"scanWritten1\":%.3f,"
           "\"mirrorFault\":%.3f,\"mirrorInvalidate\":%.3f,\"mirrorFaultThp\":%.3f,\"mirrorInvalidateThp\":%.3f}\n",
           (unsigned long long)pages, median(t_fault, repeats), mprotect,
           median(t_zap, repeats), median(t_walk, repeats), median(t_fork, repeats),
           median(t_dirty[0], repeats), median(t_dirty[1], repeats), median(t_dirty[2], repeats), median(t_dirty[3], repeats),
           median(t_scan, repeats), median(t_unfold, repeats), median(t_uffd, repeats), median(t_scan_w, repeats),
           median(t_mf, repeats), median(t_mi, repeats), median(t_mf_thp, repeats), median(t_mi_thp, repeats));
    free(t_mf);
    free(t_mi);
    free(t_mf_thp);
    free(t_mi_thp);
    free(t_uffd);
    free(t_scan_w);
    free(t_scan);
    free(t_unfold);
    for (unsigned k = 0; k < 4; k++)
        free(t_dirty[k]);
    free(bitmap);
    free(t_fork);

    free(t_fault);
    free(t_ro);
    free(t_rw);
    free(t_walk);
    free(t_zap);
    munmap(mem, (size_t)MEMORY_MAXIMUM_PAGES * WASM_PAGE);
    return 0;
}
