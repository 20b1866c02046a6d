// exe::run (docs/exe.md) against the kernel's way to run a program and
// wait for it, in the same minutes: bench/exe_run.py runs it.
//
//   exe_bench N CPU [PROGRAM]
//
// Runs PROGRAM (default /bin/true) N times with each of
//   exe      occasional::exe::run({PROGRAM}): its stdout and stderr captured,
//            stdin /dev/null, its own process group, reaped through a pidfd
//   spawn    posix_spawn(PROGRAM) with no file actions or attributes, then
//            waitpid: the floor
// alternating in blocks of 20, so both see the same load, after a warm-up
// of each. CPU (-1: left alone) pins this process and so its children.
// Prints one JSON line: per variant, runs per second over its own time and
// the percentiles of one run (start to reaped).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <occasional/exe.hpp>
#include <string>
#include <vector>

#include "bench/msg_timing.hpp"

extern char** environ;

namespace {

using msgbench::now_ns;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "exe_bench: %s\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

void with_exe(const std::string& program) {
  occasional::exe::Result r = occasional::exe::run({program});
  if (!r.ok()) fail("exe::run(" + program + "): " + r.status.describe());
}

void with_posix_spawn(const std::string& program) {
  char* argv[] = {const_cast<char*>(program.c_str()), nullptr};
  pid_t pid = -1;
  if (int rc = ::posix_spawn(&pid, argv[0], nullptr, nullptr, argv, environ); rc != 0)
    fail("posix_spawn(" + program + "): " + std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) fail(std::string("waitpid: ") + std::strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail(program + " did not exit 0");
}

std::string figures(std::vector<int64_t> ns) {
  double total = 0;
  for (auto v : ns) total += double(v);
  std::string rt = msgbench::round_trip_json(ns);  // {"n":..,"p50_us":..,...}
  char tail[64];
  std::snprintf(tail, sizeof tail, ", \"runs_per_s\": %.1f}", double(ns.size()) / (total / 1e9));
  rt.pop_back();
  return rt + tail;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: exe_bench N CPU [PROGRAM]\n");
    return 2;
  }
  const long n = std::atol(argv[1]);
  const int cpu = std::atoi(argv[2]);
  const std::string program = argc == 4 ? argv[3] : "/bin/true";
  if (n < 1) fail("N must be at least 1");
  msgbench::pin(cpu);
  constexpr long kBlock = 20;
  const long warmup = std::max(10L, n / 10);
  for (long i = 0; i < warmup; ++i) {
    with_exe(program);
    with_posix_spawn(program);
  }
  std::vector<int64_t> exe_ns, spawn_ns;
  exe_ns.reserve(size_t(n));
  spawn_ns.reserve(size_t(n));
  for (long done = 0; done < n; done += kBlock) {
    const long block = std::min(kBlock, n - done);
    for (long i = 0; i < block; ++i) {
      int64_t t0 = now_ns();
      with_exe(program);
      exe_ns.push_back(now_ns() - t0);
    }
    for (long i = 0; i < block; ++i) {
      int64_t t0 = now_ns();
      with_posix_spawn(program);
      spawn_ns.push_back(now_ns() - t0);
    }
  }
  std::printf("{\"exe\": %s, \"spawn\": %s}\n", figures(exe_ns).c_str(), figures(spawn_ns).c_str());
  return 0;
}
