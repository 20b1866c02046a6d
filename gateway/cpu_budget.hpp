#pragma once

#include <string>

namespace occasional::gateway {

// How much CPU the coordinator and its workers can use at once. Workers
// inherit the coordinator's CPU affinity and cgroup, so what limits the
// coordinator limits the whole service.
struct CpuBudget {
  int affinity_cpus = 0;   // CPUs in the affinity mask; 0: unknown
  double quota_cores = 0;  // the tightest cgroup CPU quota, in cores; 0: none
  // At most one CPU's worth of time at any moment: one CPU in the affinity
  // mask, or a quota of at most one core.
  bool one_cpu() const { return affinity_cpus == 1 || (quota_cores > 0 && quota_cores <= 1.0); }
};

// The budget of this process: sched_getaffinity, and the CPU quota of its
// cgroup and every ancestor (cgroup v2 `cpu.max` under /sys/fs/cgroup or
// /sys/fs/cgroup/unified; v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` under
// /sys/fs/cgroup/cpu or /sys/fs/cgroup/cpu,cpuacct). Read once at startup;
// anything unreadable counts as no limit.
CpuBudget read_cpu_budget();

// The quota part alone, with every path read under `root` ("" for the real
// /proc and /sys): /proc/self/cgroup names the cgroups, the files above the
// limits.
double cgroup_quota_cores(const std::string& root);

}  // namespace occasional::gateway
