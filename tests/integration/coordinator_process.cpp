#include "tests/integration/coordinator_process.hpp"

#include <algorithm>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <simdjson.h>
#include <cstdio>
#include <fstream>

#include "supervisor/spawner.hpp"
#include "tests/integration/http_client.hpp"

namespace occasional::testing {

using Clock = std::chrono::steady_clock;

CoordinatorProcess::CoordinatorProcess(std::vector<std::string> args)
    : CoordinatorProcess({}, std::move(args)) {}

CoordinatorProcess::CoordinatorProcess(std::vector<std::string> wrapper,
                                       std::vector<std::string> args)
    : CoordinatorProcess(std::move(args), Launch{std::move(wrapper), {}, {}, false}) {}

CoordinatorProcess::CoordinatorProcess(std::vector<std::string> args, Launch launch) {
  int err[2], out[2];
  EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
  EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
  UniqueFd err_w(err[1]), out_w(out[1]);
  // The coordinator drops log lines rather than wait for a full stderr
  // (occasional_log_lines_dropped_total); tests read it only while waiting
  // for an event, so give it room for a few thousand lines.
  ::fcntl(err[1], F_SETPIPE_SZ, 1 << 20);
  err_.reset(err[0]);
  out_.reset(out[0]);
  supervisor::ProcessSpec spec;
  spec.argv = launch.wrapper;
  spec.argv.push_back(OCCASIONAL_BIN);
  spec.env = launch.env;
  spec.pass_fds = launch.pass_fds;
  spec.set_listen_pid = launch.set_listen_pid;
  // Tests run in parallel: the admin endpoint takes a free port unless a test picks one.
  if (!args.empty() && args[0] == "run" &&
      std::find(args.begin(), args.end(), "--admin") == args.end())
    args.insert(args.begin() + 1, {"--admin", "127.0.0.1:0"});
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.stdout_fd = out_w.get();
  spec.stderr_fd = err_w.get();
  supervisor::SpawnResult r = supervisor::spawn_process(spec);
  EXPECT_TRUE(r.ok()) << r.failed_call;
  pid_ = r.pid;
  pidfd_ = std::move(r.pidfd);
}

CoordinatorProcess::~CoordinatorProcess() {
  if (!exited_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

bool CoordinatorProcess::read_some_stderr(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return false;
  pollfd p{err_.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
  char buf[8192];
  ssize_t n = ::read(err_.get(), buf, sizeof buf);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  stderr_text_.append(buf, static_cast<size_t>(n));
  partial_.append(buf, static_cast<size_t>(n));
  size_t nl;
  while ((nl = partial_.find('\n')) != std::string::npos) {
    std::string line = partial_.substr(0, nl);
    partial_.erase(0, nl + 1);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    // Startup errors are one plain line; everything after startup is JSON.
    if (parser.parse(line).get(doc) != simdjson::SUCCESS) continue;
    Fields fields;
    simdjson::dom::object obj;
    if (doc.get(obj) != simdjson::SUCCESS) continue;
    for (auto [key, value] : obj) {
      std::string_view sv;
      if (value.get(sv) == simdjson::SUCCESS)
        fields[std::string(key)] = std::string(sv);
      else
        fields[std::string(key)] = simdjson::minify(value);
    }
    events_.emplace_back(fields["event"], fields);
  }
  return true;
}

Fields CoordinatorProcess::wait_event(const std::string& name,
                                      const std::function<bool(const Fields&)>& pred,
                                      std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  size_t scanned = 0;
  for (;;) {
    for (; scanned < events_.size(); ++scanned) {
      auto& [event, fields] = events_[scanned];
      if (event == name && (!pred || pred(fields))) {
        // Consume so that the next call finds the next such event.
        event = "~" + event;
        return fields;
      }
    }
    if (!read_some_stderr(deadline) && (eof_ || Clock::now() >= deadline)) {
      ADD_FAILURE() << "no '" << name << "' event within " << timeout.count()
                    << " ms; stderr so far:\n"
                    << stderr_text_;
      return {};
    }
  }
}

std::vector<Fields> CoordinatorProcess::events(const std::string& name) const {
  std::vector<Fields> out;
  for (const auto& [event, fields] : events_)
    if (event == name || event == "~" + name) out.push_back(fields);
  return out;
}

std::string CoordinatorProcess::read_stdout_line(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto nl = stdout_buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = stdout_buf_.substr(0, nl);
      stdout_buf_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{out_.get(), POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      ADD_FAILURE() << "no line on the workers' stdout within " << timeout.count() << " ms";
      return {};
    }
    char buf[4096];
    ssize_t n = ::read(out_.get(), buf, sizeof buf);
    if (n <= 0) {
      ADD_FAILURE() << "workers' stdout closed";
      return {};
    }
    stdout_buf_.append(buf, static_cast<size_t>(n));
  }
}

void CoordinatorProcess::signal(int sig) {
  ::kill(pid_, sig);
}

int CoordinatorProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (exited_) return exit_code_;
  pollfd p{pidfd_.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return -1;
  int status = 0;
  ::waitpid(pid_, &status, 0);
  exited_ = true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  // Drain the rest of the log so that events() sees the last lines.
  while (read_some_stderr(Clock::now() + std::chrono::milliseconds(200))) {
  }
  return exit_code_;
}

bool process_alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  auto close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 && line[close + 2] != 'Z';
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
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
    if (std::sscanf(line.c_str() + close + 1, " %c %ld", &state, &ppid) == 2 && ppid == parent)
      out.push_back(static_cast<pid_t>(std::stol(e->d_name)));
  }
  ::closedir(d);
  return out;
}

RunningCoordinator::RunningCoordinator(std::vector<std::string> args, int ready,
                                       std::vector<std::string> wrapper)
    : RunningCoordinator(std::move(args), ready,
                         CoordinatorProcess::Launch{std::move(wrapper), {}, {}, false}) {}

RunningCoordinator::RunningCoordinator(std::vector<std::string> args, int ready,
                                       CoordinatorProcess::Launch launch)
    : c(args, std::move(launch)) {
  auto has = [&args](const char* flag) {
    return std::find(args.begin(), args.end(), flag) != args.end();
  };
  if (has("--listen") || has("--config")) {
    Fields f = c.wait_event("listening");
    port = f.empty() ? 0 : std::stoi(f["port"]);
  }
  Fields f = c.wait_event("admin_listening");
  admin = f.empty() ? 0 : std::stoi(f["port"]);
  for (int i = 0; i < ready; ++i) c.wait_event("ready");
}

RunningCoordinator::~RunningCoordinator() {
  c.signal(SIGTERM);
  c.wait_exit();
}

double metric(int admin_port, const std::string& sample, double absent) {
  HttpReply r = http_request(admin_port, "GET", "/metrics");
  if (r.status != 200) return -2;
  const std::string key = "\n" + sample + " ";
  const auto at = r.body.find(key);
  if (at == std::string::npos) return absent;
  return std::stod(r.body.substr(at + key.size()));
}

}  // namespace occasional::testing
