/* SPDX-License-Identifier: MIT */
/*
 * cpus.c - the pinning order of the host's workers (see cpus.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpus.h"

int host_cpus_parse_list(const char *text, cpu_set_t *set)
{
	const char *p = text;

	CPU_ZERO(set);
	while (*p && *p != '\n') {
		char *end;
		long a, b;

		if (!isdigit((unsigned char)*p))
			return -1;
		a = strtol(p, &end, 10);
		b = a;
		p = end;
		if (*p == '-') {
			p++;
			if (!isdigit((unsigned char)*p))
				return -1;
			b = strtol(p, &end, 10);
			p = end;
		}
		if (a < 0 || b < a || b >= CPU_SETSIZE)
			return -1;
		for (long c = a; c <= b; c++)
			CPU_SET((int)c, set);
		if (*p == ',')
			p++;
		else if (*p && *p != '\n')
			return -1;
	}
	return 0;
}

/* Is cpu the first allowed CPU of its core? */
static int is_core_leader(const char *sysfs_cpu, const cpu_set_t *allowed, int cpu)
{
	char path[4096], text[1024];
	cpu_set_t sib;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/cpu%d/topology/thread_siblings_list", sysfs_cpu, cpu);
	f = fopen(path, "r");
	if (!f)
		return 1;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	if (host_cpus_parse_list(text, &sib) != 0 || !CPU_ISSET(cpu, &sib))
		return 1;
	for (int c = 0; c < cpu; c++)
		if (CPU_ISSET(c, &sib) && CPU_ISSET(c, allowed))
			return 0;
	return 1;
}

int host_cpus_order(const char *sysfs_cpu, const cpu_set_t *allowed, int *cpus, int max)
{
	unsigned char leader[CPU_SETSIZE];
	int n = 0;

	for (int c = 0; c < CPU_SETSIZE; c++)
		leader[c] = CPU_ISSET(c, allowed) && is_core_leader(sysfs_cpu, allowed, c);
	for (int c = 0; c < CPU_SETSIZE && n < max; c++)
		if (leader[c])
			cpus[n++] = c;
	for (int c = 0; c < CPU_SETSIZE && n < max; c++)
		if (CPU_ISSET(c, allowed) && !leader[c])
			cpus[n++] = c;
	return n;
}
