#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <vector>

#include "supervisor/child_reaper.hpp"
#include "supervisor/exit_record.hpp"
#include "supervisor/guardian.hpp"
#include "supervisor/process_spec.hpp"
#include "supervisor/service_observer.hpp"

namespace occasional::supervisor {

struct InetdConfig {
  std::string name;
  ProcessSpec process;
  // Processes alive at once; a connection beyond that waits in the gateway's queue.
  int max_processes = 64;
  Duration grace = std::chrono::seconds(10);
};

// Mode `inetd` (ARCHITECTURE.md, Worker kinds): one process per connection,
// the socket as its stdin and stdout, as inetd or systemd Accept=yes. A
// process is never restarted (the next connection starts the next one), but
// its exit is recorded and reported like any worker's. The slot a process
// runs in is its replica index, so labels stay bounded by max_processes.
class InetdService {
 public:
  enum class Launch { started, at_cap, failed, stopped };

  InetdService(boost::asio::io_context& io, InetdConfig config, ChildReaper& reaper,
               Guardian& guardian, ServiceObserver& observer);
  InetdService(const InetdService&) = delete;
  InetdService& operator=(const InetdService&) = delete;

  // Starts a process with `conn` as stdin and stdout (borrowed: the caller
  // closes its copy). `peer` ("10.0.0.1:5000", "[::1]:5000") goes to
  // REMOTE_ADDR and REMOTE_PORT, as with systemd Accept=yes.
  Launch launch(int conn, const std::string& peer);
  // Accepts connections again after a stop.
  void start();
  // SIGTERM to every process group, SIGKILL at the grace deadline; idle once all are gone.
  void stop();
  void kill_all();

  const std::string& name() const { return config_.name; }
  const InetdConfig& config() const { return config_; }
  int running() const { return running_; }
  bool stopped() const { return stopped_; }
  struct Process {
    int slot;
    pid_t pid;
    MonoTime started;
  };
  std::vector<Process> processes() const;
  bool idle() const { return stopped_ && running_ == 0; }

 private:
  struct Slot {
    explicit Slot(boost::asio::io_context& io) : grace(io) {}
    pid_t pid = -1;
    WallTime started_wall{};
    MonoTime started_mono{};
    boost::asio::steady_timer grace;
  };

  void on_exit(int slot, const siginfo_t& info);
  void record_start_failure(int slot, int error, const char* call);
  void finish(int slot, ExitRecord record);

  boost::asio::io_context& io_;
  InetdConfig config_;
  ChildReaper& reaper_;
  Guardian& guardian_;
  ServiceObserver& observer_;
  std::vector<std::unique_ptr<Slot>> slots_;
  int running_ = 0;
  bool stopped_ = true;
};

}  // namespace occasional::supervisor
