/*
 * probe_punch_cow.c - does a hole punch (MADV_REMOVE through a MAP_SHARED
 * mapping) keep a MAP_PRIVATE mapping's copy-on-write copy of a punched page?
 * (shmem_fallocate unmaps with even_cows = 0; truncation uses even_cows = 1.)
 *
 *   memfd of 4 pages; A = MAP_SHARED, C = MAP_PRIVATE of it.
 *   write 0x11 to A page 1, write 0x22 to C page 1 (a private copy),
 *   MADV_REMOVE A page 1: C page 1 still 0x22? A page 1 reads 0?
 *   then ftruncate(1 page) and ftruncate(4 pages): C page 1 reads 0 (copy gone)?
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
/* Linux 6.18: "after MADV_REMOVE: shared page 1 = 0x00, private copy = 0x22", "... private page 1 = 0x00". */
int main(void) {
  long pg = sysconf(_SC_PAGESIZE);
  int fd = memfd_create("punch", 0);
  ftruncate(fd, 4 * pg);
  unsigned char *a = mmap(0, 4 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  unsigned char *c = mmap(0, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  a[pg] = 0x11;
  c[pg] = 0x22;
  if (madvise(a + pg, pg, MADV_REMOVE)) { perror("madvise"); return 1; }
  printf("after MADV_REMOVE: shared page 1 = 0x%02x, private copy = 0x%02x\n", a[pg], c[pg]);
  ftruncate(fd, pg);
  ftruncate(fd, 4 * pg);
  printf("after truncate to 1 page and back: private page 1 = 0x%02x\n", c[pg]);
  return 0;
}
