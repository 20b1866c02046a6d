// `occasional ctl upgrade` end to end (docs/supervision.md, "Upgrade"): the
// real executable replaced in place under load, real workers, real sockets.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <dirent.h>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/coordinator_process.hpp"
#include "tests/integration/http_client.hpp"
#include "workers/exe.hpp"

namespace occasional::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kBin = OCCASIONAL_BIN;
const std::string kWorkers = OCCASIONAL_WORKERS_DIR;

// The coordinator's open fds by kind (socket, pipe, anon_inode:[pidfd],
// /memfd:..., a path), as the Resources test compares them. With
// `unix_only`, sockets other than AF_UNIX ones (a connection of the admin
// endpoint that may be open or closing) are left out.
std::map<std::string, int> fd_kinds(pid_t pid, bool unix_only = false) {
  std::set<std::string> unix_sockets;
  if (unix_only) {
    std::ifstream net("/proc/" + std::to_string(pid) + "/net/unix");
    std::string line;
    std::getline(net, line);  // the header
    while (std::getline(net, line)) {
      std::istringstream fields(line);
      std::string field;
      for (int i = 0; i < 7 && fields >> field; ++i) {
      }
      unix_sockets.insert("socket:[" + field + "]");
    }
  }
  std::map<std::string, int> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char buf[512];
    const ssize_t n = ::readlink((dir + "/" + e->d_name).c_str(), buf, sizeof buf - 1);
    if (n <= 0) continue;
    std::string link(buf, static_cast<size_t>(n));
    if (unix_only && link.starts_with("socket:") && !unix_sockets.contains(link)) continue;
    if (link.starts_with("socket:")) link = "socket";
    if (link.starts_with("pipe:")) link = "pipe";
    ++out[link];
  }
  ::closedir(d);
  return out;
}

std::string describe(const std::map<std::string, int>& kinds) {
  std::string out;
  for (const auto& [k, n] : kinds) out += k + " x" + std::to_string(n) + "; ";
  return out;
}

std::set<pid_t> workers_of(CoordinatorProcess& c) {
  std::set<pid_t> out;
  for (auto& e : c.events("spawn")) out.insert(std::stoi(e["pid"]));
  return out;
}

exe::Result ctl(int admin, const std::vector<std::string>& args) {
  exe::Argv argv{kBin, "ctl", "--admin", "127.0.0.1:" + std::to_string(admin)};
  argv.insert(argv.end(), args.begin(), args.end());
  exe::Options o;
  o.timeout = 120s;
  return exe::run(argv, o);
}

// Reads one HTTP response (head and a Content-Length body) from `fd`;
// false when the connection ends first or nothing comes within `timeout`.
bool read_response(int fd, std::string& buffer, std::string& response,
                   std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  char buf[4096];
  for (;;) {
    const auto head_end = buffer.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      size_t length = 0;
      const auto cl = buffer.find("Content-Length: ");
      if (cl != std::string::npos && cl < head_end) length = std::stoul(buffer.substr(cl + 16));
      if (buffer.size() >= head_end + 4 + length) {
        response = buffer.substr(0, head_end + 4 + length);
        buffer.erase(0, head_end + 4 + length);
        return true;
      }
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    buffer.append(buf, static_cast<size_t>(n));
  }
}

struct Load {
  std::atomic<bool> done{false};
  std::atomic<int64_t> ok{0}, refused{0}, failed{0}, connections{0}, kept_alive{0};
  std::vector<std::thread> threads;
  std::string first_failure;
  std::mutex m;

  void fail(const std::string& what) {
    ++failed;
    std::lock_guard<std::mutex> lock(m);
    if (first_failure.empty()) first_failure = what;
  }

  // Fresh connections: one request each (Connection: close).
  void fresh(int port) {
    threads.emplace_back([this, port] {
      while (!done) {
        UniqueFd fd = connect_loopback(port, true);
        if (!fd) {
          ++refused;
          continue;
        }
        ++connections;
        const std::string req = "GET /fresh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        std::string buffer, response;
        if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) < 0 ||
            !read_response(fd.get(), buffer, response) ||
            response.find("200 OK") == std::string::npos) {
          fail("fresh: " + response);
          continue;
        }
        ++ok;
      }
    });
  }

  // Kept-alive connections: 50 requests each, then a new one.
  void keep_alive(int port) {
    threads.emplace_back([this, port] {
      while (!done) {
        UniqueFd fd = connect_loopback(port, true);
        if (!fd) {
          ++refused;
          continue;
        }
        ++connections;
        std::string buffer;
        for (int i = 0; i < 50 && !done; ++i) {
          const std::string req = "GET /kept HTTP/1.1\r\nHost: x\r\n\r\n";
          std::string response;
          if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) < 0 ||
              !read_response(fd.get(), buffer, response) ||
              response.find("200 OK") == std::string::npos) {
            fail("kept alive, request " + std::to_string(i) + ": " + response);
            break;
          }
          ++ok;
          ++kept_alive;
        }
      }
    });
  }

  void stop() {
    done = true;
    for (auto& t : threads) t.join();
    threads.clear();
  }
  ~Load() {
    if (!threads.empty()) stop();
  }
};

TEST(UpgradeTest, TwentyUpgradesUnderLoadRefuseNothingAndKeepTheWorkers) {
  RunningCoordinator g({"run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--replicas",
                        "2", "--", kWorkers + "/http_hello_worker"},
                       2);
  ASSERT_GT(g.port, 0);
  const pid_t pid = g.c.pid();
  const std::set<pid_t> workers = workers_of(g.c);
  ASSERT_EQ(workers.size(), 2u);
  const std::map<std::string, int> fds_before = fd_kinds(pid);

  Load load;
  load.fresh(g.port);
  load.fresh(g.port);
  load.keep_alive(g.port);
  load.keep_alive(g.port);
  constexpr int kUpgrades = 20;
  for (int i = 1; i <= kUpgrades; ++i) {
    // Some requests between two upgrades, so each one happens under load.
    const int64_t served = load.ok;
    const auto deadline = Clock::now() + 30s;
    while (load.ok < served + 20 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    exe::Result r = ctl(g.admin, {"upgrade"});
    ASSERT_TRUE(r.ok()) << "upgrade " << i << ": " << r.status.describe() << ": " << r.err.bytes
                        << r.out.bytes << "\n"
                        << g.c.stderr_text();
    EXPECT_NE(r.out.bytes.find("upgraded"), std::string::npos) << r.out.bytes;
    g.c.wait_event("upgraded", nullptr, 30s);
    ASSERT_EQ(static_cast<int>(g.c.events("upgraded").size()), i);
  }
  // Served by the last coordinator too.
  const int64_t served = load.ok;
  const auto deadline = Clock::now() + 30s;
  while (load.ok < served + 100 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  load.stop();
  std::printf(
      "upgrades %d, requests %lld (kept alive %lld) on %lld connections, refused %lld, "
      "failed %lld\n",
      kUpgrades, static_cast<long long>(load.ok.load()),
      static_cast<long long>(load.kept_alive.load()),
      static_cast<long long>(load.connections.load()), static_cast<long long>(load.refused.load()),
      static_cast<long long>(load.failed.load()));

  EXPECT_EQ(load.refused.load(), 0);
  EXPECT_EQ(load.failed.load(), 0) << load.first_failure;
  EXPECT_GT(load.ok.load(), served + 99);
  EXPECT_GT(load.kept_alive.load(), 0);
  // The same process, the same workers, none restarted.
  EXPECT_EQ(g.c.pid(), pid);
  EXPECT_TRUE(process_alive(pid));
  EXPECT_EQ(workers_of(g.c), workers);
  for (pid_t w : workers) EXPECT_TRUE(process_alive(w)) << w;
  std::set<pid_t> children;
  for (pid_t c : children_of(pid)) children.insert(c);
  for (pid_t w : workers) EXPECT_TRUE(children.contains(w)) << w << " is no longer our child";
  EXPECT_TRUE(g.c.events("exit").empty()) << g.c.stderr_text();
  EXPECT_TRUE(g.c.events("upgrade_failed").empty()) << g.c.stderr_text();
  EXPECT_EQ(metric(g.admin, "occasional_worker_restarts_total{service=\"http_hello_worker\"}"), 0);
  EXPECT_EQ(metric(g.admin, "occasional_worker_starts_total{service=\"http_hello_worker\"}"), 2);
  // Counters went on: every connection the clients made was counted once,
  // whichever coordinator accepted it.
  EXPECT_EQ(metric(g.admin, "occasional_connections_accepted_total"),
            static_cast<double>(load.connections.load()));
  EXPECT_EQ(metric(g.admin, "occasional_upgrades_total"), kUpgrades);
  for (auto& e : g.c.events("upgraded")) EXPECT_EQ(e["message"], "upgraded from 0.1.0 to 0.1.0");
  // The coordinator's fds by kind, as before: nothing leaked across 20 execs.
  std::map<std::string, int> fds_after;
  const auto fd_deadline = Clock::now() + 10s;
  do {
    fds_after = fd_kinds(pid);
    if (fds_after == fds_before) break;
    std::this_thread::sleep_for(10ms);
  } while (Clock::now() < fd_deadline);
  EXPECT_EQ(fds_after, fds_before)
      << "before: " << describe(fds_before) << "\nafter: " << describe(fds_after);
}

// One line from `fd` (within 10 s), without its newline; empty on EOF.
std::string read_line(int fd) {
  std::string got;
  const auto deadline = Clock::now() + 10s;
  char c;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    if (::recv(fd, &c, 1, 0) != 1 || c == '\n') break;
    got += c;
  }
  return got;
}

// A connection to the acceptor: greeted by its connection's process
// ("hello from pid N"), then `line` written and echoed.
bool greeted_and_echoed(int fd, const std::string& line) {
  if (!read_line(fd).starts_with("hello from pid ")) return false;
  const std::string sent = line + "\n";
  return ::send(fd, sent.data(), sent.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(sent.size()) &&
         read_line(fd) == line;
}

// Workers are processes of the coordinator's system (docs/messages.md,
// "Workers are processes"): an upgrade carries their channels and
// addresses, so a worker spawns through the new coordinator as it did
// through the old. While a process it spawned is alive the upgrade is
// refused with the reason, and nothing changes.
TEST(UpgradeTest, WorkersStayProcessesAndSpawnAfterAnUpgrade) {
  RunningCoordinator g({"run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--mode",
                        "handoff", "--name", "acceptor", "--", OCCASIONAL_ACCEPTOR},
                       1);
  ASSERT_GT(g.port, 0);
  const std::set<pid_t> workers = workers_of(g.c);
  UniqueFd held = connect_loopback(g.port, true);
  ASSERT_TRUE(held);
  ASSERT_TRUE(greeted_and_echoed(held.get(), "before"));
  // The connection's own process is alive: not carried.
  exe::Result r = ctl(g.admin, {"upgrade"});
  EXPECT_EQ(r.status.code, 1) << r.out.bytes;
  EXPECT_NE(r.err.bytes.find("spawned by workers"), std::string::npos) << r.err.bytes;
  EXPECT_EQ(metric(g.admin, "occasional_upgrade_failures_total{reason=\"unsupported\"}"), 1);
  held.reset();
  const auto deadline = Clock::now() + 20s;
  while (metric(g.admin, "occasional_processes") != 1 && Clock::now() < deadline)
    std::this_thread::sleep_for(10ms);  // the connection's process exits after the close
  ASSERT_EQ(metric(g.admin, "occasional_processes"), 1) << "the worker alone";
  const double spawned = metric(g.admin, "occasional_processes_spawned_total");
  const std::map<std::string, int> fds_before = fd_kinds(g.c.pid(), true);

  r = ctl(g.admin, {"upgrade"});
  ASSERT_TRUE(r.ok()) << r.err.bytes << r.out.bytes << g.c.stderr_text();
  g.c.wait_event("upgraded", nullptr, 30s);
  // The worker is still a process, the counts went on, and a new
  // connection's process is spawned through the carried channel.
  EXPECT_EQ(metric(g.admin, "occasional_processes"), 1);
  EXPECT_EQ(metric(g.admin, "occasional_processes_spawned_total"), spawned);
  UniqueFd after = connect_loopback(g.port, true);
  ASSERT_TRUE(after);
  EXPECT_TRUE(greeted_and_echoed(after.get(), "after the upgrade"));
  EXPECT_EQ(metric(g.admin, "occasional_processes_spawned_total"), spawned + 1);
  EXPECT_EQ(workers_of(g.c), workers);
  EXPECT_TRUE(g.c.events("exit").empty()) << g.c.stderr_text();
  after.reset();
  std::map<std::string, int> fds_after;
  const auto fd_deadline = Clock::now() + 10s;
  do {
    fds_after = fd_kinds(g.c.pid(), true);
    if (fds_after == fds_before) break;
    std::this_thread::sleep_for(10ms);
  } while (Clock::now() < fd_deadline);
  EXPECT_EQ(fds_after, fds_before)
      << "before: " << describe(fds_before) << "\nafter: " << describe(fds_after);
}

// A script standing for a new binary: `body` after the shebang.
struct Script {
  explicit Script(const std::string& body) {
    char dir[] = "/tmp/occasional-upgrade-XXXXXX";
    EXPECT_NE(::mkdtemp(dir), nullptr);
    path = std::string(dir) + "/occasional";
    std::ofstream(path) << "#!/bin/sh\n" << body;
    ::chmod(path.c_str(), 0755);
  }
  ~Script() {
    ::unlink(path.c_str());
    ::rmdir(path.substr(0, path.rfind('/')).c_str());
  }
  std::string path;
};

TEST(UpgradeTest, ABinaryThatFailsItsSelfTestChangesNothing) {
  RunningCoordinator g({"run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--",
                        kWorkers + "/http_hello_worker"},
                       1);
  const std::set<pid_t> workers = workers_of(g.c);
  const std::map<std::string, int> fds_before = fd_kinds(g.c.pid());
  Script broken("echo 'this build is broken' >&2\nexit 1\n");
  exe::Result r = ctl(g.admin, {"upgrade", "--binary", broken.path});
  EXPECT_EQ(r.status.kind, exe::ExitStatus::Kind::exited);
  EXPECT_EQ(r.status.code, 1) << r.err.bytes;
  EXPECT_NE(r.err.bytes.find("self-test"), std::string::npos) << r.err.bytes;
  EXPECT_NE(r.err.bytes.find("exited 1"), std::string::npos) << r.err.bytes;
  EXPECT_NE(r.err.bytes.find("this build is broken"), std::string::npos) << r.err.bytes;
  g.c.wait_event("upgrade_failed", [](const Fields& f) { return f.at("reason") == "self_test"; });
  EXPECT_EQ(metric(g.admin, "occasional_upgrade_failures_total{reason=\"self_test\"}"), 1);
  EXPECT_EQ(metric(g.admin, "occasional_upgrades_total"), 0);
  EXPECT_TRUE(g.c.events("upgrade_started").empty());
  // Still the same coordinator, accepting, with the same worker.
  HttpReply reply = http_request(g.port, "GET", "/after");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(workers_of(g.c), workers);
  EXPECT_TRUE(g.c.events("exit").empty());
  EXPECT_EQ(fd_kinds(g.c.pid()), fds_before);

  // A binary that does not read this coordinator's state version (the real
  // one, told it is another version) fails the self-test the same way.
  Script other_version("shift 2\nexec " + kBin + " --self-test 999 \"$@\"\n");
  r = ctl(g.admin, {"upgrade", "--binary", other_version.path});
  EXPECT_EQ(r.status.code, 1) << r.err.bytes;
  EXPECT_NE(r.err.bytes.find("reads version"), std::string::npos) << r.err.bytes;
  EXPECT_EQ(metric(g.admin, "occasional_upgrade_failures_total{reason=\"self_test\"}"), 2);

  // A missing binary: refused before anything runs.
  r = ctl(g.admin, {"upgrade", "--binary", "/nonexistent/occasional"});
  EXPECT_EQ(r.status.code, 1) << r.err.bytes;
  EXPECT_NE(r.err.bytes.find("not an executable file"), std::string::npos) << r.err.bytes;

  // And the real binary still upgrades it afterwards, by SIGUSR2 this time.
  g.c.signal(SIGUSR2);
  g.c.wait_event("upgraded", nullptr, 30s);
  EXPECT_EQ(http_request(g.port, "GET", "/after-upgrade").status, 200);
  EXPECT_EQ(workers_of(g.c), workers);
  EXPECT_EQ(metric(g.admin, "occasional_upgrade_failures_total{reason=\"self_test\"}"), 3);
}

// systemd's side of NOTIFY_SOCKET: an abstract datagram socket.
struct NotifySocket {
  NotifySocket() {
    fd.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const std::string name = "occasional-upgrade-test-" + std::to_string(::getpid());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path + 1, name.data(), name.size());
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
    env = "NOTIFY_SOCKET=@" + name;
  }
  // The next datagram that starts with `prefix`; empty after `timeout`.
  std::string wait_for(const std::string& prefix, std::chrono::milliseconds timeout = 30s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      pollfd p{fd.get(), POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
      char buf[4096];
      const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n <= 0) return {};
      std::string text(buf, static_cast<size_t>(n));
      if (text.starts_with(prefix)) return text;
    }
  }
  UniqueFd fd;
  std::string env;
};

TEST(UpgradeTest, SystemdHearsReloadingThenReadyFromTheNewCoordinator) {
  NotifySocket notify;
  CoordinatorProcess::Launch launch;
  launch.env = {notify.env, "WATCHDOG_USEC=1000000"};
  RunningCoordinator g({"run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--",
                        kWorkers + "/http_hello_worker"},
                       1, launch);
  ASSERT_FALSE(notify.wait_for("READY=1").empty());
  exe::Result r = ctl(g.admin, {"upgrade"});
  ASSERT_TRUE(r.ok()) << r.err.bytes << g.c.stderr_text();
  const std::string reloading = notify.wait_for("RELOADING=1");
  EXPECT_NE(reloading.find("MONOTONIC_USEC="), std::string::npos) << reloading;
  // Only the new coordinator sends READY=1 now, once its carried worker is ready.
  EXPECT_FALSE(notify.wait_for("READY=1").empty());
  g.c.wait_event("upgraded");
  g.c.wait_event("systemd_notify", [](const Fields& f) { return f.at("sent") == "READY=1"; });
  // The new coordinator pings the watchdog too.
  EXPECT_EQ(g.c.events("systemd_watchdog").size(), 2u);
  EXPECT_FALSE(notify.wait_for("WATCHDOG=1").empty());
  EXPECT_EQ(http_request(g.port, "GET", "/").status, 200);
}

TEST(UpgradeTest, AConfigurationNotCarriedYetIsRefusedWithTheReason) {
  RunningCoordinator g(
      {"run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--mode", "inetd", "--", "cat"},
      0);
  exe::Result r = ctl(g.admin, {"upgrade"});
  EXPECT_EQ(r.status.code, 1) << r.err.bytes;
  EXPECT_NE(r.err.bytes.find("inetd"), std::string::npos) << r.err.bytes;
  EXPECT_EQ(metric(g.admin, "occasional_upgrade_failures_total{reason=\"unsupported\"}"), 1);
  EXPECT_TRUE(g.c.events("upgrade_started").empty());
}

}  // namespace
}  // namespace occasional::testing
