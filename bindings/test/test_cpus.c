/* SPDX-License-Identifier: MIT */
/*
 * test_cpus: the host's pinning order over fake sysfs topologies: one CPU
 * per core first, SMT siblings last, only allowed CPUs, missing files.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpus.h"

static int failures;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			failures++;                                            \
		}                                                              \
	} while (0)

static char root[64];

static void mkdirs(const char *path)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			mkdir(buf, 0700);
			*p = '/';
		}
	}
	mkdir(buf, 0700);
}

/* A fresh fake /sys/devices/system/cpu where cpu i has siblings[i] (NULL: no file). */
static void topology(const char *name, int n, const char *const *siblings)
{
	char dir[512], file[600];

	snprintf(root, sizeof(root), "/tmp/rl_cpus_XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		exit(1);
	}
	for (int i = 0; i < n; i++) {
		snprintf(dir, sizeof(dir), "%s/cpu%d/topology", root, i);
		mkdirs(dir);
		if (!siblings[i])
			continue;
		snprintf(file, sizeof(file), "%s/thread_siblings_list", dir);
		FILE *f = fopen(file, "w");
		if (!f) {
			perror(file);
			exit(1);
		}
		fprintf(f, "%s\n", siblings[i]);
		fclose(f);
	}
	(void)name;
}

static void cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", root);
}

static void allow(cpu_set_t *set, int n)
{
	CPU_ZERO(set);
	for (int i = 0; i < n; i++)
		CPU_SET(i, set);
}

static void expect_order(const char *what, const cpu_set_t *allowed, const int *want, int nwant)
{
	int got[64];
	int n = host_cpus_order(root, allowed, got, 64);

	CHECK(n == nwant, "%s: %d CPUs, expected %d", what, n, nwant);
	for (int i = 0; i < n && i < nwant; i++)
		CHECK(got[i] == want[i], "%s: position %d is CPU %d, expected %d", what, i, got[i], want[i]);
}

int main(void)
{
	cpu_set_t set;

	{ /* no SMT: every CPU a core, ascending */
		const char *sib[] = { "0", "1", "2", "3" };
		const int want[] = { 0, 1, 2, 3 };
		topology("flat", 4, sib);
		allow(&set, 4);
		expect_order("no SMT", &set, want, 4);
		cleanup();
	}
	{ /* Intel style: siblings are n and n + cores */
		const char *sib[] = { "0,2", "1,3", "0,2", "1,3" };
		const int want[] = { 0, 1, 2, 3 };
		topology("intel", 4, sib);
		allow(&set, 4);
		expect_order("siblings n, n+cores", &set, want, 4);
		cleanup();
	}
	{ /* AMD style: siblings adjacent, so every other CPU first */
		const char *sib[] = { "0-1", "0-1", "2-3", "2-3", "4-5", "4-5" };
		const int want[] = { 0, 2, 4, 1, 3, 5 };
		topology("amd", 6, sib);
		allow(&set, 6);
		expect_order("adjacent siblings", &set, want, 6);

		/* a limit smaller than the CPUs: the first ones of the order */
		int got[2];
		CHECK(host_cpus_order(root, &set, got, 2) == 2 && got[0] == 0 && got[1] == 2,
		      "max 2 gives %d, %d", got[0], got[1]);

		/* CPU 0 not allowed: its sibling 1 leads the core */
		CPU_CLR(0, &set);
		const int want2[] = { 1, 2, 4, 3, 5 };
		expect_order("leader not allowed", &set, want2, 5);

		/* only CPUs 2 and 4 allowed */
		CPU_ZERO(&set);
		CPU_SET(2, &set);
		CPU_SET(4, &set);
		const int want3[] = { 2, 4 };
		expect_order("subset", &set, want3, 2);
		cleanup();
	}
	{ /* missing or malformed files: that CPU counts as a core */
		const char *sib[] = { "0-1", "0-1", NULL, "garbage" };
		const int want[] = { 0, 2, 3, 1 };
		topology("missing", 4, sib);
		allow(&set, 4);
		expect_order("missing files", &set, want, 4);
		cleanup();
	}
	{ /* the list parser */
		cpu_set_t s;
		CHECK(host_cpus_parse_list("0-3,8,10-11\n", &s) == 0 && CPU_COUNT(&s) == 7 &&
			      CPU_ISSET(8, &s) && CPU_ISSET(11, &s) && !CPU_ISSET(9, &s),
		      "list parse");
		CHECK(host_cpus_parse_list("3-1", &s) < 0, "reversed range accepted");
		CHECK(host_cpus_parse_list("1,x", &s) < 0, "garbage accepted");
		CHECK(host_cpus_parse_list("5-", &s) < 0, "open range accepted");
	}
	{ /* the real machine: every allowed CPU appears exactly once */
		cpu_set_t mine;
		int got[CPU_SETSIZE];
		if (sched_getaffinity(0, sizeof(mine), &mine) == 0) {
			int n = host_cpus_order("/sys/devices/system/cpu", &mine, got, CPU_SETSIZE);
			cpu_set_t seen;
			CPU_ZERO(&seen);
			for (int i = 0; i < n; i++) {
				CHECK(CPU_ISSET(got[i], &mine) && !CPU_ISSET(got[i], &seen),
				      "real order: CPU %d", got[i]);
				CPU_SET(got[i], &seen);
			}
			CHECK(n == CPU_COUNT(&mine), "real order has %d of %d CPUs", n, CPU_COUNT(&mine));
		}
	}
	if (failures) {
		fprintf(stderr, "test_cpus: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_cpus: ok\n");
	return 0;
}
