#pragma once

#include <signal.h>
#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "supervisor/child_reaper.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/exit_reason.hpp"
#include "workers/process_control.hpp"
#include "workers/unique_fd.hpp"
#include "workers/value.hpp"

namespace occasional::supervisor {

// The coordinator's side of processes and messages ("central services"):
// addresses, names, monitors, links, the channel broker and exit
// reconciliation, on the loop, for processes that are the coordinator's
// children (ChildReaper watches them). Each process talks to it on its
// SEQPACKET control channel (workers/process_control.hpp); it answers
// requests, sends DOWN/EXIT and channel notices, and never blocks on a
// process: what a process does not read waits in that process's outbox.
class ProcessHub {
 public:
  struct Stats {
    uint64_t spawned = 0;
    uint64_t exited = 0;
    uint64_t channels = 0;          // socketpairs brokered
    uint64_t connect_failures = 0;  // socketpair() failed: the sender drops the message
    uint64_t protocol_errors = 0;   // a process broke the control protocol (it is killed)
    uint64_t notices_dropped = 0;   // to a process whose control channel is gone
    // First sends to an address with no live process (connect answered
    // noproc): each is a message its sender dropped. Drops on a channel
    // whose receiver has just exited are counted by the sender only.
    uint64_t sends_dropped = 0;
    std::map<std::string, uint64_t> exits;  // by reason kind: normal, error, signal, ...
  };
  using ExitObserver = std::function<void(const Address&, const Map& reason)>;

  ProcessHub(boost::asio::io_context& io, ChildReaper& reaper, const EventLog& log);
  ProcessHub(const ProcessHub&) = delete;
  ProcessHub& operator=(const ProcessHub&) = delete;
  ~ProcessHub();

  // A process whose code the caller starts itself (process zero; later a
  // service's worker): its address and the child's end of its control
  // channel. Report its pid with started() in the same turn of the loop.
  struct Opened {
    Address address;
    UniqueFd child_control;
  };
  Opened open_process();
  // Its pid, once forked; it is watched from now on. Fails (and the
  // process is ended as start_failed) when pidfd_open does.
  std::error_code started(const Address& a, pid_t pid);

  // A supervised service's worker (docs/messages.md, "Workers are
  // processes"): like open_process, named `name` (service/replica; a name
  // already taken is logged and left to its holder) and greeted with its
  // address, for Process::from_environment(). The Service watches and
  // reaps it, and tells the hub: worker_started once it runs (or
  // worker_failed), worker_exited with the status it reaped.
  Opened open_worker(const std::string& name);
  void worker_started(const Address& a, pid_t pid);
  void worker_failed(const Address& a, const std::string& why);
  void worker_exited(const Address& a, const siginfo_t& info);
  // Why an upgrade cannot carry this system now (a sentence), or empty.
  // It carries the workers, their channels and addresses, and the
  // figures; not spawned processes, ports or adopted programs, nor the
  // monitors, links, extra names or trap_exits a worker holds.
  std::string not_carriable() const;
  // What an upgrade carries besides each worker's channel (its control fd
  // and id: control_fd(), adopt_worker()): what keeps addresses and
  // references the same and never reused. (The counters of stats() go over
  // as /metrics' counters, metrics::Metrics::carried_counters.)
  struct Carried {
    uint32_t creation = 0;
    uint32_t next_id = 1;
    uint64_t next_ref = 1;
  };
  Carried carry() const;
  // In the new coordinator, before any process is opened.
  void adopt(const Carried& carried);
  // The hub's end of a live process's control channel, or -1.
  int control_fd(const Address& a) const;
  // A carried worker: `id` as it was, named `name`, its pid known (its
  // Service watches it), `control` the hub's end. Its hello was sent.
  Address adopt_worker(uint32_t id, const std::string& name, pid_t pid, UniqueFd control);

  // Runs after each exit, once monitors and links are served.
  void on_exit(ExitObserver observer) { observer_ = std::move(observer); }
  // SIGKILLs every process with a known pid, and its group.
  void kill_all();

  size_t live() const { return procs_.size(); }
  size_t monitors() const { return monitors_.size(); }
  size_t links() const;  // pairs of linked live processes
  const Stats& stats() const { return stats_; }
  const std::string& node() const { return node_; }
  uint32_t creation() const { return creation_; }
  // -1 when unknown or not reported yet.
  pid_t pid_of(const Address& a) const;

 private:
  struct Outgoing {
    std::string payload;
    UniqueFd fd;
  };
  struct Proc {
    uint32_t id = 0;
    pid_t pid = -1;
    std::unique_ptr<boost::asio::posix::stream_descriptor> control;
    bool control_open = true;
    std::deque<Outgoing> outbox;
    bool writing = false;
    uint32_t spawner = 0;  // while the pid is unknown: who will report it
    bool held = false;     // holds the reaper's unwatched children until the pid is known
    bool kill_pending = false;
    bool exited = false;
    bool trap_exits = false;
    bool worker = false;  // a Service's: reaped by the Service, not watched here
    bool spoke = false;   // has sent something on its control channel
    ExitEvidence evidence;
    std::vector<std::string> names;
    std::unordered_set<uint32_t> links;
    std::unordered_set<uint32_t> peers;  // processes it has a channel with
    std::vector<uint64_t> monitoring;    // monitors it holds
    std::vector<uint64_t> monitored_by;  // monitors on it
    std::vector<uint32_t> unreported;    // children it spawned whose pid it has not reported
    // Adopted (kAdopt): the program is its owner's child, not ours; the
    // owner reaps it and reports. pidfd: for signals that cannot reach a
    // recycled pid.
    uint32_t owner = 0;
    UniqueFd adopted_pidfd;
    std::vector<uint32_t> adopted;  // programs it owns that have not exited
    // adopt requests (tag, pid) that came before its own pid was known.
    std::vector<std::pair<Value, pid_t>> pending_adopts;
  };
  struct Monitor {
    uint32_t watcher = 0;
    uint32_t target = 0;
  };

  Address address_of(uint32_t id) const;
  Reference make_ref();
  // The live process an address names, or nullptr (unknown, other node, exited).
  Proc* live_proc(const Value& address);
  Proc* find(uint32_t id);
  Proc& create(UniqueFd& child_end);

  void wait_control(uint32_t id);
  void read_control(Proc& p);
  void handle(Proc& p, const process_control::Message& m);
  void protocol_error(Proc& p, const std::string& why);
  void reply(Proc& p, const Value& tag, Value result, UniqueFd fd = {});
  void notify(Proc& p, const Value& term, UniqueFd fd = {});
  void flush(Proc& p);

  void do_spawn(Proc& p, const Value& tag, bool link, bool monitor);
  void do_spawn_port(Proc& p, const Value& tag, const Value& argv, const Map& options);
  Reference add_monitor(Proc& watcher, Proc& target);
  void do_spawned(Proc& p, const Value& address, const Value& pid);
  void do_adopt(Proc& p, const Value& tag, const Value& pid);
  void do_adopted_exit(Proc& p, const process_control::Message& m);
  void kill_adopted(Proc& p);
  static void signal_adopted(Proc& a);
  void do_connect(Proc& p, const Value& tag, const Value& address);
  void do_monitor(Proc& p, const Value& tag, const Value& address);
  void do_demonitor(Proc& p, const Value& tag, const Value& ref);
  void do_link(Proc& p, const Value& tag, const Value& address);
  void do_unlink(Proc& p, const Value& tag, const Value& address);

  std::error_code watch(Proc& p, pid_t pid, UniqueFd pidfd);
  void kill(Proc& p);
  void kill_for_link(Proc& victim, uint32_t from, const Map& reason);
  void release_hold(Proc& p);
  void on_reaped(uint32_t id, const siginfo_t& info);
  void finish(uint32_t id, const Map& reason);

  boost::asio::io_context& io_;
  ChildReaper& reaper_;
  const EventLog& log_;
  std::string node_;
  uint32_t creation_ = 0;
  pid_t self_pid_ = 0;
  uint32_t next_id_ = 1;
  uint64_t next_ref_ = 1;
  std::unordered_map<uint32_t, std::unique_ptr<Proc>> procs_;
  std::unordered_map<std::string, uint32_t> names_;
  std::unordered_map<uint64_t, Monitor> monitors_;
  ExitObserver observer_;
  Stats stats_;
};

}  // namespace occasional::supervisor
