// Transparent huge pages: splitting huge leaves into tables of smaller ones.
//
// __split_huge_pmd_locked: the 512 PTEs map consecutive pages of the same
// folio with the PMD's attributes (write, young, dirty, soft-dirty, uffd-wp)
// on top of the VMA's vm_page_prot. The folio stays one large folio, now
// PTE-mapped: its entire mapcount moves to 512 page mapcounts and the PMD's
// one reference becomes 512. The PTE table is the one deposited when the huge
// PMD was created, so a split never allocates.

import { Mm } from "./mm";
import { Vma } from "./vma";
import { allocTable, tablePtr, withdrawTable } from "./pgtable";
import {
  leafPfn, pfnPte, pteWrite, pteYoung, pteDirty, pteSoftDirty, pteUffdWp, pteMkwrite, pteMkold, pteMkdirty,
  pteMksoftDirty, pteMkuffdWp, pteMkspecial, mkTableEntry, ptePresent,
} from "./arch/index";
import {
  isZeroPfn, folioHead, addMapcount, addEntireMapcount, folioRefAdd, testFlag, setFlag, PG_EXCLUSIVE, PG_ANON, zeroPfn,
} from "./frames";

/** thp_split_pmd in /proc/vmstat. */
export let thpSplitPmd: u64 = 0;

/**
 * Splits the huge PMD at `ep` into a table of 512 PTEs (split_huge_pmd).
 * Returns false only if no deposited table exists and none can be allocated.
 */
export function splitHugePmd(mm: Mm, vma: Vma, ep: usize, pmdTablePfn: u32): bool {
  const e = load<u64>(ep);
  let table = withdrawTable(pmdTablePfn);
  if (table == 0) table = allocTable(mm);
  if (table == 0) return false;
  const base = tablePtr(table);
  const pfn = leafPfn(e, 1);
  {
    if (isZeroPfn(<u32>pfn)) {
      // __split_huge_zero_page_pmd: 512 special PTEs of the 4 KiB zero page.
      let pte = pteMkspecial(pfnPte(<u64>zeroPfn, vma.pageProt));
      if (pteUffdWp(e)) pte = pteMkuffdWp(pte);
      for (let i: u32 = 0; i < 512; i++) store<u64>(base + (<usize>i << 3), pte);
    } else {
      const present = ptePresent(e);
      const head = folioHead(<u32>pfn);
      const exclusive = testFlag(head, PG_EXCLUSIVE);
      for (let i: u32 = 0; i < 512; i++) {
        let pte = pfnPte(pfn + i, vma.pageProt);
        if (pteWrite(e)) pte = pteMkwrite(pte);
        if (!pteYoung(e)) pte = pteMkold(pte);
        if (pteDirty(e)) pte = pteMkdirty(pte);
        if (pteSoftDirty(e)) pte = pteMksoftDirty(pte);
        if (pteUffdWp(e)) pte = pteMkuffdWp(pte);
        store<u64>(base + (<usize>i << 3), pte);
        if (present) {
          addMapcount(<u32>pfn + i, 1);
          if (exclusive && testFlag(head, PG_ANON)) setFlag(<u32>pfn + i, PG_EXCLUSIVE);
        }
      }
      if (present) {
        addEntireMapcount(head, -1);
        folioRefAdd(head, 511);
      }
    }
  }
  store<u64>(ep, mkTableEntry(<u64>table));
  thpSplitPmd++;
  return true;
}
