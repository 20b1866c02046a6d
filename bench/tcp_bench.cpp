// The active-socket path (workers/tcp.hpp, docs/messages.md "Sockets")
// against a plain blocking read loop on the same kind of connection: a
// writer process sends MIB mebibytes over loopback TCP in 64 KiB writes,
// the reader counts them until EOF.
//
//   tcp_bench MIB REPS
//
// Each repetition runs: plain read() loop with a 64 KiB buffer; occasional
// with {active, true}; occasional with {active, once} (re-armed after each
// message). The reader is timed from accept to EOF. Prints one line per
// run and the median throughput of each with its ratio to the plain loop.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

// MB/s (10^6 bytes per second) of a plain blocking read loop.
double plain(uint64_t bytes) {
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
  std::vector<char> buffer(kChunk);
  uint64_t got = 0;
  for (;;) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) fail("read");
    if (n == 0) break;
    got += static_cast<uint64_t>(n);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  ::close(listener);
  ::waitpid(writer, nullptr, 0);
  if (got != bytes) fail("plain: short stream");
  return static_cast<double>(bytes) / seconds / 1e6;
}

// The same stream read by process zero of an occasional system; it writes
// its figure to `result` (it is a child of this program).
double active(uint64_t bytes, tcp::Active mode, const std::string& result) {
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
    uint64_t got = 0;
    for (;;) {
      const Value m = p.receive(tcp::messages_of(s));
      const std::optional<tcp::Event> e = tcp::event(m);
      if (e->kind != tcp::Event::Kind::data) break;
      got += e->bytes.size();
      if (mode == tcp::Active::once) tcp::set_active(p, s, tcp::Active::once);
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (got != bytes) return 2;
    std::FILE* f = std::fopen(result.c_str(), "w");
    if (!f) return 3;
    std::fprintf(f, "%.3f\n", static_cast<double>(bytes) / seconds / 1e6);
    std::fclose(f);
    return 0;
  });
  if (rc != 0) fail("occasional run");
  std::FILE* f = std::fopen(result.c_str(), "r");
  double mbps = 0;
  if (!f || std::fscanf(f, "%lf", &mbps) != 1) fail("result");
  std::fclose(f);
  std::remove(result.c_str());
  return mbps;
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
  std::vector<double> p, on, once;
  for (int r = 0; r < reps; ++r) {
    p.push_back(plain(bytes));
    on.push_back(active(bytes, tcp::Active::on, result));
    once.push_back(active(bytes, tcp::Active::once, result));
    std::printf("rep %d: plain %.0f MB/s, active true %.0f MB/s, active once %.0f MB/s\n", r + 1,
                p.back(), on.back(), once.back());
    std::fflush(stdout);
  }
  const double mp = median(p), mon = median(on), monce = median(once);
  std::printf("median of %d, %llu MiB each: plain read loop %.0f MB/s | active true %.0f MB/s "
              "(%.3fx) | active once %.0f MB/s (%.3fx)\n",
              reps, static_cast<unsigned long long>(bytes >> 20), mp, mon, mon / mp, monce,
              monce / mp);
  return 0;
}
