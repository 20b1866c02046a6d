// The coordinator under systemd, both ways: it takes its listening socket
// from socket activation (systemd-socket-activate, or a socket this test
// holds, as systemd does across restarts) and reports READY=1, STATUS=,
// WATCHDOG=1 and STOPPING=1 to a NOTIFY_SOCKET this test reads.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fcntl.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "tests/integration/coordinator_process.hpp"
#include "tests/integration/http_client.hpp"

namespace occasional::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kWorkers = OCCASIONAL_WORKERS_DIR;

// What systemd's side of NOTIFY_SOCKET sees: a datagram socket, bound to an
// abstract name ("@...") or to a path.
class NotifyReceiver {
 public:
  struct Message {
    std::string text;
    Clock::time_point at;
  };

  explicit NotifyReceiver(bool abstract) {
    static int counter = 0;
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd_.valid());
    const std::string name =
        "occasional-systemd-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socklen_t len = 0;
    if (abstract) {
      address_ = "@" + name;
      std::memcpy(addr.sun_path + 1, name.data(), name.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    } else {
      address_ = "/tmp/" + name;
      path_ = address_;
      ::unlink(path_.c_str());
      std::memcpy(addr.sun_path, address_.data(), address_.size());
      len = sizeof addr;
    }
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), len), 0)
        << std::strerror(errno);
  }
  ~NotifyReceiver() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  const std::string& address() const { return address_; }
  std::string env() const { return "NOTIFY_SOCKET=" + address_; }
  const std::vector<Message>& received() const { return received_; }

  // The next message that starts with `prefix` (earlier ones are kept in
  // received()); nullopt when none came within `timeout`.
  std::optional<Message> wait_for(const std::string& prefix, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      for (; scanned_ < received_.size(); ++scanned_)
        if (received_[scanned_].text.starts_with(prefix)) return received_[scanned_++];
      if (!read_one(deadline)) return std::nullopt;
    }
  }
  // Reads what has arrived already.
  void drain() {
    pollfd p{fd_.get(), POLLIN, 0};
    while (::poll(&p, 1, 0) > 0 && read_one(Clock::now() + 1s)) {
    }
  }
  // Everything that arrives within `window`.
  void collect(std::chrono::milliseconds window) {
    const auto deadline = Clock::now() + window;
    while (read_one(deadline)) {
    }
  }

 private:
  bool read_one(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n <= 0) return false;
    received_.push_back({std::string(buf, static_cast<size_t>(n)), Clock::now()});
    return true;
  }

  UniqueFd fd_;
  std::string address_;
  std::string path_;
  std::vector<Message> received_;
  size_t scanned_ = 0;
};

// A listening TCP socket on 127.0.0.1 (or [::1]), held by the test as
// systemd holds the one of a .socket unit.
struct HeldListener {
  explicit HeldListener(bool v6 = false, bool listening = true) {
    fd.reset(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (v6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *a;
    }
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
    if (listening) {
      EXPECT_EQ(::listen(fd.get(), 4096), 0);
    }
    len = sizeof ss;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                    : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    struct stat st {};
    ::fstat(fd.get(), &st);
    inode = st.st_ino;
  }
  UniqueFd fd;
  int port = 0;
  ino_t inode = 0;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Whether `pid` has an fd open on the socket with inode `inode`.
bool holds_socket(pid_t pid, ino_t inode) {
  const std::string want = "socket:[" + std::to_string(inode) + "]";
  for (int fd = 0; fd < 1024; ++fd) {
    char target[64] = {};
    const std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
    const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
    if (n > 0 && want == std::string(target, static_cast<size_t>(n))) return true;
  }
  return false;
}

TEST(Systemd, SocketActivateServesThePassedSocketAndReportsReadyStatusWatchdogStopping) {
  NotifyReceiver notify(/*abstract=*/true);
  // The test binds the socket and hands it to systemd-socket-activate the
  // way systemd would (LISTEN_FDS, LISTEN_PID): a port chosen and bound
  // later by the tool could be taken meanwhile under ctest -j. The tool
  // waits for the first client, then execs the coordinator with LISTEN_FDS=1
  // and LISTEN_PID (its own pid, kept by exec).
  HeldListener held;
  const int port = held.port;
  const std::string address = "127.0.0.1:" + std::to_string(port);
  CoordinatorProcess::Launch launch;
  launch.env = {"LISTEN_FDS=1"};
  launch.pass_fds = {held.fd.get()};
  launch.set_listen_pid = true;
  launch.wrapper = {"systemd-socket-activate", "-E", notify.env(), "-E", "WATCHDOG_USEC=400000"};
  CoordinatorProcess c(
      {"run", "--listen", address, "--", kWorkers + "/test_worker", "--ready-after", "700"},
      launch);
  // The first client: it connects while only systemd-socket-activate has
  // the socket, and is answered by a worker of the coordinator it started.
  UniqueFd first;
  const auto deadline = Clock::now() + 10s;
  while (!(first = connect_loopback(port)) && Clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(first.valid()) << "systemd-socket-activate never listened on " << address;
  ASSERT_EQ(::send(first.get(), "first\n", 6, MSG_NOSIGNAL), 6);

  Fields listening = c.wait_event("listening");
  EXPECT_EQ(listening["socket_activated"], "true") << c.stderr_text();
  EXPECT_EQ(listening["port"], std::to_string(port));

  // READY=1 only once the worker said ready (700 ms after it started).
  auto ready = notify.wait_for("READY=1", 15s);
  ASSERT_TRUE(ready) << c.stderr_text();
  ASSERT_FALSE(notify.received().empty());
  const auto first_message = notify.received().front();
  EXPECT_GE(ready->at - first_message.at, 500ms) << "READY=1 came before the worker could be ready";
  for (const auto& m : notify.received()) {
    if (&m == &notify.received().back()) break;
    EXPECT_FALSE(m.text.starts_with("READY=1") && m.at < ready->at);
  }
  c.wait_event("ready");
  c.wait_event("systemd_notify", [](const Fields& f) { return f.at("sent") == "READY=1"; });
  // The log says so in that order: the worker's ready, then READY=1.
  {
    const std::string& log = c.stderr_text();
    const auto worker_ready = log.find("\"event\":\"ready\"");
    const auto sent = log.find("\"sent\":\"READY=1\"");
    ASSERT_NE(worker_ready, std::string::npos);
    ASSERT_NE(sent, std::string::npos);
    EXPECT_LT(worker_ready, sent);
  }

  // The first client is served, and more after it.
  ::shutdown(first.get(), SHUT_WR);
  std::string reply;
  char buf[256];
  pollfd p{first.get(), POLLIN, 0};
  while (::poll(&p, 1, 10000) > 0) {
    const ssize_t n = ::recv(first.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  EXPECT_NE(reply.find(" first"), std::string::npos) << reply;
  for (int i = 0; i < 5; ++i)
    EXPECT_NE(raw_exchange(port, "again\n", 10s).find(" again"), std::string::npos);

  // STATUS: a one-line summary, showing the ready worker.
  auto status = notify.wait_for("STATUS=test_worker 1/1 ready", 10s);
  EXPECT_TRUE(status) << "no STATUS with the ready worker";

  // WATCHDOG=1 at about half of WATCHDOG_USEC (400 ms): every 200 ms, so
  // about 10 in 2 s; more than 15 would be pings at well under half the
  // interval. What queued while the test was busy is read first.
  notify.drain();
  const size_t before = notify.received().size();
  notify.collect(2s);
  size_t pings = 0;
  for (size_t i = before; i < notify.received().size(); ++i)
    pings += notify.received()[i].text == "WATCHDOG=1\n";
  EXPECT_GE(pings, 3u) << "expected about 10 pings in 2 s";
  EXPECT_LE(pings, 15u) << "expected about 10 pings in 2 s";

  // STOPPING=1 at SIGTERM, then a clean exit.
  c.signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", 10s));
  EXPECT_EQ(c.wait_exit(15s), 0);
}

TEST(Systemd, ARestartOfTheCoordinatorLosesNoConnectionOnTheHeldSocket) {
  HeldListener held;
  NotifyReceiver notify(/*abstract=*/false);  // a path this time
  auto launch = [&] {
    CoordinatorProcess::Launch l;
    l.env = {"LISTEN_FDS=1", "LISTEN_FDNAMES=occasional.socket", notify.env()};
    l.pass_fds = {held.fd.get()};
    l.set_listen_pid = true;
    return l;
  };
  const std::vector<std::string> args = {
      "run",        "--listen", "127.0.0.1:" + std::to_string(held.port),
      "--replicas", "2",        "--grace",
      "5",          "--",       kWorkers + "/test_worker"};
  auto first = std::make_unique<RunningCoordinator>(args, 2, launch());
  ASSERT_EQ(first->port, held.port);
  ASSERT_TRUE(notify.wait_for("READY=1", 10s));

  // Neither the socket nor systemd's variables reach a worker (nor the
  // guardian, a fork without exec whose /proc environ is the coordinator's
  // initial one).
  int workers = 0;
  for (pid_t child : children_of(first->c.pid())) {
    EXPECT_FALSE(holds_socket(child, held.inode)) << "child " << child << " has the listener";
    char exe[4096] = {};
    const std::string link = "/proc/" + std::to_string(child) + "/exe";
    const ssize_t n = ::readlink(link.c_str(), exe, sizeof exe - 1);
    if (n <= 0 || !std::string(exe, static_cast<size_t>(n)).ends_with("/test_worker")) continue;
    ++workers;
    const pid_t worker = child;
    const std::string env = read_file("/proc/" + std::to_string(worker) + "/environ");
    EXPECT_EQ(env.find("LISTEN_FDS="), std::string::npos);
    EXPECT_EQ(env.find("LISTEN_PID="), std::string::npos);
    EXPECT_EQ(env.find("LISTEN_FDNAMES="), std::string::npos);
    EXPECT_EQ(env.find("NOTIFY_SOCKET="), std::string::npos);
  }
  EXPECT_EQ(workers, 2);

  // Clients connect all the while; each must get its answer.
  std::atomic<bool> stop{false};
  std::atomic<int> served{0}, lost{0};
  std::vector<std::thread> clients;
  std::mutex failures_mutex;
  std::vector<std::string> failures;
  for (int t = 0; t < 3; ++t)
    clients.emplace_back([&, t] {
      for (int i = 0; !stop; ++i) {
        const std::string line = "c" + std::to_string(t) + "-" + std::to_string(i);
        const std::string reply = raw_exchange(held.port, line + "\n", 20s);
        if (reply.find(" " + line + "\n") != std::string::npos) {
          ++served;
        } else {
          ++lost;
          std::lock_guard lock(failures_mutex);
          failures.push_back(line + " -> '" + reply + "'");
        }
      }
    });
  auto wait_served = [&](int n) {
    const auto deadline = Clock::now() + 30s;
    while (served < n && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
    return served >= n;
  };
  EXPECT_TRUE(wait_served(50));

  // systemd's restart: the old coordinator stops, the new one gets the same socket.
  first->c.signal(SIGTERM);
  EXPECT_EQ(first->c.wait_exit(15s), 0);
  first.reset();  // already reaped: its destructor signals nothing
  // A client that connects while no coordinator runs waits in the backlog
  // of the socket the test (systemd) holds.
  UniqueFd in_gap = connect_loopback(held.port);
  ASSERT_TRUE(in_gap.valid());
  ASSERT_EQ(::send(in_gap.get(), "gap\n", 4, MSG_NOSIGNAL), 4);
  ::shutdown(in_gap.get(), SHUT_WR);
  const int before_second = served;
  RunningCoordinator second(args, 2, launch());
  std::string gap_reply;
  char buf[256];
  pollfd p{in_gap.get(), POLLIN, 0};
  while (::poll(&p, 1, 10000) > 0) {
    const ssize_t n = ::recv(in_gap.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    gap_reply.append(buf, static_cast<size_t>(n));
  }
  EXPECT_NE(gap_reply.find(" gap\n"), std::string::npos) << gap_reply;
  EXPECT_EQ(second.port, held.port);
  EXPECT_TRUE(wait_served(before_second + 50));
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(lost, 0) << "first failures: " << (failures.empty() ? "" : failures.front());
  EXPECT_GT(served, 100);
  EXPECT_TRUE(notify.wait_for("READY=1", 10s)) << "the second coordinator said no READY=1";
}

TEST(Systemd, WatchdogForAnotherPidIsNotPingedAndFailedSendsAreCounted) {
  {
    // WATCHDOG_PID names another process: the pings are not ours to send.
    NotifyReceiver notify(true);
    CoordinatorProcess::Launch l;
    l.env = {notify.env(), "WATCHDOG_USEC=200000", "WATCHDOG_PID=1"};
    RunningCoordinator c({"run", "--", kWorkers + "/test_worker"}, 1, l);
    ASSERT_TRUE(notify.wait_for("READY=1", 10s));
    notify.collect(1s);
    for (const auto& m : notify.received()) EXPECT_NE(m.text, "WATCHDOG=1\n");
  }
  {
    // Nobody reads the NOTIFY_SOCKET: every send fails, is counted, and the
    // coordinator goes on serving.
    CoordinatorProcess::Launch l;
    l.env = {"NOTIFY_SOCKET=@occasional-systemd-test-nobody-" + std::to_string(::getpid()),
             "WATCHDOG_USEC=100000"};
    HeldListener held;
    l.env.push_back("LISTEN_FDS=1");
    l.pass_fds = {held.fd.get()};
    l.set_listen_pid = true;
    RunningCoordinator c({"run", "--listen", "127.0.0.1:0", "--", kWorkers + "/test_worker"}, 1, l);
    const std::string sample = "occasional_systemd_notify_errors_total{reason=\"no_listener\"}";
    const auto deadline = Clock::now() + 10s;
    while (metric(c.admin, sample) < 5 && Clock::now() < deadline)
      std::this_thread::sleep_for(50ms);
    EXPECT_GE(metric(c.admin, sample), 5);
    EXPECT_NE(raw_exchange(held.port, "still\n", 10s).find(" still"), std::string::npos);
    c.c.wait_event("systemd_notify_failed");
  }
}

struct BadCase {
  const char* name;
  std::vector<std::string> env;
  enum Fd { listening, listening_v6, pipe_end, not_listening, none } fd = listening;
  bool set_listen_pid = true;
  bool config = false;  // two listeners `web` and `api` from a file, else --listen
  const char* expect;   // in the error line
  bool listen = true;   // quick mode: with --listen (else a plain service)
};

TEST(Systemd, BadActivationInputIsAClearErrorAtStart) {
  const std::string config_path = ::testing::TempDir() + "occasional-systemd-two-listeners.json";
  {
    std::ofstream f(config_path);
    f << R"({"listeners": [
      {"name": "web", "address": "127.0.0.1:0", "routes": [{"kind": "default", "service": "w"}]},
      {"name": "api", "address": "127.0.0.1:0", "routes": [{"kind": "default", "service": "w"}]}],
     "services": {"w": {"command": [")"
      << kWorkers << R"(/test_worker"]}}})";
  }
  const std::vector<BadCase> cases = {
      {"not a number",
       {"LISTEN_FDS=abc"},
       BadCase::listening,
       true,
       false,
       "LISTEN_FDS='abc' is not a number of sockets"},
      {"another pid",
       {"LISTEN_FDS=1", "LISTEN_PID=1"},
       BadCase::listening,
       false,
       false,
       "LISTEN_PID=1 but this process is"},
      {"no pid",
       {"LISTEN_FDS=1"},
       BadCase::listening,
       false,
       false,
       "LISTEN_FDS is set but LISTEN_PID is not"},
      {"fd not open", {"LISTEN_FDS=2"}, BadCase::listening, true, false, "fd 4 is not open"},
      {"pipe",
       {"LISTEN_FDS=1"},
       BadCase::pipe_end,
       true,
       false,
       "fd 3 ('main' in LISTEN_FDNAMES) is not a socket"},
      {"not listening", {"LISTEN_FDS=1"}, BadCase::not_listening, true, false, "is not listening"},
      {"other family",
       {"LISTEN_FDS=1"},
       BadCase::listening_v6,
       true,
       false,
       "not to the listener's address 127.0.0.1:"},
      {"names count",
       {"LISTEN_FDS=1", "LISTEN_FDNAMES=a:b"},
       BadCase::listening,
       true,
       false,
       "LISTEN_FDNAMES='a:b' has 2 names for LISTEN_FDS=1"},
      {"unknown name",
       {"LISTEN_FDS=1", "LISTEN_FDNAMES=admin"},
       BadCase::listening,
       true,
       true,
       "('admin' in LISTEN_FDNAMES) matches no listener (the listeners are web, api)"},
      {"listener without socket",
       {"LISTEN_FDS=1", "LISTEN_FDNAMES=web"},
       BadCase::listening,
       true,
       true,
       "listener 'api' (127.0.0.1:0) got no socket"},
      {"unnamed for two",
       {"LISTEN_FDS=1"},
       BadCase::listening,
       true,
       true,
       "without names (LISTEN_FDNAMES is unset)"},
      {"no listener",
       {"LISTEN_FDS=1"},
       BadCase::listening,
       true,
       false,
       "there is no listener to take the sockets",
       /*listen=*/false},
      {"bad notify socket",
       {"NOTIFY_SOCKET=relative/path"},
       BadCase::none,
       false,
       false,
       "NOTIFY_SOCKET='relative/path' is neither a socket path"},
      {"bad watchdog",
       {"WATCHDOG_USEC=soon"},
       BadCase::none,
       false,
       false,
       "WATCHDOG_USEC='soon' is not a positive number"},
  };
  for (const BadCase& bad : cases) {
    SCOPED_TRACE(bad.name);
    HeldListener v4, v6(true), unlistened(false, false);
    int pipe_fds[2];
    ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
    UniqueFd pr(pipe_fds[0]), pw(pipe_fds[1]);
    CoordinatorProcess::Launch l;
    l.env = bad.env;
    l.set_listen_pid = bad.set_listen_pid;
    switch (bad.fd) {
      case BadCase::listening:
        l.pass_fds = {v4.fd.get()};
        break;
      case BadCase::listening_v6:
        l.pass_fds = {v6.fd.get()};
        break;
      case BadCase::pipe_end:
        l.pass_fds = {pr.get()};
        break;
      case BadCase::not_listening:
        l.pass_fds = {unlistened.fd.get()};
        break;
      case BadCase::none:
        break;
    }
    std::vector<std::string> args = {"run"};
    if (bad.config) {
      args.insert(args.end(), {"--config", config_path});
    } else {
      if (bad.listen) args.insert(args.end(), {"--listen", "127.0.0.1:0"});
      args.insert(args.end(), {"--", kWorkers + "/test_worker"});
    }
    CoordinatorProcess c(args, l);
    EXPECT_EQ(c.wait_exit(10s), 2);
    EXPECT_NE(c.stderr_text().find(bad.expect), std::string::npos)
        << "wanted: " << bad.expect << "\ngot: " << c.stderr_text();
    // One line for a person, nothing started.
    EXPECT_EQ(c.stderr_text().find("\"event\":\"spawn\""), std::string::npos);
  }
}

}  // namespace
}  // namespace occasional::testing
