#include "gateway/cpu_budget.hpp"

#include <sched.h>
#include <stdlib.h>

#include <gtest/gtest.h>
#include <filesystem>
#include <fstream>
#include <string>

namespace occasional::gateway {
namespace {

namespace fs = std::filesystem;

// A scratch tree standing in for / : proc/self/cgroup and sys/fs/cgroup.
class CgroupTree : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = (fs::temp_directory_path() / "cpu_budget_XXXXXX").string();
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    root_ = dir;
  }
  void TearDown() override { fs::remove_all(root_); }

  void write(const std::string& path, const std::string& text) {
    const fs::path p = fs::path(root_) / path;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }

  std::string root_;
};

TEST_F(CgroupTree, V2QuotaOfTheProcessCgroup) {
  write("proc/self/cgroup", "0::/pods/web\n");
  write("sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
  write("sys/fs/cgroup/pods/web/cpu.max", "50000 100000\n");
  EXPECT_DOUBLE_EQ(cgroup_quota_cores(root_), 0.5);
}

TEST_F(CgroupTree, V2TheTightestAncestorWins) {
  write("proc/self/cgroup", "0::/pods/web\n");
  write("sys/fs/cgroup/cgroup.controllers", "cpu\n");
  write("sys/fs/cgroup/pods/web/cpu.max", "max 100000\n");
  write("sys/fs/cgroup/pods/cpu.max", "150000 100000\n");
  EXPECT_DOUBLE_EQ(cgroup_quota_cores(root_), 1.5);
}

TEST_F(CgroupTree, V2NoLimitAnywhere) {
  write("proc/self/cgroup", "0::/\n");
  write("sys/fs/cgroup/cgroup.controllers", "cpu\n");
  EXPECT_DOUBLE_EQ(cgroup_quota_cores(root_), 0);
}

TEST_F(CgroupTree, V1CfsQuotaOnAHybridHost) {
  // v1 cpu controller, and a v2 hierarchy without controllers beside it.
  write("proc/self/cgroup", "2:cpu,cpuacct:/bench\n1:name=systemd:/\n0::/\n");
  write("sys/fs/cgroup/unified/cgroup.controllers", "");
  write("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
  write("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
  write("sys/fs/cgroup/cpu/bench/cpu.cfs_period_us", "100000\n");
  write("sys/fs/cgroup/cpu/bench/cpu.cfs_quota_us", "200000\n");
  EXPECT_DOUBLE_EQ(cgroup_quota_cores(root_), 2.0);
}

TEST_F(CgroupTree, UnreadableOrMalformedFilesMeanNoLimit) {
  EXPECT_DOUBLE_EQ(cgroup_quota_cores(root_), 0);  // no proc/self/cgroup at all
  write("proc/self/cgroup", "0::/a\n");
  write("sys/fs/cgroup/cgroup.controllers", "cpu\n");
  write("sys/fs/cgroup/a/cpu.max", "lots\n");
  EXPECT_DOUBLE_EQ(cgroup_quota_cores(root_), 0);
}

TEST(CpuBudget, OneCpuByAffinityOrByQuota) {
  EXPECT_TRUE((CpuBudget{1, 0}.one_cpu()));
  EXPECT_TRUE((CpuBudget{8, 0.5}.one_cpu()));
  EXPECT_TRUE((CpuBudget{8, 1.0}.one_cpu()));
  EXPECT_FALSE((CpuBudget{8, 1.5}.one_cpu()));
  EXPECT_FALSE((CpuBudget{2, 0}.one_cpu()));
  EXPECT_FALSE((CpuBudget{0, 0}.one_cpu()));
}

TEST(CpuBudget, ThisProcessCountsItsAffinityMask) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(::sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(read_cpu_budget().affinity_cpus, CPU_COUNT(&set));
}

}  // namespace
}  // namespace occasional::gateway
