#include "supervisor/service.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "supervisor/supervisor.hpp"

namespace occasional::supervisor {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Recorded {
  explicit Recorded(std::string k, int r = -1, pid_t p = -1)
      : kind(std::move(k)), replica(r), pid(p) {}
  std::string kind;  // spawned, exited, restart_scheduled, service_failed, stopping, grace, idle
  int replica = -1;
  pid_t pid = -1;
  Duration delay{};
  ExitRecord record;
  Clock::time_point at = Clock::now();
};

class Recorder : public ServiceObserver {
 public:
  std::vector<Recorded> events;

  void on_spawned(const std::string&, int replica, pid_t pid) override {
    events.emplace_back("spawned", replica, pid);
  }
  void on_exited(const ExitRecord& r) override {
    Recorded e{"exited", r.replica, r.pid};
    e.record = r;
    events.push_back(e);
  }
  void on_restart_scheduled(const std::string&, int replica, Duration delay) override {
    Recorded e{"restart_scheduled", replica};
    e.delay = delay;
    events.push_back(e);
  }
  void on_service_failed(const std::string&, int, Duration) override {
    events.emplace_back("service_failed");
  }
  void on_stopping(const std::string&, int replica, pid_t pid) override {
    events.emplace_back("stopping", replica, pid);
  }
  void on_killed_at_grace(const std::string&, int replica, pid_t pid) override {
    events.emplace_back("grace", replica, pid);
  }
  void on_idle(const std::string&) override { events.emplace_back("idle"); }
  void on_ready(const std::string&, int replica, WorkerLink*) override {
    events.emplace_back("ready", replica);
  }
  void on_accept_probe_failed(const std::string&, int replica, const std::string&) override {
    events.emplace_back("accept_probe_failed", replica);
  }
  void on_protocol_error(const std::string&, int replica, const char* reason,
                         const std::string&) override {
    events.emplace_back(std::string("protocol_error:") + reason, replica);
  }

  size_t count(const std::string& kind) const {
    return static_cast<size_t>(std::count_if(events.begin(), events.end(),
                                             [&](const Recorded& e) { return e.kind == kind; }));
  }
  const Recorded* last(const std::string& kind) const {
    for (auto it = events.rbegin(); it != events.rend(); ++it)
      if (it->kind == kind) return &*it;
    return nullptr;
  }
};

int open_fd_count() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the DIR's own fd
}

// Children of this process in state Z.
int zombie_children() {
  int zombies = 0;
  const pid_t self = ::getpid();
  DIR* d = ::opendir("/proc");
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    long ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %ld", &state, &ppid) == 2 && ppid == self &&
        state == 'Z')
      ++zombies;
  }
  ::closedir(d);
  return zombies;
}

bool process_alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  auto close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 && line[close + 2] != 'Z';
}

class ServiceTest : public ::testing::Test {
 protected:
  ServiceTest()
      : devnull_(::open("/dev/null", O_WRONLY | O_CLOEXEC)), log_(LogFormat::json, devnull_) {
    supervisor_ = std::make_unique<Supervisor>(io_, log_);
    supervisor_->add_observer(recorder_);
  }
  ~ServiceTest() override {
    supervisor_.reset();
    ::close(devnull_);
  }

  ServiceConfig config(std::vector<std::string> argv) {
    ServiceConfig c;
    c.name = "test";
    c.process.argv = std::move(argv);
    c.restart.backoff_initial = 10ms;
    c.restart.backoff_max = 1s;
    c.restart.max_restarts = 1000;
    c.grace = 2s;
    return c;
  }

  // Runs the loop until `pred` holds or `timeout` passes.
  template <class Pred>
  bool wait_for(Pred pred, Duration timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    while (!pred()) {
      const auto now = Clock::now();
      if (now >= deadline) return false;
      io_.run_one_for(deadline - now);
    }
    return true;
  }

  // Reads one line from `fd`, waiting at most `timeout`.
  static std::string read_line(int fd, Duration timeout = 5s) {
    std::string line;
    const auto deadline = Clock::now() + timeout;
    char c;
    while (Clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      int ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (::poll(&p, 1, std::max(ms, 1)) <= 0) continue;
      if (::read(fd, &c, 1) != 1) break;
      if (c == '\n') return line;
      line.push_back(c);
    }
    return line;
  }

  boost::asio::io_context io_;
  int devnull_;
  EventLog log_;
  std::unique_ptr<Supervisor> supervisor_;
  Recorder recorder_;
};

TEST_F(ServiceTest, RecordsExitCode) {
  auto c = config({"/bin/sh", "-c", "exit 3"});
  c.restart.mode = RestartMode::never;
  Service& s = supervisor_->add_service(c);
  s.start();
  ASSERT_TRUE(wait_for([&] { return recorder_.count("exited") == 1; }));
  const ExitRecord& r = recorder_.last("exited")->record;
  EXPECT_EQ(r.kind, ExitKind::exited);
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.service, "test");
  EXPECT_EQ(r.pid, recorder_.last("spawned")->pid);
  EXPECT_GE(r.exited_at, r.started_at);
  EXPECT_TRUE(wait_for([&] { return s.idle(); }));
}

TEST_F(ServiceTest, RecordsKillingSignal) {
  auto c = config({"/bin/sleep", "100"});
  c.restart.mode = RestartMode::never;
  Service& s = supervisor_->add_service(c);
  s.start();
  ASSERT_TRUE(wait_for([&] { return recorder_.count("spawned") == 1; }));
  ::kill(recorder_.last("spawned")->pid, SIGKILL);
  ASSERT_TRUE(wait_for([&] { return recorder_.count("exited") == 1; }));
  const ExitRecord& r = recorder_.last("exited")->record;
  EXPECT_EQ(r.kind, ExitKind::killed);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_FALSE(r.core_dumped);
}

TEST_F(ServiceTest, RecordsCoreDump) {
  char dir[] = "/tmp/occasional-core-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  auto c = config({"/bin/sh", "-c", "ulimit -c unlimited || exit 99; kill -ABRT $$"});
  c.restart.mode = RestartMode::never;
  c.process.cwd = dir;
  Service& s = supervisor_->add_service(c);
  s.start();
  ASSERT_TRUE(wait_for([&] { return recorder_.count("exited") == 1; }));
  const ExitRecord& r = recorder_.last("exited")->record;
  std::system((std::string("rm -rf ") + dir).c_str());
  if (r.kind == ExitKind::exited && r.code == 99)
    GTEST_SKIP() << "RLIMIT_CORE cannot be raised here";
  EXPECT_EQ(r.kind, ExitKind::killed);
  EXPECT_EQ(r.signal, SIGABRT);
  EXPECT_TRUE(r.core_dumped) << "core_pattern may discard dumps: " << r.describe();
}

TEST_F(ServiceTest, MissingExecutableBacksOffThenFails) {
  auto c = config({"/nonexistent/worker"});
  c.restart.max_restarts = 3;
  c.restart.window = 60s;
  c.restart.jitter = 0;
  Service& s = supervisor_->add_service(c);
  s.start();
  ASSERT_TRUE(wait_for([&] { return recorder_.count("service_failed") == 1; }));
  EXPECT_TRUE(s.failed());
  EXPECT_EQ(recorder_.count("spawned"), 0u);
  ASSERT_EQ(recorder_.count("exited"), 4u);  // first start + 3 restarts
  std::vector<Duration> delays;
  for (const auto& e : recorder_.events) {
    if (e.kind == "exited") {
      EXPECT_EQ(e.record.kind, ExitKind::start_failed);
      EXPECT_EQ(e.record.error, ENOENT);
      EXPECT_EQ(e.record.describe(), "failed to start: execve: No such file or directory");
    }
    if (e.kind == "restart_scheduled") delays.push_back(e.delay);
  }
  // Restart 1 is immediate, 2 and 3 wait 10 ms and 20 ms.
  EXPECT_EQ(delays, (std::vector<Duration>{10ms, 20ms}));
  // The scheduled delays were really waited.
  const auto first = std::find_if(recorder_.events.begin(), recorder_.events.end(),
                                  [](auto& e) { return e.kind == "exited"; });
  EXPECT_GE(recorder_.last("exited")->at - first->at, 30ms);
  // Failed stays failed: nothing more happens.
  EXPECT_FALSE(wait_for([&] { return recorder_.count("exited") > 4; }, 100ms));
  // Until asked to start again.
  s.start();
  EXPECT_FALSE(s.failed());
  EXPECT_TRUE(wait_for([&] { return recorder_.count("exited") > 4; }));
}

TEST_F(ServiceTest, WorkerIgnoringSigtermIsKilledAtGrace) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  auto c = config({"/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"});
  c.process.stdout_fd = wr.get();
  c.grace = 300ms;
  Service& s = supervisor_->add_service(c);
  s.start();
  ASSERT_EQ(read_line(rd.get()), "ready");
  const auto stop_at = Clock::now();
  s.stop();
  ASSERT_TRUE(wait_for([&] { return recorder_.count("exited") == 1; }));
  EXPECT_EQ(recorder_.count("grace"), 1u);
  const ExitRecord& r = recorder_.last("exited")->record;
  EXPECT_EQ(r.kind, ExitKind::killed);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_GE(recorder_.last("exited")->at - stop_at, 300ms);
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(recorder_.count("spawned"), 1u);  // a stopped worker is not restarted
}

TEST_F(ServiceTest, WorkerThatHonoursSigtermStopsWithoutKill) {
  auto c = config({"/bin/sleep", "100"});
  Service& s = supervisor_->add_service(c);
  s.start();
  ASSERT_TRUE(wait_for([&] { return recorder_.count("spawned") == 1; }));
  s.stop();
  ASSERT_TRUE(wait_for([&] { return s.idle(); }));
  EXPECT_EQ(recorder_.count("grace"), 0u);
  EXPECT_EQ(recorder_.last("exited")->record.signal, SIGTERM);
}

TEST_F(ServiceTest, WorkersChildrenAreGoneOnceTheWorkerExits) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  // One child in the worker's group, one that left it with setsid.
  auto c = config(
      {"/bin/sh", "-c", "sleep 1000 & echo $!; setsid sleep 1000 & echo $!; exec sleep 1000"});
  c.restart.mode = RestartMode::never;
  c.process.stdout_fd = wr.get();
  Service& s = supervisor_->add_service(c);
  s.start();
  pid_t in_group = std::stoi(read_line(rd.get()));
  pid_t escaped = std::stoi(read_line(rd.get()));
  ASSERT_TRUE(wait_for([&] { return recorder_.count("spawned") == 1; }));
  ASSERT_TRUE(process_alive(in_group));
  ASSERT_TRUE(process_alive(escaped));
  ::kill(recorder_.last("spawned")->pid, SIGKILL);
  ASSERT_TRUE(wait_for([&] { return recorder_.count("exited") == 1; }));
  EXPECT_TRUE(wait_for([&] { return !process_alive(in_group) && !process_alive(escaped); }, 2s));
  EXPECT_TRUE(wait_for([&] { return zombie_children() == 0; }, 2s));
  EXPECT_TRUE(s.idle());
}

TEST_F(ServiceTest, ReplacementIsSpawnedWithin10msOfAKill) {
  auto c = config({"/bin/sleep", "1000"});
  c.restart.backoff_initial = 0ms;
  Service& s = supervisor_->add_service(c);
  s.start();
  std::vector<double> micros;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(wait_for([&] { return recorder_.count("spawned") == static_cast<size_t>(i + 1); }));
    const auto killed_at = Clock::now();
    ::kill(recorder_.last("spawned")->pid, SIGKILL);
    ASSERT_TRUE(wait_for([&] { return recorder_.count("spawned") == static_cast<size_t>(i + 2); }));
    micros.push_back(
        std::chrono::duration<double, std::micro>(recorder_.last("spawned")->at - killed_at)
            .count());
  }
  std::sort(micros.begin(), micros.end());
  const double median = micros[50];
  std::printf("kill -> replacement spawned: median %.0f us, p90 %.0f us, max %.0f us (n=100)\n",
              median, micros[90], micros.back());
#if defined(__SANITIZE_ADDRESS__)
  // Sanitizers slow every syscall path several times; only release builds are timed.
#else
  EXPECT_LT(median, 10'000.0);
#endif
  s.stop();
  EXPECT_TRUE(wait_for([&] { return s.idle(); }));
}

TEST_F(ServiceTest, ThousandCrashCyclesLeaveNoZombieAndNoFd) {
  auto c = config({"/bin/sh", "-c", "exit 1"});
  c.restart.backoff_initial = 0ms;
  c.restart.max_restarts = 100000;
  Service& s = supervisor_->add_service(c);
  const int baseline = open_fd_count();
  s.start();
  ASSERT_TRUE(wait_for([&] { return recorder_.count("exited") >= 1000; }, 60s));
  s.stop();
  ASSERT_TRUE(wait_for([&] { return s.idle(); }));
  EXPECT_TRUE(wait_for([&] { return zombie_children() == 0; }, 2s));
  EXPECT_EQ(open_fd_count(), baseline);
}

// A worker that exits closes its control socket a moment before its pidfd
// is readable: that EOF must not be taken for a worker that closed the
// socket and lives on (channel_closed).
TEST_F(ServiceTest, ExitingHandoffWorkersAreNeverReportedAsChannelClosed) {
  auto c = config({"/bin/sh", "-c", "exit 1"});
  c.mode = workers::WorkerMode::handoff;
  c.restart.backoff_initial = 0ms;
  c.restart.max_restarts = 100000;
  Service& s = supervisor_->add_service(c);
  s.start();
  ASSERT_TRUE(wait_for([&] { return recorder_.count("exited") >= 300; }, 60s));
  s.stop();
  ASSERT_TRUE(wait_for([&] { return s.idle(); }));
  EXPECT_EQ(recorder_.count("protocol_error:channel_closed"), 0u);
  // Every exit is the worker's own `exit 1` except the last, stopped one:
  // none is a live worker killed for an EOF or a wake-up that was no exit.
  size_t not_own = 0;
  for (const auto& e : recorder_.events)
    if (e.kind == "exited" && !(e.record.kind == ExitKind::exited && e.record.code == 1)) {
      ++not_own;
      EXPECT_EQ(&e, recorder_.last("exited")) << e.record.describe();
    }
  EXPECT_LE(not_own, 1u);
}

// Closing fd 3 and living on: killed once the short grace has passed, with
// reason channel_closed, and restarted.
TEST_F(ServiceTest, WorkerThatClosesItsChannelAndLivesOnIsKilled) {
  auto c = config({"/bin/sh", "-c", "exec 3>&-; exec sleep 30"});
  c.mode = workers::WorkerMode::handoff;
  Service& s = supervisor_->add_service(c);
  s.start();
  ASSERT_TRUE(wait_for([&] { return recorder_.count("spawned") >= 2; }, 5s));
  EXPECT_GE(recorder_.count("protocol_error:channel_closed"), 1u);
  const Recorded* exited = recorder_.last("exited");
  ASSERT_NE(exited, nullptr);
  EXPECT_EQ(exited->record.kind, ExitKind::killed);
  EXPECT_EQ(exited->record.signal, SIGKILL);
  EXPECT_GE(exited->at - recorder_.events.front().at, kChannelClosedGrace);
  s.kill_all();
  s.stop();
  ASSERT_TRUE(wait_for([&] { return s.idle(); }));
}

}  // namespace
}  // namespace occasional::supervisor

namespace occasional::supervisor {
namespace {

// Readiness `accepting` gives up on a worker never seen waiting to accept:
// it is taken as ready, counted, and no longer looked at.
TEST_F(ServiceTest, AWorkerNeverSeenAcceptingIsTakenAsReadyAfterTheProbeTime) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  auto c = config({"/bin/sleep", "100"});
  c.mode = workers::WorkerMode::listen_fds;
  c.listen_fd = listener.get();
  c.listener_name = "main";
  c.accept_probe_for = 300ms;
  const auto start = Clock::now();
  supervisor_->add_service(std::move(c)).start();
  ASSERT_TRUE(wait_for([&] { return recorder_.count("ready") == 1; }));
  const auto took = Clock::now() - start;
  EXPECT_GE(took, 300ms);
  EXPECT_EQ(recorder_.count("accept_probe_failed"), 1u);
}

}  // namespace
}  // namespace occasional::supervisor
