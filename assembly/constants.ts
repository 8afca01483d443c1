// Constants shared by the core, with the kernel's names and values.

export const PAGE_SHIFT: u64 = 12;
export const PAGE_SIZE: u64 = 4096;
export const PTRS_PER_TABLE: u32 = 512;
export const HPAGE_PMD_ORDER: u32 = 9;
export const HPAGE_PMD_NR: u32 = 512;
export const PMD_SIZE: u64 = 1 << 21;

// errno values; the core returns them negated.
export const EPERM: i32 = 1;
export const ENOENT: i32 = 2;
export const EIO: i32 = 5;
export const EBADF: i32 = 9;
export const EAGAIN: i32 = 11;
export const ENOMEM: i32 = 12;
export const EACCES: i32 = 13;
export const EFAULT: i32 = 14;
export const EBUSY: i32 = 16;
export const EEXIST: i32 = 17;
export const EINVAL: i32 = 22;
export const ENODEV: i32 = 19;
export const ENOSPC: i32 = 28;

// vm_flags (include/linux/mm.h).
export const VM_READ: u32 = 0x1;
export const VM_WRITE: u32 = 0x2;
export const VM_EXEC: u32 = 0x4;
export const VM_SHARED: u32 = 0x8;
export const VM_MAYREAD: u32 = 0x10;
export const VM_MAYWRITE: u32 = 0x20;
export const VM_MAYEXEC: u32 = 0x40;
export const VM_MAYSHARE: u32 = 0x80;
export const VM_UFFD_MISSING: u32 = 0x200;
export const VM_PFNMAP: u32 = 0x400;
export const VM_UFFD_WP: u32 = 0x1000;
export const VM_LOCKED: u32 = 0x2000;
export const VM_IO: u32 = 0x4000;
export const VM_DONTCOPY: u32 = 0x20000;
export const VM_HUGETLB: u32 = 0x400000;
export const VM_SOFTDIRTY: u32 = 0x8000000;
export const VM_MIXEDMAP: u32 = 0x10000000;
export const VM_HUGEPAGE: u32 = 0x20000000;
export const VM_NOHUGEPAGE: u32 = 0x40000000;
export const VM_ACCESS_FLAGS: u32 = VM_READ | VM_WRITE | VM_EXEC;

// vm_fault_t bits.
export const VM_FAULT_OOM: u32 = 0x1;
export const VM_FAULT_SIGBUS: u32 = 0x2;
export const VM_FAULT_MAJOR: u32 = 0x4;
export const VM_FAULT_HWPOISON: u32 = 0x10;
export const VM_FAULT_SIGSEGV: u32 = 0x40;
export const VM_FAULT_NOPAGE: u32 = 0x100;
export const VM_FAULT_RETRY: u32 = 0x400;
export const VM_FAULT_FALLBACK: u32 = 0x800;
/**
 * ptemu's own bit: the faulting task now waits (on a page-table lock held by
 * an interrupted operation, in ->page_mkwrite). Nothing changed; the access
 * did not happen and is reported as blocked.
 */
export const VM_FAULT_BLOCKED: u32 = 0x100000;
export const VM_FAULT_ERROR: u32 = VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON;

// fault flags.
export const FAULT_FLAG_WRITE: u32 = 0x1;
/** The faulting context can wait and retry: CPU faults and GUP. hmm's faults lack it, so a userfaultfd fails them. */
export const FAULT_FLAG_ALLOW_RETRY: u32 = 0x4;
export const FAULT_FLAG_INSTRUCTION: u32 = 0x100;
export const FAULT_FLAG_UNSHARE: u32 = 0x400;

// mm rss counters (enum in include/linux/mm_types_task.h).
export const MM_FILEPAGES: u32 = 0;
export const MM_ANONPAGES: u32 = 1;
export const MM_SWAPENTS: u32 = 2;
export const MM_SHMEMPAGES: u32 = 3;
export const NR_MM_COUNTERS: u32 = 4;

// Results of a user access (what the CPU reports to the process).
export const ACCESS_OK: i32 = 0;
export const ACCESS_SEGV_MAPERR: i32 = 1;
export const ACCESS_SEGV_ACCERR: i32 = 2;
export const ACCESS_SIGBUS: i32 = 3;
export const ACCESS_OOM: i32 = 4;
export const ACCESS_HWPOISON: i32 = 5;
export const ACCESS_BLOCKED: i32 = 6;      // see VM_FAULT_BLOCKED; accessBlockedOn says on what
// What a blocked access waits on.
export const BLOCKED_PTL: u32 = 1;        // a page-table lock held by an operation stopped at a yield point
export const BLOCKED_MKWRITE: u32 = 2;    // ->page_mkwrite made the writer wait
export const BLOCKED_UFFD: u32 = 3;       // a userfaultfd context must resolve the fault

// THP policy (/sys/kernel/mm/transparent_hugepage/enabled).
export const THP_NEVER: u32 = 0;
export const THP_MADVISE: u32 = 1;
export const THP_ALWAYS: u32 = 2;
