#include "gateway/cpu_budget.hpp"

#include <sched.h>

#include <charconv>
#include <fstream>
#include <sstream>
#include <string_view>

namespace occasional::gateway {

namespace {

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  out = s.str();
  return true;
}

bool exists(const std::string& path) {
  std::ifstream in(path);
  return static_cast<bool>(in);
}

bool parse_int(std::string_view text, long long& value) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc{} && end == text.data() + text.size();
}

// cgroup v2 `cpu.max`: "QUOTA PERIOD", or "max PERIOD" for no limit.
double v2_cores(const std::string& dir) {
  std::string text;
  if (!read_file(dir + "/cpu.max", text)) return 0;
  const auto space = text.find(' ');
  long long quota = 0, period = 0;
  if (space == std::string::npos || !parse_int(std::string_view(text).substr(0, space), quota) ||
      !parse_int(std::string_view(text).substr(space + 1), period) || quota <= 0 || period <= 0)
    return 0;
  return static_cast<double>(quota) / static_cast<double>(period);
}

// cgroup v1: cpu.cfs_quota_us is -1 for no limit.
double v1_cores(const std::string& dir) {
  std::string q, p;
  long long quota = 0, period = 0;
  if (!read_file(dir + "/cpu.cfs_quota_us", q) || !read_file(dir + "/cpu.cfs_period_us", p) ||
      !parse_int(q, quota) || !parse_int(p, period) || quota <= 0 || period <= 0)
    return 0;
  return static_cast<double>(quota) / static_cast<double>(period);
}

// The smaller of two limits, 0 standing for none.
double tighter(double a, double b) {
  if (a == 0) return b;
  if (b == 0) return a;
  return a < b ? a : b;
}

// The tightest limit of `path` and its ancestors under `mount`.
template <class Cores>
double tightest(const std::string& mount, std::string path, Cores cores) {
  double least = 0;
  for (;;) {
    least = tighter(least, cores(mount + (path == "/" ? "" : path)));
    if (path.empty() || path == "/") return least;
    const auto slash = path.rfind('/');
    path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
  }
}

}  // namespace

double cgroup_quota_cores(const std::string& root) {
  std::string text;
  if (!read_file(root + "/proc/self/cgroup", text)) return 0;
  double least = 0;
  std::istringstream lines(text);
  // Each line is ID:CONTROLLERS:PATH; v2 is "0::PATH".
  for (std::string line; std::getline(lines, line);) {
    const auto first = line.find(':');
    const auto second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    if (controllers.empty()) {
      for (const char* mount : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"})
        if (exists(root + mount + "/cgroup.controllers"))
          least = tighter(least, tightest(root + mount, path, v2_cores));
      continue;
    }
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');) {
      if (name != "cpu") continue;
      for (const char* mount : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"})
        if (exists(root + mount + "/cpu.cfs_period_us"))
          least = tighter(least, tightest(root + mount, path, v1_cores));
    }
  }
  return least;
}

CpuBudget read_cpu_budget() {
  CpuBudget b;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) b.affinity_cpus = CPU_COUNT(&set);
  b.quota_cores = cgroup_quota_cores("");
  return b;
}

}  // namespace occasional::gateway
