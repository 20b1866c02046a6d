#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "workers/unique_fd.hpp"

namespace occasional::testing {

using Fields = std::map<std::string, std::string>;  // one event line; numbers as text

// Runs the real `occasional` executable with stderr (the JSON event log) and
// stdout on pipes, and waits on its events with deadlines.
class CoordinatorProcess {
 public:
  // How the executable is started, beyond its arguments.
  struct Launch {
    // Runs the executable under `wrapper` (for instance unshare ...): pid()
    // is then the wrapper's, unless it execs (systemd-socket-activate).
    std::vector<std::string> wrapper;
    std::vector<std::string> env;  // "KEY=VALUE", over the test's environment
    std::vector<int> pass_fds;     // as fds 3, 4, ... (socket activation)
    bool set_listen_pid = false;   // LISTEN_PID=<its pid>
  };

  explicit CoordinatorProcess(std::vector<std::string> args);
  CoordinatorProcess(std::vector<std::string> wrapper, std::vector<std::string> args);
  CoordinatorProcess(std::vector<std::string> args, Launch launch);
  ~CoordinatorProcess();

  pid_t pid() const { return pid_; }
  // Waits for the next event named `name` that satisfies `pred` (events already
  // read count too). Fails the test and returns empty fields on timeout.
  Fields wait_event(const std::string& name,
                    const std::function<bool(const Fields&)>& pred = nullptr,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10));
  std::vector<Fields> events(const std::string& name) const;
  // Reads one line the workers wrote to stdout.
  std::string read_stdout_line(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void signal(int sig);
  // Waits for the coordinator to exit; returns its exit code, or 128 + signal, or -1 on timeout.
  int wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Everything the coordinator wrote to stderr so far.
  const std::string& stderr_text() const { return stderr_text_; }

 private:
  bool read_some_stderr(std::chrono::steady_clock::time_point deadline);

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd err_;
  UniqueFd out_;
  std::string partial_;
  std::string stdout_buf_;
  std::string stderr_text_;
  std::vector<std::pair<std::string, Fields>> events_;
  size_t consumed_ = 0;
  bool eof_ = false;
  bool exited_ = false;
  int exit_code_ = -1;
};

// A coordinator run for one test, its ports read back from its events:
// `port` from `listening` (when `args` has --listen or --config), `admin`
// from `admin_listening`; `ready` workers waited for. SIGTERMed and reaped
// at scope exit.
struct RunningCoordinator {
  RunningCoordinator(std::vector<std::string> args, int ready,
                     std::vector<std::string> wrapper = {});
  RunningCoordinator(std::vector<std::string> args, int ready, CoordinatorProcess::Launch launch);
  ~RunningCoordinator();
  RunningCoordinator(const RunningCoordinator&) = delete;
  RunningCoordinator& operator=(const RunningCoordinator&) = delete;

  CoordinatorProcess c;
  int port = 0;
  int admin = 0;
};

// The value of one sample of the admin endpoint's /metrics, e.g.
// `occasional_admin_refused_total{reason="timeout"}`: `absent` when it is not
// there, -2 when /metrics does not answer 200.
double metric(int admin_port, const std::string& sample, double absent = 0);

// Whether `pid` exists and is not a zombie.
bool process_alive(pid_t pid);
// Pids whose parent is `parent`.
std::vector<pid_t> children_of(pid_t parent);

}  // namespace occasional::testing
