/* SPDX-License-Identifier: MIT */
/*
 * cpus.h - which CPUs the host pins its workers to.
 *
 * Thread per core means one worker per physical core: two workers on the
 * two hardware threads of one core share its execution units and caches and
 * each gets far less than a core. So the order puts one CPU of every core
 * first (the lowest-numbered allowed CPU of each thread_siblings_list), and
 * the other SMT siblings only after all cores have one worker. Only CPUs in
 * the process's affinity mask count (a container or taskset may give fewer
 * than are online).
 */
#ifndef RL_HOST_CPUS_H
#define RL_HOST_CPUS_H

#include <sched.h>

/* Fill cpus[0..max) with the allowed CPUs in pinning order: one per core,
 * then the remaining siblings, each group in ascending order. sysfs_cpu is
 * the directory holding cpuN/topology/thread_siblings_list (normally
 * /sys/devices/system/cpu); a CPU whose file is missing or unreadable is
 * taken as a core of its own. Returns the number of CPUs written. */
int host_cpus_order(const char *sysfs_cpu, const cpu_set_t *allowed, int *cpus, int max);

/* Parse a kernel CPU list ("0-3,8,10-11") into set; 0 or -1 if malformed. */
int host_cpus_parse_list(const char *text, cpu_set_t *set);

#endif
