// What every messaging benchmark program (bench/msg_*.cpp, process_bench)
// shares, so their figures are taken the same way: CLOCK_MONOTONIC, one
// sample per round trip, percentiles by sorting, a stream timed at the
// receiver from its first message to its last, and one JSON line on stdout
// for bench/messages.py.
#pragma once

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace msgbench {

inline int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] inline void die(const char* prog, const char* what) {
  std::fprintf(stderr, "%s: %s: %s\n", prog, what, std::strerror(errno));
  std::_Exit(1);
}

// -1 leaves the affinity alone (bench/messages.py passes the two CPUs).
inline void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) die("msgbench", "sched_setaffinity");
}

// Round-trip samples in nanoseconds -> the JSON fields of a ping-pong.
inline std::string round_trip_json(std::vector<int64_t> ns) {
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    return ns.empty() ? 0.0 : ns[std::min(ns.size() - 1, size_t(q * double(ns.size())))] / 1e3;
  };
  double sum = 0;
  for (auto v : ns) sum += double(v);
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "{\"n\": %zu, \"p50_us\": %.3f, \"p99_us\": %.3f, \"mean_us\": %.3f, "
                "\"round_trips_per_s\": %.0f}",
                ns.size(), at(0.5), at(0.99), ns.empty() ? 0.0 : sum / double(ns.size()) / 1e3,
                sum > 0 ? double(ns.size()) / (sum / 1e9) : 0.0);
  return buf;
}

// n messages seen by the receiver between its first and its last one.
inline std::string stream_json(long n, int64_t first_ns, int64_t last_ns) {
  double secs = double(last_ns - first_ns) / 1e9;
  char buf[160];
  std::snprintf(buf, sizeof buf, "{\"n\": %ld, \"seconds\": %.6f, \"msgs_per_s\": %.0f}", n, secs,
                secs > 0 ? double(n - 1) / secs : 0.0);
  return buf;
}

}  // namespace msgbench
