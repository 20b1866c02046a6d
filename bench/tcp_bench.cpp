// The active-socket path (workers/tcp.hpp, docs/messages.md "Sockets")
// against a plain blocking read loop on the same kind of connection: a
// writer process sends MIB mebibytes over loopback TCP in 64 KiB writes,
// the reader counts them until EOF.
//
//   tcp_bench MIB REPS
//
// Each repetition runs: plain read() loop with a 64 KiB buffer; occasional
// with {active, true}; occasional with {active, once} (re-armed after each
// message). The reader is timed from accept to EOF, in wall-clock time and
// in its own CPU time (user + system, CLOCK_PROCESS_CPUTIME_ID): on a
// loaded machine the wall-clock figure says more about the neighbours, the
// CPU figure (bytes per CPU-second of the reader) what each path costs.
// Prints one line per run and the medians, each with its ratio to the
// plain loop.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <occasional/process.hpp>
#include <string>
#include <vector>

namespace {

using namespace occasional;
using Clock = std::chrono::steady_clock;

constexpr size_t kChunk = 64 * 1024;

struct Figures {
  double wall_mbps = 0;  // 10^6 bytes per second
  double cpu_mbps = 0;   // 10^6 bytes per CPU-second of the reader
};

double cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

[[noreturn]] void fail(const char* what) {
  std::perror(what);
  std::_Exit(1);
}

void write_stream(uint16_t port, uint64_t bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("connect");
  std::string chunk(kChunk, 'x');
  for (uint64_t sent = 0; sent < bytes;) {
    ssize_t n = ::send(fd, chunk.data(), std::min<uint64_t>(kChunk, bytes - sent), MSG_NOSIGNAL);
    if (n <= 0) fail("send");
    sent += static_cast<uint64_t>(n);
  }
  ::close(fd);
}

// A plain blocking read loop.
Figures plain(uint64_t bytes) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("bind");
  ::listen(listener, 8);
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  pid_t writer = ::fork();
  if (writer == 0) {
    write_stream(ntohs(a.sin_port), bytes);
    std::_Exit(0);
  }
  int fd = ::accept(listener, nullptr, nullptr);
  const auto start = Clock::now();
  const double cpu_start = cpu_seconds();
  std::vector<char> buffer(kChunk);
  uint64_t got = 0;
  for (;;) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) fail("read");
    if (n == 0) break;
    got += static_cast<uint64_t>(n);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = cpu_seconds() - cpu_start;
  ::close(fd);
  ::close(listener);
  ::waitpid(writer, nullptr, 0);
  if (got != bytes) fail("plain: short stream");
  return {static_cast<double>(bytes) / seconds / 1e6, static_cast<double>(bytes) / cpu / 1e6};
}

// The same stream read by process zero of an occasional system; it writes
// its figure to `result` (it is a child of this program).
Figures active(uint64_t bytes, tcp::Active mode, const std::string& result) {
  std::remove(result.c_str());
  int rc = run([&](Process& p) -> Value {
    tcp::ListenOptions options;
    options.host = "127.0.0.1";
    options.accepted.active = mode;
    tcp::Socket listener = tcp::listen(p, 0, options);
    const uint16_t port = tcp::port(p, listener);
    p.spawn([port, bytes](Process&) { write_stream(port, bytes); });
    tcp::Socket s = tcp::accept(p, listener);
    const auto start = Clock::now();
    const double cpu_start = cpu_seconds();
    uint64_t got = 0;
    for (;;) {
      const Value m = p.receive(tcp::messages_of(s));
      const std::optional<tcp::Event> e = tcp::event(m);
      if (e->kind != tcp::Event::Kind::data) break;
      got += e->bytes.size();
      if (mode == tcp::Active::once) tcp::set_active(p, s, tcp::Active::once);
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const double cpu = cpu_seconds() - cpu_start;
    if (got != bytes) return 2;
    std::FILE* f = std::fopen(result.c_str(), "w");
    if (!f) return 3;
    std::fprintf(f, "%.3f %.3f\n", static_cast<double>(bytes) / seconds / 1e6,
                 static_cast<double>(bytes) / cpu / 1e6);
    std::fclose(f);
    return 0;
  });
  if (rc != 0) fail("occasional run");
  std::FILE* f = std::fopen(result.c_str(), "r");
  Figures out;
  if (!f || std::fscanf(f, "%lf %lf", &out.wall_mbps, &out.cpu_mbps) != 2) fail("result");
  std::fclose(f);
  std::remove(result.c_str());
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: tcp_bench MIB REPS\n");
    return 2;
  }
  const uint64_t bytes = std::strtoull(argv[1], nullptr, 10) << 20;
  const int reps = std::atoi(argv[2]);
  const std::string result = "/tmp/tcp_bench." + std::to_string(::getpid());
  std::vector<Figures> runs[3];
  const char* names[3] = {"plain read loop", "active true", "active once"};
  for (int r = 0; r < reps; ++r) {
    runs[0].push_back(plain(bytes));
    runs[1].push_back(active(bytes, tcp::Active::on, result));
    runs[2].push_back(active(bytes, tcp::Active::once, result));
    std::printf("rep %d (wall MB/s, MB per CPU-second):", r + 1);
    for (int k = 0; k < 3; ++k)
      std::printf(" %s %.0f %.0f%s", names[k], runs[k].back().wall_mbps, runs[k].back().cpu_mbps,
                  k < 2 ? "," : "\n");
    std::fflush(stdout);
  }
  double wall[3], cpu[3];
  for (int k = 0; k < 3; ++k) {
    std::vector<double> w, c;
    for (const Figures& f : runs[k]) {
      w.push_back(f.wall_mbps);
      c.push_back(f.cpu_mbps);
    }
    wall[k] = median(w);
    cpu[k] = median(c);
  }
  std::printf("median of %d, %llu MiB each:\n", reps, static_cast<unsigned long long>(bytes >> 20));
  for (int k = 0; k < 3; ++k)
    std::printf("  %-16s wall %5.0f MB/s (%.3fx)   reader CPU %5.0f MB/s (%.3fx)\n", names[k],
                wall[k], wall[k] / wall[0], cpu[k], cpu[k] / cpu[0]);
  return 0;
}
