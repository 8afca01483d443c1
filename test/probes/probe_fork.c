/*
 * probe_fork.c - exclusive bit (56) of private anonymous pages across fork.
 *
 * Scenario 12:
 *   pages 0 and 1 written, page 2 read (zero page) before fork(); the child
 *   stays alive while the parent looks:
 *   12a. parent's and child's view of page 0 right after fork: exclusive?
 *   12b. parent writes page 1 (COW): new pfn? exclusive? child's page 1 then?
 *   12c. child exits: parent's page 0 exclusive again? parent writes page 0:
 *        pfn kept (reuse) or copied? (The CPU numbers are printed: a folio
 *        still sitting in another CPU's LRU-add batch holds an extra
 *        reference, and then the write copies instead of reusing. Pin with
 *        `taskset -c 0` for a deterministic run.)
 *
 * Build/run (as root):
 *   cc -O0 -o /tmp/probe_fork probe_fork.c && /tmp/probe_fork
 */
#include "probe_common.h"
#include <sched.h>
#include <sys/wait.h>

static volatile char sink;

static void wait_byte(int fd)
{
	char c;

	if (read(fd, &c, 1) != 1)
		DIE("read pipe");
}

static void send_byte(int fd)
{
	if (write(fd, "x", 1) != 1)
		DIE("write pipe");
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	banner("probe_fork");

	char *m = mmap_guarded(4);
	int cpu_fault = sched_getcpu();
	m[0] = 1;
	m[PG] = 1;
	sink = m[2 * PG];
	printf("\nbefore fork:\n");
	uint64_t p0 = show_pm("parent page0 (written)", m);
	uint64_t p1 = show_pm("parent page1 (written)", m + PG);
	show_pm("parent page2 (read, zero page)", m + 2 * PG);

	int to_child[2], to_parent[2];
	if (pipe(to_child) || pipe(to_parent))
		DIE("pipe");

	pid_t pid = fork();
	if (pid < 0)
		DIE("fork");
	if (pid == 0) {
		printf("\n--- 12a. child's view right after fork ---\n");
		show_pm("child page0", m);
		show_pm("child page1", m + PG);
		show_pm("child page2", m + 2 * PG);
		send_byte(to_parent[1]);
		wait_byte(to_child[0]);
		printf("\n--- 12b. child's view after parent's COW of page 1 ---\n");
		show_pm("child page0", m);
		show_pm("child page1", m + PG);
		send_byte(to_parent[1]);
		wait_byte(to_child[0]); /* parent says: exit now */
		_exit(0);
	}

	wait_byte(to_parent[0]);
	printf("\n--- 12a. parent's view right after fork (child alive) ---\n");
	uint64_t q0 = show_pm("parent page0", m);
	show_pm("parent page1", m + PG);
	show_pm("parent page2", m + 2 * PG);
	printf("  parent page0 pfn unchanged by fork: %s\n",
	       pm_pfn(p0) == pm_pfn(q0) ? "yes" : "no");

	printf("\n--- 12b. parent writes page 1 (child alive) ---\n");
	m[PG] = 2;
	uint64_t q1 = show_pm("parent page1 after write", m + PG);
	printf("  parent page1 got a new pfn (COW copy): %s\n",
	       pm_pfn(p1) != pm_pfn(q1) ? "yes" : "no");
	send_byte(to_child[1]);
	wait_byte(to_parent[0]);

	printf("\n--- 12c. child exits ---\n");
	send_byte(to_child[1]);
	waitpid(pid, NULL, 0);
	show_pm("parent page0 after child exit", m);
	int cpu_write = sched_getcpu();
	m[0] = 3;
	uint64_t r0 = show_pm("parent page0 after write", m);
	printf("  parent page0 pfn kept (reused, no copy): %s\n",
	       pm_pfn(p0) == pm_pfn(r0) ? "yes" : "no");
	printf("  cpu at first write fault: %d, cpu at this write: %d\n",
	       cpu_fault, cpu_write);
	return 0;
}
