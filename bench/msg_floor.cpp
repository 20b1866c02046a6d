// The kernel's floor for messages between two processes, without any
// library: a socketpair(AF_UNIX, SOCK_STREAM) between a parent and a forked
// child, 8-byte values, blocking read/write.
//
//   msg_floor pingpong N CPU_A CPU_B      one write and one read each way per round trip
//   msg_floor stream N BATCH CPU_A CPU_B  B writes N int64s, BATCH per write (1: one
//                                         write per message); A reads 64 KiB at a time
//   msg_floor spawn N CPU_A CPU_B         fork a child that _exits at once, poll its
//                                         pidfd, reap it: the kernel's floor under a
//                                         spawn_monitor -> DOWN (one process, no
//                                         coordinator, no messages), N times
//
// Side A (the parent, on CPU_A) times; side B (the child, on CPU_B) echoes
// or sends. Prints one JSON line (bench/msg_timing.hpp).
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/msg_timing.hpp"

namespace {

using msgbench::die;
using msgbench::now_ns;

void write_all(int fd, const void* p, size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      die("msg_floor", "write");
    }
    c += w;
    n -= size_t(w);
  }
}

void read_all(int fd, void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("msg_floor", "read");
    c += r;
    n -= size_t(r);
  }
}

void echo(int fd, long rounds) {
  int64_t v;
  for (long i = 0; i < rounds; ++i) {
    read_all(fd, &v, sizeof v);
    write_all(fd, &v, sizeof v);
  }
}

std::string ping(int fd, long warmup, long n) {
  std::vector<int64_t> samples;
  samples.reserve(size_t(n));
  for (long i = 0; i < warmup + n; ++i) {
    int64_t v = i, back = -1;
    int64_t t0 = now_ns();
    write_all(fd, &v, sizeof v);
    read_all(fd, &back, sizeof back);
    int64_t t1 = now_ns();
    if (back != v) {
      std::fprintf(stderr, "msg_floor: echo of %lld came back as %lld\n", (long long)v,
                   (long long)back);
      std::_Exit(1);
    }
    if (i >= warmup) samples.push_back(t1 - t0);
  }
  return msgbench::round_trip_json(std::move(samples));
}

void send_stream(int fd, long n, long batch) {
  std::vector<int64_t> buf(static_cast<size_t>(batch));
  for (long i = 0; i < n;) {
    long k = std::min(batch, n - i);
    for (long j = 0; j < k; ++j) buf[size_t(j)] = i + j;
    write_all(fd, buf.data(), size_t(k) * sizeof(int64_t));
    i += k;
  }
}

std::string receive_stream(int fd, long n) {
  // Values may straddle reads: `carry` holds the bytes of a partial one.
  std::vector<char> buf(65536 + sizeof(int64_t));
  size_t carry = 0;
  long seen = 0;
  int64_t first = 0, last = 0;
  while (seen < n) {
    ssize_t r = ::read(fd, buf.data() + carry, 65536);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("msg_floor", "read");
    if (seen == 0 && carry == 0) first = now_ns();
    size_t have = carry + size_t(r), off = 0;
    for (; off + sizeof(int64_t) <= have; off += sizeof(int64_t), ++seen) {
      int64_t v;
      std::memcpy(&v, buf.data() + off, sizeof v);
      if (v != seen) {
        std::fprintf(stderr, "msg_floor: value %ld arrived as %lld\n", seen, (long long)v);
        std::_Exit(1);
      }
    }
    carry = have - off;
    std::memmove(buf.data(), buf.data() + off, carry);
  }
  last = now_ns();
  return msgbench::stream_json(n, first, last);
}

// The parent waits as occasional's coordinator does: on a pidfd, then
// waitid. Child and parent stay on CPU_A, as a spawned process stays on
// its spawner's CPU.
std::string fork_exit(long warmup, long n) {
  std::vector<int64_t> samples;
  samples.reserve(size_t(n));
  for (long i = 0; i < warmup + n; ++i) {
    int64_t t0 = now_ns();
    pid_t child = ::fork();
    if (child < 0) die("msg_floor", "fork");
    if (child == 0) std::_Exit(0);
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, child, 0));
    if (pidfd < 0) die("msg_floor", "pidfd_open");
    pollfd p{pidfd, POLLIN, 0};
    while (::poll(&p, 1, -1) < 0)
      if (errno != EINTR) die("msg_floor", "poll");
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED) != 0) die("msg_floor", "waitid");
    ::close(pidfd);
    int64_t t1 = now_ns();
    if (i >= warmup) samples.push_back(t1 - t0);
  }
  return msgbench::round_trip_json(std::move(samples));
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: msg_floor pingpong|spawn N CPU_A CPU_B | "
               "msg_floor stream N BATCH CPU_A CPU_B\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  std::string mode = argv[1];
  if (mode == "spawn") {
    if (argc != 5) usage();
    long n = std::atol(argv[2]);
    if (n < 2) usage();
    msgbench::pin(std::atoi(argv[3]));
    std::printf("%s\n", fork_exit(std::max(10L, n / 10), n).c_str());
    return 0;
  }
  bool pingpong = mode == "pingpong";
  if (!(pingpong ? argc == 5 : mode == "stream" && argc == 6)) usage();
  long n = std::atol(argv[2]);
  long batch = pingpong ? 1 : std::atol(argv[3]);
  int cpu_a = std::atoi(argv[argc - 2]), cpu_b = std::atoi(argv[argc - 1]);
  if (n < 2 || batch < 1) usage();
  long warmup = std::max(100L, n / 10);

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("msg_floor", "socketpair");
  pid_t child = ::fork();
  if (child < 0) die("msg_floor", "fork");
  if (child == 0) {
    ::close(sv[0]);
    msgbench::pin(cpu_b);
    if (pingpong)
      echo(sv[1], warmup + n);
    else
      send_stream(sv[1], n, batch);
    std::_Exit(0);
  }
  ::close(sv[1]);
  msgbench::pin(cpu_a);
  std::string out = pingpong ? ping(sv[0], warmup, n) : receive_stream(sv[0], n);
  int status = 0;
  if (::waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "msg_floor: the child failed (status %d)\n", status);
    return 1;
  }
  std::printf("%s\n", out.c_str());
  return 0;
}
